"""Tests for pggan_lib.plots: the figures draw what they are given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from pggan_lib import plots


def test_moving_average_matches_direct_window_means():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    expected = [1.0, 1.5, 2.5, 3.5, 4.5]
    np.testing.assert_allclose(plots.moving_average(values, 2), expected)
    np.testing.assert_allclose(plots.moving_average(values, 1), values)
    np.testing.assert_allclose(plots.moving_average(values, 10), np.cumsum(values) / np.arange(1, 6))


def test_critic_outputs_plot_the_report_curves_with_its_colours():
    steps = np.arange(4)
    d_real = np.array([1.0, 2.0, 3.0, 4.0])
    d_fake = np.array([0.5, 2.5, 1.0, 4.0])
    ax = plots.plot_critic_outputs(steps, d_real, d_fake)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"D(x)", "D(G(z))", "Δ = |D(G(z)) − D(x)|"}
    np.testing.assert_allclose(lines["Δ = |D(G(z)) − D(x)|"].get_ydata(), [0.5, 0.5, 2.0, 0.0])
    assert lines["D(G(z))"].get_color() == plots.REPORT_COLOURS["d_fake"]
    plt.close("all")


def test_real_vs_generated_figure_has_one_row_per_clip_and_four_panels():
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (3, 1024, 1)).astype(np.float32)
    fake = rng.uniform(-1, 1, (3, 1024, 1)).astype(np.float32)
    fig = plots.plot_real_vs_generated(real, fake, sample_rate=8000, count=2)
    assert len(fig.axes) == 8
    waveform = fig.axes[0].get_lines()[0]
    np.testing.assert_allclose(waveform.get_ydata(), real[0, :, 0])
    assert waveform.get_xdata()[-1] == pytest.approx(1023 / 8000)
    plt.close("all")
