"""The committed reference run (``results/reference``) is complete and usable.

A fresh clone has no checkpoints and no training: ``pggan generate`` must work
from the committed ``generator.keras`` alone, the weights must be the ones that
made the committed clips, and the evaluation and provenance files the chapters
print must be there.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pggan_lib import config, reference, training  # noqa: E402

RUN = config.REFERENCE_RUN_DIR


def test_reference_run_is_complete_with_metrics_and_provenance():
    run = reference.load_reference_run()
    schedule = run.config["schedule"]
    assert run.history["step"][-1] == schedule[-1]["start_step"] + schedule[-1]["steps"]
    assert run.history["step"] == list(range(1, run.history["step"][-1] + 1))
    assert sorted(run.metrics["scales"], key=int) == [str(k) for k in range(run.num_scales)]
    for entry in run.metrics["scales"].values():
        assert {"real", "ema"} <= set(entry)
        assert 1.0 <= entry["ema"]["inception_score"] <= len(run.metrics["class_names"])
    assert run.commands[0].startswith("pggan train ") and "--preset reference" in run.commands[0]
    assert run.commands[1].startswith("pggan evaluate ")
    assert run.provenance["train_elapsed_s"] == run.history["elapsed_s"][-1]
    # Phase-end clips of every scale, 8 per scale, at the scale's rate.
    for scale in range(run.num_scales):
        clips, rate = run.samples(scale)
        assert clips.shape == (run.config["preset"]["num_samples"],
                               run.config["model_spec"]["clip_samples"] // 2 ** (6 - scale))
        assert rate == config.scale_sample_rate(scale, run.num_scales, 16000)


def test_reference_run_is_todays_reference_preset():
    """The committed run is the preset a reader gets from `make reference` today."""
    import dataclasses

    run = reference.load_reference_run()
    today = json.loads(json.dumps(dataclasses.asdict(config.get_preset("reference"))))
    # A field added after the run holds its default there (the behaviour before the field).
    defaults = json.loads(json.dumps({f.name: f.default for f in dataclasses.fields(config.Preset)
                                      if f.default is not dataclasses.MISSING}))
    stored = {**defaults, **run.config["preset"]}
    # Every training setting; the one-line description may be reworded.
    assert {**stored, "description": None} == {**today, "description": None}


def test_committed_generator_reproduces_the_committed_final_clips():
    """generator.keras + the run's fixed latents give back the clips training wrote."""
    run = reference.load_reference_run()
    generator, info = training.load_generator(RUN)
    assert info["scale"] == run.num_scales - 1
    spec = run.config["model_spec"]
    fixed_z = np.random.default_rng(run.config["seed"] + 7).standard_normal(
        (run.config["preset"]["num_samples"], spec["latent_dim"])).astype(np.float32)
    clips = np.asarray(generator(fixed_z, training=False))[..., 0]
    committed, _ = run.samples(run.num_scales - 1)
    # 16-bit files: one quantisation step is 3e-5; kernels may differ in the last bits.
    np.testing.assert_allclose(np.clip(clips, -1, 1), committed, atol=2e-3)
    assert np.std(committed) > 1e-3  # not silence


