"""Chapter 8's comparison harness: equal CPU budgets, scores at the finest scale, resume."""

import dataclasses
import json

import numpy as np
import pytest

from pggan_lib import config
from pggan_lib import representation_study as rs

# The tiny preset on random windows, as the quick preset trains (finest_gains needs them).
ARMS = tuple(dataclasses.replace(arm, preset="tiny", overrides={**arm.overrides, "data": "windows"})
             for arm in rs.ARMS)


@pytest.fixture(scope="module")
def study(tone_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("representations")
    summary = rs.run_representation_study(tone_dataset, out, out / "scratch", ARMS,
                                          seeds=(0, 1), budget_cpu_s=8.0, mark_cpu_s=4.0,
                                          progress=False)
    return out, summary


def test_every_run_spends_the_budget_and_is_scored_at_the_finest_scale(study):
    out, summary = study
    assert len(summary["runs"]) == 2 * len(ARMS)
    for run in summary["runs"]:
        assert run["scale"] == 2 and run["diverged"] is None
        last = run["points"][-1]
        # Scored at the first step past the budget (or past reaching the top, if later).
        assert last["mark"] == 8.0 and last["cpu_s"] >= 8.0
        assert last["cpu_s"] - max(8.0, run["top_reached_cpu_s"]) < 2.0
        assert run["top_reached_cpu_s"] <= last["cpu_s"]
        assert all(p["ema"]["fd_ratio"] > 0 for p in run["points"])
        assert [p["mark"] for p in run["points"]] == sorted(p["mark"] for p in run["points"])
        assert run["steps"] == last["step"]
    assert sorted(p.name for p in (out / "clips").glob("*.wav")) == sorted(
        f"{arm.name}_{i}.wav" for arm in ARMS for i in range(4))


def test_summary_compares_each_spectrogram_arm_with_the_waveform_pyramid(study):
    out, summary = study
    stored = json.loads((out / rs.SUMMARY_FILE_NAME).read_text())
    assert stored["baseline"] == "waveform" and set(stored["arms"]) == {a.name for a in ARMS}
    for name in ("spectral", "magnitude"):
        entry = stored["arms"][name]
        finals = [r["points"][-1]["ema"]["fd_ratio"] for r in summary["runs"]
                  if r["arm"]["name"] == name]
        assert entry["fd_ratio"]["mean"] == pytest.approx(np.mean(finals))
        base = [r["points"][-1]["ema"]["fd_ratio"] for r in summary["runs"]
                if r["arm"]["name"] == "waveform"]
        compare = entry["fd_ratio_vs_waveform"]
        assert compare["difference"] == pytest.approx(np.mean(finals) - np.mean(base))
        assert compare["n"] == [2, 2]
    lines = rs.format_representation_table(stored).splitlines()
    # (The committed table's width is checked in test_committed_results: a tone's
    # flatness ratios are far wider than music's.)
    assert len(lines) == 2 + len(ARMS)


def test_peer_arms_train_the_finest_scale_from_the_first_step(study):
    out, summary = study
    # No growth: the finest scale's phase is the first (compiling is all it waits for).
    grown = [r["top_reached_cpu_s"] for r in summary["runs"] if r["arm"]["name"] == "waveform"]
    assert min(grown) > max(r["top_reached_cpu_s"] for r in summary["runs"]
                            if r["arm"]["name"] in ("direct", "wavegan"))
    arms = {arm.name: arm for arm in rs.ARMS}
    preset = rs._preset(arms["wavegan"], 7)
    assert preset.architecture == "wavegan" and preset.stable_steps[:6] == (0,) * 6
    half, full = rs._preset(arms["half_growth"], 7), rs._preset(arms["waveform"], 7)
    assert 2 * sum(half.stable_steps[:6]) <= sum(full.stable_steps[:6])
    assert half.stable_steps[6] == full.stable_steps[6] == rs.ENDLESS_STEPS
    # The silent-head arms differ from their He-headed twins in that field alone.
    for silent, twin in (("silent_heads", "waveform"), ("direct_silent", "direct")):
        assert rs._preset(arms[silent], 7) == rs._preset(arms[twin], 7).replace(
            silent_heads=True)
    assert rs._preset(arms["quiet_heads"], 7) == full.replace(head_std=0.1)
    quiet = full.replace(head_std=0.1, output_skips=False)
    assert rs._preset(arms["pggan_quiet"], 7) == quiet
    clean = rs._preset(arms["pggan_no_noise"], 7)
    assert clean == quiet.replace(augment=("gain", "polarity", "shift", "cutout"))
    # With sub-pixel upsampling and the log-spectrum term, the arm trains today's quick
    # preset on the growth of the others.
    newest = rs._preset(arms["pggan_subpixel_match"], 7)
    assert newest == clean.replace(**config.PRESET_UPSAMPLING)
    assert newest == config.get_preset("quick").replace(
        stable_steps=full.stable_steps, fade_steps=full.fade_steps,
        checkpoint_every=full.checkpoint_every, log_every=full.log_every)
    # The pre-emphasis arm is that arm with a filter in front of its critic.
    assert rs._preset(arms["pggan_emphasis"], 7) == clean.replace(critic_emphasis=0.95)
    assert rs._preset(arms["pggan_lr_2e-3"], 7) == clean.replace(learning_rate=2e-3)
    assert rs._preset(arms["pggan_no_pixel_norm"], 7) == clean.replace(feature_pixel_norm=False)


def test_a_rerun_skips_finished_runs(study, tone_dataset, monkeypatch):
    out, summary = study

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(rs, "run_representation_arm", refuse)
    again = rs.run_representation_study(tone_dataset, out, out / "scratch", ARMS,
                                        seeds=(0, 1), budget_cpu_s=8.0, mark_cpu_s=4.0,
                                        progress=False)
    assert again["arms"] == summary["arms"]
