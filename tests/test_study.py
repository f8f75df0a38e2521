"""Tests of pggan_lib.study: scoring points, runs under a CPU budget, the summary."""

import json
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pggan_lib import study  # noqa: E402

TINY_WINDOWS = study.StudyArm("tiny_windows", "data", "tiny, windows + noise", preset="tiny",
                              overrides={"data": "windows", "augment": ("noise",)})


def test_evaluation_points_double_up_to_the_budget():
    assert study.evaluation_points(240, 30) == [30, 60, 120, 240]
    assert study.evaluation_points(100, 30) == [30, 60, 100]
    assert study.evaluation_points(30, 30) == [30]
    with pytest.raises(ValueError, match="first_cpu_s"):
        study.evaluation_points(10, 20)


def test_default_arms_have_unique_names_and_valid_overrides():
    from pggan_lib import config, layers, training

    names = [a.name for a in study.DEFAULT_ARMS]
    assert len(names) == len(set(names)) and names[0] == "old_reference"
    for arm in study.DEFAULT_ARMS:
        preset = config.get_preset(arm.preset).replace(**arm.overrides)
        assert preset.data in training.DATA_MODES
        layers.check_augment(preset.augment)
    # The baseline is pinned: it stays the pre-study recipe whatever the preset becomes.
    baseline = config.get_preset("reference").replace(**study.DEFAULT_ARMS[0].overrides)
    assert (baseline.data, baseline.augment, baseline.ema_decay, baseline.learning_rate) == (
        "clips", (), 0.999, 1e-3)


def test_run_study_arm_scores_at_each_cpu_point(tone_dataset, tmp_path):
    record = study.run_study_arm(tone_dataset, tmp_path / "run", TINY_WINDOWS, seed=0,
                                 budget_cpu_s=4.0, first_cpu_s=1.0, n=40)
    targets = study.evaluation_points(4.0, 1.0)
    assert [p["cpu_s"] >= t for p, t in zip(record["points"], targets)] == [True] * 3
    steps = [p["step"] for p in record["points"]]
    assert len(steps) == 3 and steps == sorted(steps) and steps[0] >= 1
    for point in record["points"]:
        for source in ("ema", "raw"):
            m = point[source]
            assert m["frechet_distance"] >= 0 and 1.0 <= m["inception_score"] <= 2.0
            assert 0 < m["spectral_flatness"] <= 1
    # The real test clips are pure tones: far more tonal than an untrained generator.
    assert record["real"]["spectral_flatness"] < record["points"][0]["raw"]["spectral_flatness"]
    assert record["n"] == 40 and record["diverged"] is None
    json.dumps(record)  # a results file


def test_run_study_skips_finished_runs_and_summarises(tone_dataset, tmp_path):
    out = tmp_path / "out"
    summary = study.run_study(tone_dataset, out, tmp_path / "runs", arms=[TINY_WINDOWS], seeds=[0, 1],
                              budget_cpu_s=2.0, first_cpu_s=1.0, command="test",
                              progress=False)
    files = sorted(p.name for p in (out / "runs").iterdir())
    assert files == ["tiny_windows_seed0.json", "tiny_windows_seed1.json"]
    # An arm with tuple fields (augment) is recognised in its JSON form: not trained again.
    mtimes = [p.stat().st_mtime_ns for p in sorted((out / "runs").iterdir())]
    study.run_study(tone_dataset, out, tmp_path / "runs", arms=[TINY_WINDOWS], seeds=[0, 1],
                    budget_cpu_s=2.0, first_cpu_s=1.0, progress=False)
    assert [p.stat().st_mtime_ns for p in sorted((out / "runs").iterdir())] == mtimes
    # A run made on another build of the dataset (a larger corpus) is made again.
    stale = out / "runs" / "tiny_windows_seed1.json"
    record = json.loads(stale.read_text())
    assert len(record["dataset_fingerprint"]) == 16
    stale.write_text(json.dumps({**record, "dataset_fingerprint": "0" * 16}))
    study.run_study(tone_dataset, out, tmp_path / "runs", arms=[TINY_WINDOWS], seeds=[0, 1],
                    budget_cpu_s=2.0, first_cpu_s=1.0, progress=False)
    assert json.loads(stale.read_text())["dataset_fingerprint"] == record["dataset_fingerprint"]
    assert (out / "runs" / "tiny_windows_seed0.json").stat().st_mtime_ns == mtimes[0]
    saved = json.loads((out / study.STUDY_FILE_NAME).read_text())
    assert saved["arms"]["tiny_windows"]["seeds"] == 2 and "runs" not in saved
    assert summary["arms"]["tiny_windows"]["ema_fd"]["n"] == 2
    assert "tiny_windows" in study.format_study_table(summary)