def test_pggan_generate_from_the_committed_run_in_a_fresh_process(tmp_path):
    out = tmp_path / "generated"
    result = subprocess.run(
        [sys.executable, "-m", "pggan_lib.cli", "generate", "--run", str(RUN), "--n", "4",
         "--out", str(out)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    files = sorted(out.glob("*.wav"))
    assert len(files) == 4
    clips = []
    for path in files:
        data, rate = sf.read(path, dtype="float32")
        assert rate == 16000 and data.shape == (16384,)
        clips.append(data)
    clips = np.stack(clips)
    assert np.all(np.std(clips, axis=1) > 1e-3)
    assert not np.allclose(clips[0], clips[1])  # different latents, different clips
    written = json.loads((RUN / "run_state.json").read_text())
    assert written["trained_scale"] == 6


def test_committed_summary_is_what_the_metrics_say():
    run = reference.load_reference_run()
    previous = reference.load_reference_run(config.PREVIOUS_REFERENCE_RUN_DIR)
    assert (RUN / reference.SUMMARY_FILE).read_text() == reference.summary_markdown(
        run, previous=previous)
    assert "spectral_flatness" in run.metrics["scales"]["6"]["ema"]


def test_committed_ablation_grid_is_scored_and_its_verdicts_follow_from_its_runs():
    """``results/ablation`` (``make ablation``): every arm x seed scored per scale, and the
    stored verdicts are what the library computes from the stored runs today."""
    import json as _json

    from pggan_lib import ablation

    folder = config.RESULTS_DIR / "ablation"
    stored = _json.loads((folder / "results.json").read_text())
    meta = stored["meta"]
    assert meta["budget"]["name"] == "learn" and meta["budget"]["score_quality"]
    assert meta["command"].startswith("pggan ablate ") and "--budget learn" in meta["command"]
    results = ablation.load_results(folder, budget="learn", scales=meta["scales"])
    assert len(results["runs"]) == len(meta["arms"]) * len(meta["seeds"]) == 21
    for run in results["runs"]:
        if run["diverged"]:
            continue
        assert sorted(run["metrics"], key=int) == [str(k) for k in range(meta["scales"])]
        for quality in run["metrics"].values():
            assert quality["fd_ratio"] > 0 and quality["is_ratio"] > 0
    # results.json itself: one line per run with its arm and per-scale ratios.
    assert len(stored["runs"]) == 21
    for record in stored["runs"]:
        assert {"arm", "activation", "loss", "critic_output", "seed"} <= set(record)
        for quality in record["metrics"].values():
            assert {"fd_ratio", "is_ratio"} <= set(quality)
    assert [v["claim"] for v in stored["verdicts"]] == list(ablation.CLAIM_RULES)
    assert [v["verdict"] for v in stored["verdicts"]] == [
        v["verdict"] for v in results["verdicts"]]
    assert (folder / "quality.png").is_file()


def test_committed_representation_study_follows_from_its_runs():
    """results/representations (chapter 8): 3 arms x 3 seeds at one budget, the summary
    recomputed from the committed runs, clips to listen to at 16 kHz."""
    from pggan_lib import representation_study as rs

    folder = config.RESULTS_DIR / "representations"
    stored = json.loads((folder / rs.SUMMARY_FILE_NAME).read_text())
    runs = [json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))]
    assert sorted((r["arm"]["name"], r["seed"]) for r in runs) == sorted(
        (arm.name, seed) for arm in rs.ARMS for seed in range(3))
    budget = stored["meta"]["budget_cpu_s"]
    for run in runs:
        assert run["budget_cpu_s"] == budget and run["points"][-1]["mark"] == budget
        assert run["points"][-1]["cpu_s"] >= budget
    by_name = {arm.name: i for i, arm in enumerate(rs.ARMS)}
    runs.sort(key=lambda r: (by_name[r["arm"]["name"]], r["seed"]))
    recomputed = json.loads(json.dumps(rs.summarize_representations(runs)))
    assert recomputed == {k: v for k, v in stored.items() if k != "meta"}
    # The table chapters 5 and 8 print fits the book's page.
    assert max(map(len, rs.format_representation_table(stored).splitlines())) <= 76
    for arm in rs.ARMS:
        clip, rate = sf.read(folder / "clips" / f"{arm.name}_0.wav")
        assert rate == 16000 and clip.shape == (16384,)


@pytest.mark.parametrize("folder_name, seeds, rate", [("representations_long", 2, 16000),
                                                       ("octave", 3, 500)])
def test_committed_study_of_named_arms_follows_from_its_runs(folder_name, seeds, rate):
    """results/representations_long and results/octave (chapter 5): the arms the command
    names, each seed, scored along the way up to the budget at the dataset's finest rate,
    and the summary recomputed from the runs."""
    from pggan_lib import representation_study as rs

    folder = config.RESULTS_DIR / folder_name
    stored = json.loads((folder / rs.SUMMARY_FILE_NAME).read_text())
    names = stored["meta"]["command"].split("--arms ")[1].split()
    by_name = {arm.name: i for i, arm in enumerate(rs.ARMS)}
    runs = [json.loads((folder / "runs" / f"{name}_seed{seed}.json").read_text())
            for name in sorted(names, key=by_name.get) for seed in stored["meta"]["seeds"]]
    assert len(stored["meta"]["seeds"]) == seeds and set(stored["arms"]) == set(names)
    assert sf.info(folder / "clips" / f"{names[0]}_0.wav").samplerate == rate
    budget = stored["meta"]["budget_cpu_s"]
    for run in runs:
        assert run["budget_cpu_s"] == budget and run["points"][-1]["cpu_s"] >= budget
        assert len(run["points"]) >= budget / stored["meta"]["mark_cpu_s"] - 1
    recomputed = json.loads(json.dumps(rs.summarize_representations(runs)))
    assert recomputed == {k: v for k, v in stored.items() if k != "meta"}


