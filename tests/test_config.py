"""Tests for pggan_lib.config: the scale rates and the quick switch."""

import json
import os
import subprocess
import sys

import pytest

from pggan_lib import config


def test_scale_sample_rates_halve_from_finest_to_coarsest():
    rates = [config.scale_sample_rate(k, 7, 16_000) for k in range(7)]
    assert rates == [250, 500, 1000, 2000, 4000, 8000, 16000]


@pytest.mark.parametrize("scale", [-1, 7])
def test_scale_outside_the_pyramid_is_refused(scale):
    with pytest.raises(ValueError, match="scale must be in"):
        config.scale_sample_rate(scale, 7)


@pytest.mark.parametrize("value, expected", [("1", True), ("0", False), ("", False)])
def test_quick_follows_the_environment_variable(value, expected):
    output = subprocess.run(
        [sys.executable, "-c", "from pggan_lib import config; print(config.QUICK)"],
        env={"PGGAN_QUICK": value, "PATH": ""}, capture_output=True, text=True, check=True)
    assert output.stdout.strip() == str(expected)


@pytest.mark.parametrize("quick", ["0", "1"])
def test_chapter_train_overrides_follow_quick_mode(quick):
    # A fresh interpreter: QUICK is read once, at import. Each call returns a new dict.
    code = ("import json; from pggan_lib import config; o = config.chapter_train_overrides(); "
            "o['extra'] = 1; print(json.dumps(config.chapter_train_overrides()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PGGAN_QUICK": quick}).stdout
    overrides = json.loads(out)
    if quick == "1":
        assert overrides == {"stable_steps": [20, 10, 6, 4, 3, 2, 1],
                             "fade_steps": [0, 4, 4, 3, 2, 2, 2], "jit_compile": False}
        preset = config.get_preset("quick").replace(**config.QUICK_TRAIN_OVERRIDES)
        assert preset.per_scale("stable_steps", 7) == (20, 10, 6, 4, 3, 2, 1)
    else:
        assert overrides == {}   # full mode trains the preset as it ships


def test_committed_studies_keep_the_presets_they_measured():
    """The live presets took the growth study's winner (PGGAN's head, heads at 0.1 of
    He's std), dropped the noise augmentation and took pggan_subpixel_match's sub-pixel
    upsampling and log-spectrum term; every committed arm still builds on skip outputs,
    He's heads, all five augmentations, FIR upsampling and no log-spectrum term."""
    from pggan_lib import ablation, layers, representation_study as rs

    for name in ("quick", "reference", "colab"):
        live, studied = config.get_preset(name), config.studied_preset(name)
        assert (live.output_skips, live.head_std) == (False, 0.1)
        assert (studied.output_skips, studied.head_std) == (True, 1.0)
        assert "noise" not in live.augment and studied.augment == layers.AUGMENT_NAMES
        assert (live.upsample, live.spectrum_match) == ("subpixel", 1.0)
        assert (studied.upsample, studied.spectrum_match) == ("fir", 0.0)
        assert studied.replace(output_skips=False, head_std=0.1, augment=config.DEFAULT_AUGMENT,
                               **config.PRESET_UPSAMPLING) == live
    # The arm the presets took is the live quick preset, built from the studied one.
    arm = next(arm for arm in rs.PEER_ARMS if arm.name == "pggan_subpixel_match")
    assert config.studied_preset("quick").replace(**arm.overrides) == config.get_preset("quick")
    assert config.studied_preset("tiny") == config.get_preset("tiny")
    waveform = next(arm for arm in rs.ARMS if arm.name == "waveform")
    assert rs._preset(waveform, 7).output_skips and rs._preset(waveform, 7).head_std == 1.0
    learn = ablation.BUDGETS["learn"].preset(2, 7)
    assert (learn.output_skips, learn.head_std) == (False, 1.0)
    with pytest.raises(ValueError, match="valid presets"):
        config.studied_preset("fast")