def _run(name, seed, fd, floor=2.0, flatness=0.4, real_flatness=0.2, step=100):
    metrics = {"frechet_distance": fd, "inception_score": 1.5, "ndb_over_k": 0.5,
               "spectral_flatness": flatness}
    return {"arm": {"name": name, "lever": "x", "description": "d", "overrides": {}},
            "seed": seed, "real": {"frechet_distance": floor, "inception_score": 2.0,
                                   "ndb_over_k": 0.1, "spectral_flatness": real_flatness},
            "points": [{"cpu_s": 10, "step": step // 2, "ema": None, "raw": None},
                       {"cpu_s": 20, "step": step, "ema": metrics, "raw": metrics}]}


def test_summary_takes_the_last_point_with_seed_spread():
    summary = study.summarize_study([_run("a", 0, 10.0), _run("a", 1, 14.0),
                                     _run("b", 0, 4.0, flatness=0.2)])
    a = summary["arms"]["a"]
    assert a["ema_fd"]["mean"] == pytest.approx(12.0) and a["ema_fd"]["std"] == pytest.approx(2.0)
    assert a["ema_fd_ratio"]["mean"] == pytest.approx(6.0)  # FD / real floor 2
    assert a["ema_flatness_ratio"]["mean"] == pytest.approx(2.0)
    assert summary["arms"]["b"]["ema_flatness_ratio"]["mean"] == pytest.approx(1.0)
    assert a["steps"]["mean"] == 100 and a["seeds"] == 2


def test_budget_to_reach_inverts_a_power_law():
    # FD - floor = 40 * (cpu / 10) ** -0.5 with floor 2: FD = 3 x floor (excess 4) at cpu = 1000.
    floor = 2.0
    points = [{"cpu_s": c, "step": 1, "ema": {"frechet_distance": floor + 40 * (c / 10) ** -0.5}}
              for c in (10, 20, 40, 80)]
    run = {"real": {"frechet_distance": floor}, "points": points}
    result = study.budget_to_reach(run, 3.0)
    assert result["slope"] == pytest.approx(-0.5) and result["cpu_s"] == pytest.approx(1000.0)
    assert result["points"] == 4 and not result["reached"]
    rising = {"real": {"frechet_distance": floor},
              "points": [{"cpu_s": c, "ema": {"frechet_distance": floor + c}} for c in (1, 2)]}
    assert study.budget_to_reach(rising, 3.0)["cpu_s"] is None
    assert study.budget_to_reach({"real": run["real"], "points": points[:1]}, 3.0) is None


def test_growth_study_scores_every_scale_and_skips_finished_runs(tone_dataset, tmp_path,
                                                                  monkeypatch):
    arms = [study.StudyArm(a.name, a.lever, a.description, preset="tiny", overrides=a.overrides)
            for a in study.GROWTH_ARMS]
    schedule = dict(stable_steps=(3, 2, 2), fade_steps=(0, 2, 2), n=40)
    summary = study.run_growth_study(tone_dataset, tmp_path / "out", tmp_path / "runs", arms,
                                     seeds=[0], progress=False, **schedule)
    grown, direct = summary["runs"][:5], summary["runs"][5]
    assert [r["arm"]["name"] for r in summary["runs"]] == ["old_recipe", "pggan_head", "skip",
                                                          "skip_quiet", "pggan_quiet", "direct"]
    for run in summary["runs"]:
        assert run["top_scale"] == 2 and run["cpu_s"] > 0
        assert sorted(run["scales"]) == ["0", "1", "2"]
        # At the top scale the finest clips are the scale's own output.
        assert run["scales"]["2"]["finest"] == run["scales"]["2"]["ema"]
        assert run["scales"]["0"]["finest"] != run["scales"]["0"]["ema"]
        ratio = summary["arms"][run["arm"]["name"]]["scales"]["0"]["finest_fd_ratio"]
        scale0 = run["scales"]["0"]
        assert ratio["mean"] == pytest.approx(scale0["finest"]["frechet_distance"]
                                              / scale0["real"]["frechet_distance"])
    assert [r["steps"] for r in grown] == [11] * 5
    # The direct arm trains scale 2 alone until it has spent the grown arms' mean CPU time.
    # Records keep cpu_s to 0.1 s, so the stored figure may round below the budget by 0.05.
    budget = np.mean([r["cpu_s"] for r in grown])
    assert direct["cpu_s"] >= budget - 0.05 and direct["steps"] >= 1
    assert json.loads((tmp_path / "out" / study.GROWTH_FILE_NAME).read_text())["arms"].keys() == {
        "old_recipe", "pggan_head", "skip", "skip_quiet", "pggan_quiet", "direct"}
    table = study.format_growth_table(summary).splitlines()
    assert len(table) == 2 + 6 * 3 and max(map(len, table)) <= 76

    def fail(*args, **kwargs):
        raise AssertionError("a finished growth run was trained again")

    monkeypatch.setattr(study, "run_growth_arm", fail)
    again = study.run_growth_study(tone_dataset, tmp_path / "out", tmp_path / "runs", arms,
                                   seeds=[0], progress=False, **schedule)
    assert again["runs"] == summary["runs"]