def test_committed_classifier_corpus_study_is_complete_and_consistent():
    """results/classifiers/corpus_instruments.json (benchmarks/bench_classifier_corpus.py,
    chapter 6): every variant has every scale, accuracies in [0, 1] that agree with their
    confusion matrices, whose rows sum to the test clips of each class."""
    from pggan_lib import corpus, evaluation

    stored = json.loads((config.RESULTS_DIR / "classifiers"
                         / "corpus_instruments.json").read_text())
    assert stored["command"].startswith("python benchmarks/bench_classifier_corpus.py")
    assert {"date", "machine", "threshold", "from_hz"} <= set(stored)
    assert stored["recipe"] == evaluation.ClassifierRecipe().to_dict()  # chapter 6's recipe
    assert stored["genre_instruments"] == corpus.GENRE_INSTRUMENTS
    names = [v["name"] for v in stored["variants"]]
    assert {"piano_4min", "genre_4min"} <= set(names) and len(set(names)) == len(names)
    for variant in stored["variants"]:
        classes = variant["class_names"]
        assert sorted(classes) == sorted(corpus.CORPUS_CLASSES)
        assert variant["dataset_parameters"]["num_scales"] == config.DEFAULT_NUM_SCALES
        assert [e["scale"] for e in variant["scales"]] == list(range(config.DEFAULT_NUM_SCALES))
        assert [e["sample_rate"] for e in variant["scales"]] == [
            config.scale_sample_rate(k, config.DEFAULT_NUM_SCALES, 16000)
            for k in range(config.DEFAULT_NUM_SCALES)]
        assert min(variant["pieces_per_class"]["test"].values()) >= 1
        for cls in classes:
            expected = (stored["genre_instruments"][cls] if variant["instrument"] == "genre"
                        else variant["instrument"])
            assert variant["instruments_per_class"][cls] == expected
        test_clips = [variant["clips_per_class"]["test"][cls] for cls in classes]
        for entry in variant["scales"]:
            confusion = np.array(entry["confusion"])
            assert confusion.shape == (len(classes), len(classes)) and confusion.min() >= 0
            assert confusion.sum(axis=1).tolist() == test_clips
            assert confusion.sum() == entry["num_test"]
            assert 0.0 <= entry["test_accuracy"] <= 1.0 and 0.0 <= entry["train_accuracy"] <= 1.0
            assert entry["test_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
        for key in ("corpus_wall_s", "dataset_wall_s", "classifiers_wall_s"):
            assert variant[key] >= 0.0


def test_committed_levers_study_follows_from_its_runs():
    """results/study_levers (chapter 5): every arm its command names, two seeds each, one
    budget, and the summary table recomputed from the committed runs."""
    from pggan_lib import study

    folder = config.RESULTS_DIR / "study_levers"
    stored = json.loads((folder / study.STUDY_FILE_NAME).read_text())
    names = stored["meta"]["command"].split("--arms ")[1].split()
    runs = [json.loads((folder / "runs" / f"{name}_seed{seed}.json").read_text())
            for name in names for seed in stored["meta"]["seeds"]]
    assert set(stored["arms"]) == set(names) and len(stored["meta"]["seeds"]) == 2
    for run in runs:
        assert run["budget_cpu_s"] == stored["meta"]["budget_cpu_s"]
        assert run["points"][-1]["cpu_s"] >= run["budget_cpu_s"]
    recomputed = json.loads(json.dumps(study.summarize_study(runs)))
    assert recomputed == {k: v for k, v in stored.items() if k != "meta"}
