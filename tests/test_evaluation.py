"""Tests of pggan_lib.evaluation: metric values against closed forms and
independent implementations, classifiers on a tiny tone dataset, and the
``pggan evaluate`` command end to end on a tiny run."""

import json
import math
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pggan_lib import cli, evaluation  # noqa: E402


# ------------------------------------------------------------ Inception Score
def _softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _inception_score_loop(probs, splits):
    """Independent, plain-loop implementation of Salimans et al.'s formula."""
    scores = []
    sizes = [len(part) for part in np.array_split(probs, splits)]
    start = 0
    for size in sizes:
        part = probs[start:start + size]
        start += size
        classes = len(part[0])
        marginal = [sum(row[c] for row in part) / len(part) for c in range(classes)]
        total = 0.0
        for row in part:
            total += sum(row[c] * math.log(row[c] / marginal[c]) for c in range(classes)
                         if row[c] > 0)
        scores.append(math.exp(total / len(part)))
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    return mean, std


def test_inception_score_is_one_when_predictions_equal_the_marginal():
    probs = np.tile([0.1, 0.2, 0.3, 0.4], (50, 1))
    mean, std = evaluation.inception_score(probs, splits=5)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    # One confident class for everything: also 1 (no variety).
    one_class = np.zeros((40, 4))
    one_class[:, 2] = 1.0
    assert evaluation.inception_score(one_class, splits=4)[0] == pytest.approx(1.0)


def test_inception_score_is_num_classes_for_confident_evenly_spread_predictions():
    num_classes = 5
    probs = np.eye(num_classes)[np.arange(100) % num_classes]  # each split of 10: 2 per class
    assert evaluation.inception_score(probs, splits=1)[0] == pytest.approx(num_classes)
    mean, std = evaluation.inception_score(probs, splits=10, shuffle=False)
    assert mean == pytest.approx(num_classes) and std == pytest.approx(0.0, abs=1e-12)
    # Sorted by class, unshuffled splits each hold one class and score 1: why rows are shuffled.
    by_class = np.sort(np.arange(100) % num_classes)
    assert evaluation.inception_score(np.eye(num_classes)[by_class], 10,
                                      shuffle=False)[0] == pytest.approx(1.0)
    assert evaluation.inception_score(np.eye(num_classes)[by_class], 10)[0] > 3.0


def test_inception_score_matches_an_independent_loop():
    rng = np.random.default_rng(3)
    probs = _softmax(rng.normal(scale=2.0, size=(103, 7)))
    for splits in (1, 4, 10):
        ours = evaluation.inception_score(probs, splits=splits, shuffle=False)
        reference = _inception_score_loop(probs.tolist(), splits)
        assert ours[0] == pytest.approx(reference[0], rel=1e-10)
        assert ours[1] == pytest.approx(reference[1], rel=1e-8, abs=1e-12)
        assert 1.0 <= ours[0] <= 7.0


def test_inception_score_rejects_bad_input():
    with pytest.raises(evaluation.EvaluationError, match="cannot be cut into 10 splits"):
        evaluation.inception_score(np.full((5, 2), 0.5), splits=10)
    with pytest.raises(evaluation.EvaluationError, match="probability distribution"):
        evaluation.inception_score(np.ones((10, 2)), splits=2)


# ----------------------------------------------------------- Fréchet distance
def test_frechet_distance_is_zero_for_identical_sets():
    features = np.random.default_rng(0).normal(size=(300, 6))
    assert evaluation.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.5, 0.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    closed_form = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    exact = evaluation.frechet_distance_from_moments(mu1, np.diag(var1), mu2, np.diag(var2))
    assert exact == pytest.approx(closed_form, rel=1e-9)
    rng = np.random.default_rng(1)
    a = mu1 + np.sqrt(var1) * rng.standard_normal((200_000, 3))
    b = mu2 + np.sqrt(var2) * rng.standard_normal((200_000, 3))
    assert evaluation.frechet_distance(a, b) == pytest.approx(closed_form, rel=0.01)


def test_frechet_distance_stays_finite_with_singular_covariances():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 20)), rng.normal(size=(5, 20)) + 1.0  # rank 4 of 20
    value = evaluation.frechet_distance(a, b)
    assert np.isfinite(value) and value > 0


# ------------------------------------------------------------------------ NDB
def test_ndb_finds_few_bins_for_one_distribution_and_many_for_disjoint_ones():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(2000, 2))
    same = evaluation.ndb(reference, rng.normal(size=(1000, 2)), num_bins=10, seed=0)
    assert same["ndb"] <= 2 and same["num_bins"] == 10
    assert sum(same["reference_proportions"]) == pytest.approx(1.0)
    disjoint = evaluation.ndb(reference, rng.normal(size=(1000, 2)) + 6.0, num_bins=10, seed=0)
    assert disjoint["ndb"] >= 8 and disjoint["ndb_over_k"] == disjoint["ndb"] / 10


