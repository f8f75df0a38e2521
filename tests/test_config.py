"""Tests for pggan_lib.config: the scale rates and the quick switch."""

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
