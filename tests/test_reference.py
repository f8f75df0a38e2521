"""Tests for pggan_lib.reference: loading a committed run, its timings and provenance."""

import csv
import json

import numpy as np
import pytest

from pggan_lib import audio, config, reference, training

SCHEDULE = [
    {"index": 0, "scale": 0, "kind": "stable", "steps": 3, "start_step": 0, "batch_size": 4},
    {"index": 1, "scale": 1, "kind": "fade", "steps": 4, "start_step": 3, "batch_size": 8},
    {"index": 2, "scale": 1, "kind": "stable", "steps": 2, "start_step": 7, "batch_size": 8},
]
# Phase 0: first step pays 2 s of tracing, then 0.5 s per step; phase 1: 1 s, then 0.25 s.
ELAPSED = [2.0, 2.5, 3.0, 4.0, 4.25, 4.5, 4.75]
PHASES = [0, 0, 0, 1, 1, 1, 1]
SCALES = [0, 0, 0, 1, 1, 1, 1]


def _history():
    return {"step": list(range(1, len(ELAPSED) + 1)), "phase": PHASES, "scale": SCALES,
            "elapsed_s": ELAPSED}


def _write_run(run_dir, num_scales=3, sample_rate=1000):
    """A minimal run folder: config.json and history.csv (7 steps, phases 0 and 1)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({
        "preset": {}, "model_spec": {}, "loss": "wgan-gp", "activation": "leaky",
        "schedule": SCHEDULE,
        "dataset": {"num_scales": num_scales, "sample_rate": sample_rate, "clip_samples": 64}}))
    with open(run_dir / "history.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=training.HISTORY_COLUMNS)
        writer.writeheader()
        for i, elapsed in enumerate(ELAPSED):
            row = {name: 0.0 for name in training.HISTORY_COLUMNS}
            row.update(step=i + 1, phase=PHASES[i], scale=SCALES[i], elapsed_s=elapsed)
            writer.writerow(row)
    return run_dir


def test_phase_times_split_wall_time_into_steps_and_overhead():
    rows = reference.phase_times(_history(), SCHEDULE)
    assert [row["phase"] for row in rows] == [0, 1]        # phase 2 never ran
    first, second = rows
    assert (first["steps"], first["wall_s"], first["step_s"]) == (3, 3.0, 0.5)
    assert first["overhead_s"] == 1.5                      # 3.0 - 3 * 0.5
    assert (first["steps_per_s"], first["clips_per_s"]) == (2.0, 8.0)
    assert (second["steps"], second["wall_s"], second["step_s"]) == (4, 1.75, 0.25)
    assert second["overhead_s"] == 0.75                    # 1.75 - 4 * 0.25
    assert (second["steps_per_s"], second["clips_per_s"]) == (4.0, 32.0)
    assert (second["scale"], second["kind"], second["batch_size"]) == (1, "fade", 8)


def test_load_reference_run_on_a_missing_folder_names_it_and_the_script(tmp_path):
    missing = tmp_path / "no_run_here"
    with pytest.raises(training.RunError) as error:
        reference.load_reference_run(missing)
    assert str(missing) in str(error.value)
    assert "make_reference_run.py" in str(error.value)


def test_load_reference_run_reads_the_folder(tmp_path):
    run = reference.load_reference_run(_write_run(tmp_path / "run"))
    assert run.history["step"] == list(range(1, 8))
    assert run.metrics == {} and run.metrics_by_phase == {} and run.provenance == {}
    assert run.num_scales == 3
    assert run.train_hours == pytest.approx(4.75 / 3600)
    np.testing.assert_array_equal(run.curves(scale=1)["step"], [4, 5, 6, 7])
    assert [row["phase"] for row in run.phase_times()] == [0, 1]


def test_samples_load_the_phase_end_wavs_in_clip_order(tmp_path):
    run_dir = _write_run(tmp_path / "run", num_scales=3, sample_rate=1000)
    rate = config.scale_sample_rate(1, 3, 1000)            # 500 Hz
    clips = [0.08 * (i + 1) * np.sin(np.linspace(0, 20, 32)) for i in range(11)]
    for i, clip in enumerate(clips):                       # index 10 sorts after 1 as text
        audio.save_audio(run_dir / "samples" / f"step0000007_scale1_stable_{i}.wav", clip, rate)
    audio.save_audio(run_dir / "samples" / "step0000007_scale1_fade_0.wav", clips[0], rate)
    run = reference.load_reference_run(run_dir)
    loaded, loaded_rate = run.samples(1)
    assert loaded.shape == (11, 32) and loaded.dtype == np.float32 and loaded_rate == 500
    np.testing.assert_allclose(loaded[10], clips[10], atol=1e-4)   # 16-bit PCM
    assert run.samples(1, n=2)[0].shape == (2, 32)
    assert run.samples(1, kind="fade")[0].shape == (1, 32)
    assert run.sample_files(0) == []
    with pytest.raises(training.RunError, match="scale 2"):
        run.samples(2)


def test_caption_names_the_commands_from_provenance(tmp_path):
    run_dir = _write_run(tmp_path / "run")
    commands = ["pggan train --preset reference --data data/demo_dataset --out results/reference",
                "pggan evaluate --run results/reference --data data/demo_dataset"]
    reference.write_provenance(run_dir, commands)
    caption = reference.load_reference_run(run_dir).caption()
    assert f"`{commands[0]}` then `{commands[1]}`" in caption
    assert "0.00 h of training" in caption


def test_caption_without_provenance_says_so(tmp_path):
    caption = reference.load_reference_run(_write_run(tmp_path / "run")).caption()
    assert "provenance.json not written yet" in caption and str(tmp_path / "run") in caption


def test_write_provenance_appends_sessions_across_calls(tmp_path):
    run_dir = _write_run(tmp_path / "run")
    first = reference.write_provenance(run_dir, ["pggan train"],
                                       sessions=[{"command": "pggan train", "wall_s": 10.0}])
    assert first["train_elapsed_s"] == 4.75
    reference.write_provenance(run_dir, ["pggan train"],
                               sessions=[{"command": "pggan train --resume", "wall_s": 5.0}])
    written = json.loads((run_dir / reference.PROVENANCE_FILE).read_text())
    assert written["sessions"] == [{"command": "pggan train", "wall_s": 10.0},
                                   {"command": "pggan train --resume", "wall_s": 5.0}]
    assert written["commands"] == [{"command": "pggan train"}]
    assert {"cpu", "cpu_count", "tensorflow"} <= set(written["machine"])
    assert not (run_dir / "provenance.tmp").exists()


def test_summary_markdown_has_a_row_per_scale_with_the_targets(tmp_path):
    run_dir = _write_run(tmp_path / "run", num_scales=2)
    real = {"inception_score": 2.0, "frechet_distance": 2.0, "spectral_flatness": 0.2}
    metrics = {"scales": {
        "0": {"sample_rate": 250, "classifier_test_accuracy": 0.5, "real": real,
              "ema": {"inception_score": 1.6, "frechet_distance": 5.0, "spectral_flatness": 0.5}},
        "1": {"sample_rate": 16000, "classifier_test_accuracy": 0.7, "real": real,
              "ema": {"inception_score": 1.2, "frechet_distance": 30.0,
                      "spectral_flatness": 0.22}}}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    text = reference.summary_markdown(reference.load_reference_run(run_dir))
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows == ["| 0 | 250 | 0.50 | 0.80 | yes | 2.5 | 3 | yes | 2.50 | - |",
                    "| 1 | 16000 | 0.70 | 0.60 | no | 15.0 | 10 | no | 1.10 | yes |"]
    assert "provenance.json not written yet" in text and "finest output" not in text

    # With the finest source and an earlier run: a second table and a before/after table.
    after_dir = _write_run(tmp_path / "after", num_scales=2)
    better = {"inception_score": 1.8, "frechet_distance": 4.0, "spectral_flatness": 0.2}
    for entry in metrics["scales"].values():
        entry["ema"] = entry["finest"] = better
    (after_dir / "metrics.json").write_text(json.dumps(metrics))
    text = reference.summary_markdown(reference.load_reference_run(after_dir),
                                      previous=reference.load_reference_run(run_dir))
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert "## Scored on the finest output downsampled to each scale" in text
    assert rows == ["| 0 | 250 | 0.50 | 0.90 | yes | 2.0 | 3 | yes | 1.00 | - |",
                    "| 1 | 16000 | 0.70 | 0.90 | yes | 2.0 | 10 | yes | 1.00 | yes |",
                    "| 0 | 250 | 0.50 | 0.90 | yes | 2.0 | 3 | yes | 1.00 | - |",
                    "| 1 | 16000 | 0.70 | 0.90 | yes | 2.0 | 10 | yes | 1.00 | yes |",
                    "| 0 | 250 | 2.5 | 2.0 | - | 2.0 | - | 0.90 | - | 1.00 |",
                    "| 1 | 16000 | 15.0 | 2.0 | - | 2.0 | - | 0.90 | - | 1.00 |"]
    compared = reference.compare_runs(reference.load_reference_run(run_dir),
                                      reference.load_reference_run(after_dir))
    assert compared[1] == {"scale": 1, "sample_rate": 16000.0, "own_fd": (15.0, 2.0),
                           "finest_fd": (None, 2.0), "finest_is": (None, 0.9),
                           "finest_flatness": (None, 1.0)}
    table = reference.format_comparison(compared).splitlines()
    assert table[-3].split() == ["1", "16000", "|", "15.0", "2.0", "|", "-", "2.0", "|", "-",
                                 "0.90", "|", "-", "1.00"]
    assert max(map(len, table)) <= 76