# ---------------------------------------------------------- nearest neighbours
def test_copied_training_clips_are_at_distance_zero():
    rng = np.random.default_rng(0)
    train = rng.normal(scale=0.1, size=(12, 2048)).astype(np.float32)
    copies = 0.5 * train[[7, 2, 9]]  # a change of level only
    spectra_train = evaluation.normalized_log_spectra(train, 8000)
    spectra_copies = evaluation.normalized_log_spectra(copies, 8000)
    distances, indices = evaluation.nearest_neighbours(spectra_copies, spectra_train)
    assert indices.tolist() == [7, 2, 9]
    np.testing.assert_allclose(distances, 0.0, atol=1e-3)
    fresh = evaluation.normalized_log_spectra(rng.normal(scale=0.1, size=(3, 2048)), 8000)
    assert evaluation.nearest_neighbours(fresh, spectra_train)[0].min() > 0.1


def test_band_edges_cover_every_bin_once():
    for n_fft in (16, 256, 1024):
        edges = evaluation.band_edges(n_fft, 6)
        assert edges[0] == 0 and edges[-1] == n_fft // 2 + 1
        assert np.all(np.diff(edges) >= 1)
    assert evaluation.band_edges(16, 6).tolist() == list(range(10))  # one bin per band


def test_transformations_do_what_they_say():
    rate = 4000
    t = np.arange(4000) / rate
    clip = (np.sin(2 * np.pi * 100 * t) + np.sin(2 * np.pi * 1000 * t))[None].astype(np.float32)
    low = evaluation.low_passed(clip, rate, cutoff_hz=500)
    np.testing.assert_allclose(low[0], np.sin(2 * np.pi * 100 * t), atol=1e-4)
    scrambled = evaluation.phase_scrambled(clip, seed=1)
    np.testing.assert_allclose(np.abs(np.fft.rfft(scrambled[0])), np.abs(np.fft.rfft(clip[0])),
                               rtol=1e-3, atol=1e-2)
    assert np.abs(scrambled - clip).max() > 0.5


# ---------------------------------------------- classifiers and the CLI, tiny
@pytest.fixture(scope="module")
def tiny_run(tone_dataset, tmp_path_factory):
    from pggan_lib import training

    run = tmp_path_factory.mktemp("eval_run") / "run"
    training.train(tone_dataset, run, preset="tiny", progress=False)
    return run


def test_classifiers_tell_tones_apart_and_are_saved_and_reused(tone_dataset):
    from pggan_lib import data

    recipe = evaluation.ClassifierRecipe(steps=150)
    classifiers = evaluation.load_or_train_classifiers(tone_dataset, recipe=recipe)
    assert sorted(classifiers) == [0, 1, 2]
    for scale, classifier in classifiers.items():
        assert classifier.report["test_accuracy"] >= 0.9, classifier.report
        confusion = np.array(classifier.report["confusion"])
        assert confusion.sum() == classifier.report["num_test"] and confusion.shape == (2, 2)
        saved = json.loads((tone_dataset / "classifiers" / f"scale_{scale}.json").read_text())
        assert saved["recipe"] == recipe.to_dict()
    # Reused (not retrained) when the recipe matches: same predictions.
    test_clips = data.load_clips(tone_dataset, "test", 2)[0]
    again = evaluation.load_or_train_classifiers(tone_dataset, scales=[2], recipe=recipe)[2]
    np.testing.assert_allclose(again.predict_proba(test_clips),
                               classifiers[2].predict_proba(test_clips), atol=1e-6)
    # Deterministic: training again gives the same weights.
    retrained = evaluation.train_classifier(tone_dataset, 2, recipe)
    for w1, w2 in zip(retrained.model.get_weights(), classifiers[2].model.get_weights()):
        np.testing.assert_allclose(w1, w2, atol=1e-6)
    # Real test clips against real train clips: well-separated classes, IS near C = 2.
    train_clips = data.load_clips(tone_dataset, "train", 2)[0]
    real = evaluation.real_reference(classifiers[2], train_clips, test_clips)
    assert real["inception_score"] > 1.5
    assert set(real) >= {"frechet_distance", "ndb_over_k", "nn_median", "closest_pairs"}


def test_classifier_summary_counts_pieces_and_is_plain_json(tone_dataset):
    from pggan_lib import data

    recipe = evaluation.ClassifierRecipe(steps=150)
    summary = evaluation.classifier_summary(tone_dataset, recipe=recipe)
    manifest = data.read_manifest(tone_dataset)
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
    assert summary["class_names"] == manifest["class_names"]
    assert summary["recipe"] == recipe.to_dict()
    for split in ("train", "test"):
        counted = {name: sum(1 for source in manifest["sources"]
                             if source["class"] == name and source["split"] == split)
                   for name in manifest["class_names"]}
        assert summary["pieces_per_class"][split] == counted
        assert sum(counted.values()) == len(manifest["splits"][split]["sources"])
    assert [entry["scale"] for entry in summary["scales"]] == [0, 1, 2]
    for entry in summary["scales"]:
        saved = json.loads((tone_dataset / "classifiers"
                            / f"scale_{entry['scale']}.json").read_text())
        assert entry["test_accuracy"] == saved["test_accuracy"]
        rows = np.array(entry["confusion"]).sum(axis=1).tolist()
        assert rows == [summary["clips_per_class"]["test"][name]
                        for name in summary["class_names"]]


def test_pggan_evaluate_end_to_end(tone_dataset, tone_dataset_factory, tiny_run, tmp_path,
                                   capfd):
    code = cli.main(["evaluate", "--run", str(tiny_run), "--data", str(tone_dataset),
                     "--n", "20"])
    out, err = capfd.readouterr()  # file descriptors: TensorFlow's logger writes there too
    assert code == 0, err
    assert "retracing" not in err  # one compiled loop per classifier and shape
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert sorted(metrics["scales"]) == ["0", "1", "2"] and metrics["n"] == 20
    for entry in metrics["scales"].values():
        assert {"real", "ema", "raw", "finest", "classifier_test_accuracy",
                "sample_rate"} <= set(entry)
        for source in ("real", "ema", "raw"):
            m = entry[source]
            assert 1.0 <= m["inception_score"] <= 2.0 + 1e-9
            assert m["frechet_distance"] >= 0 and 0 <= m["ndb_over_k"] <= 1
            assert len(m["closest_pairs"]) == 5
        assert entry["ema"]["n"] == 20
    assert metrics["scales"]["2"]["finest"] == metrics["scales"]["2"]["ema"]
    assert metrics["scales"]["0"]["finest"] != metrics["scales"]["0"]["ema"]
    assert "real test" in out and "metrics.json" in out

    # Clear errors: missing run, a dataset that does not match, too few clips.
    other = tone_dataset_factory(tmp_path / "other", num_scales=2)
    cases = [
        (["--run", tmp_path / "nope", "--data", tone_dataset], "no such run folder"),
        (["--run", tiny_run, "--data", tmp_path], "is not a built dataset"),
        (["--run", tiny_run, "--data", other], "num_scales is 2 in the dataset but 3"),
        (["--run", tiny_run, "--data", tone_dataset, "--n", "5"], "too few to evaluate"),
    ]
    for argv, message in cases:
        code = cli.main(["evaluate"] + [str(a) for a in argv])
        err = capfd.readouterr().err
        assert code == 2 and message in err, (argv, err)


def test_finest_source_is_the_top_scale_clips_through_the_data_pyramid(tiny_run):
    from pggan_lib import audio, training

    levels = evaluation._finest_pyramid(tiny_run, 6, seed=3, top=2)
    top, _, _ = training.generate_audio(tiny_run, 6, seed=3, scale=2)
    for clip, k0, k1, k2 in zip(top, levels[0], levels[1], levels[2]):
        expected = audio.sample_rate_pyramid(clip, 3)  # what build_dataset stores per scale
        for got, want in zip((k0, k1, k2), expected):
            np.testing.assert_allclose(got, want, atol=1e-5)
    assert [levels[k].shape for k in (0, 1, 2)] == [(6, 64), (6, 128), (6, 256)]


def test_train_evaluate_records_each_stable_phase_once(tone_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(tone_dataset), "--out", str(run), "--preset", "tiny",
                     "--no-progress", "--evaluate"]) == 0
    recorded = json.loads((run / evaluation.PHASE_METRICS_FILE_NAME).read_text())
    # tiny on 3 scales: phases stable 0, fade 1, stable 1, fade 2, stable 2.
    assert sorted(recorded) == ["0", "2", "4"]
    assert [recorded[k]["scale"] for k in ("0", "2", "4")] == [0, 1, 2]
    for entry in recorded.values():
        assert 1.0 <= entry["ema"]["inception_score"] <= 2.0 + 1e-6  # two classes
        assert entry["ema"]["frechet_distance"] >= 0.0
    # Reporting a phase again (as a resumed run does) overwrites its entry.
    evaluation.record_phase_metrics(run, tone_dataset, scale=2, phase_index=4)
    assert sorted(json.loads((run / evaluation.PHASE_METRICS_FILE_NAME).read_text())) == \
        ["0", "2", "4"]


def test_check_targets_against_the_issue_thresholds():
    def entry(rate, is_gen, fd_gen, flat_gen=None):
        real = {"inception_score": 2.0, "frechet_distance": 2.0, "spectral_flatness": 0.1}
        gen = {"inception_score": is_gen, "frechet_distance": fd_gen, "spectral_flatness": flat_gen}
        return {"sample_rate": rate, "real": real, "ema": gen}

    metrics = {"scales": {"0": entry(250, 1.4, 6.0), "1": entry(1000, 1.39, 6.1),
                          "2": entry(2000, 1.5, 20.0, 0.124)}}
    rows = evaluation.check_targets(metrics)
    assert [r["fd_limit"] for r in rows] == [3.0, 3.0, 10.0]
    assert [(r["is_met"], r["fd_met"]) for r in rows] == [(True, True), (False, False),
                                                         (True, True)]
    assert rows[2]["flatness_ratio"] == pytest.approx(1.24) and rows[2]["flatness_met"]
    assert rows[0]["flatness_met"] is None  # only the finest scale is judged on tonality
    table = evaluation.format_targets_table(rows)
    assert len(table.splitlines()) == 5 and "1.24" in table
