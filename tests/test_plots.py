"""Tests for pggan_lib.plots: the figures draw what they are given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.patches
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


SCHEDULE = [  # the shape of config.json["schedule"]
    {"index": 0, "scale": 0, "kind": "stable", "steps": 6, "start_step": 0, "batch_size": 4},
    {"index": 1, "scale": 1, "kind": "fade", "steps": 3, "start_step": 6, "batch_size": 4},
    {"index": 2, "scale": 1, "kind": "stable", "steps": 4, "start_step": 9, "batch_size": 4},
    {"index": 3, "scale": 2, "kind": "fade", "steps": 3, "start_step": 13, "batch_size": 4},
    {"index": 4, "scale": 2, "kind": "stable", "steps": 5, "start_step": 16, "batch_size": 4},
]


def _span_x(span):
    """x extent of an ``axvspan`` (a Rectangle in Matplotlib >= 3.9, a Polygon before)."""
    if isinstance(span, matplotlib.patches.Rectangle):
        return float(span.get_x()), float(span.get_x() + span.get_width())
    xs = np.asarray(span.get_xy())[:, 0]
    return float(np.min(xs)), float(np.max(xs))


def test_shade_phases_spans_cover_each_phase_steps_and_touch():
    _, ax = plt.subplots()
    spans = plots.shade_phases(ax, SCHEDULE)
    assert [_span_x(s) for s in spans] == [(0.5, 6.5), (6.5, 9.5), (9.5, 13.5), (13.5, 16.5),
                                           (16.5, 21.5)]
    assert spans[1].get_facecolor()[:3] == matplotlib.colors.to_rgb(plots.PHASE_COLOURS["fade"])
    assert spans[0].get_facecolor()[:3] == matplotlib.colors.to_rgb(plots.PHASE_COLOURS["stable"])
    assert (spans[0].get_alpha(), spans[1].get_alpha()) == (plots.PHASE_ALPHAS["stable"],
                                                            plots.PHASE_ALPHAS["fade"])
    # one legend entry per kind
    assert [s.get_label() for s in spans[:2]] == ["stable phase", "fade phase"]
    assert all(s.get_label().startswith("_") for s in spans[2:])
    plt.close("all")


def test_shade_phases_filters_scale_and_cuts_at_the_last_trained_step():
    _, ax = plt.subplots()
    assert [_span_x(s) for s in plots.shade_phases(ax, SCHEDULE, scale=1)] == [(6.5, 9.5),
                                                                            (9.5, 13.5)]
    # run stopped after step 11: phase 2 is cut, phases 3 and 4 never started
    assert [_span_x(s) for s in plots.shade_phases(ax, SCHEDULE, max_step=11)] == [
        (0.5, 6.5), (6.5, 9.5), (9.5, 11.5)]
    assert [_span_x(s) for s in plots.shade_phases(ax, SCHEDULE, kinds=("fade",))] == [
        (6.5, 9.5), (13.5, 16.5)]
    plt.close("all")


def test_shade_phases_accepts_training_phase_objects():
    from pggan_lib import training

    phases = [training.Phase(**{k: v for k, v in p.items()}) for p in SCHEDULE]
    _, ax = plt.subplots()
    assert [_span_x(s) for s in plots.shade_phases(ax, phases, scale=2)] == [(13.5, 16.5),
                                                                          (16.5, 21.5)]
    plt.close("all")


def test_run_curves_one_panel_per_trained_scale_with_its_steps():
    # a run stopped inside phase 2 (scale 1): 11 steps
    step = np.arange(1, 12)
    scale = np.array([0] * 6 + [1] * 5)
    d_real = np.linspace(0.0, 1.0, 11)
    d_fake = -d_real
    fig = plots.plot_run_curves({"step": step, "scale": scale, "d_real": d_real,
                                 "d_fake": d_fake}, SCHEDULE)
    drawn = [ax for ax in fig.axes if ax.axison]
    assert len(drawn) == 2
    lines = {line.get_label(): line for line in drawn[1].get_lines()}
    np.testing.assert_allclose(lines["D(x)"].get_xdata(), step[6:])
    np.testing.assert_allclose(lines["D(G(z))"].get_ydata(), d_fake[6:])
    assert [_span_x(p) for p in drawn[1].patches] == [(6.5, 9.5), (9.5, 11.5)]
    plt.close("all")


def test_metrics_per_scale_plots_each_source_value_per_scale():
    def metric(is_, fd, ndb):
        return {"inception_score": is_, "inception_score_std": 0.1, "frechet_distance": fd,
                "ndb_over_k": ndb}
    entries = {"0": {"real": metric(3.0, 2.0, 0.1), "ema": metric(1.5, 40.0, 0.9)},
               "2": {"real": metric(3.5, 3.0, 0.2), "ema": metric(2.0, 20.0, 0.6)},
               "1": {"real": metric(3.2, 2.5, 0.1)}}
    fig = plots.plot_metrics_per_scale(entries, num_classes=5, target_ratio=0.7)
    is_ax, fd_ax, ndb_ax = fig.axes[:3]   # the fourth cell holds the legend
    assert fig.get_size_inches()[0] <= 8
    fd = {line.get_label(): line for line in fd_ax.get_lines()}
    np.testing.assert_allclose(fd["real test clips"].get_xdata(), [0, 1, 2])
    np.testing.assert_allclose(fd["generated (EMA)"].get_xdata(), [0, 2])
    np.testing.assert_allclose(fd["generated (EMA)"].get_ydata(), [40.0, 20.0])
    ndb = {line.get_label(): line for line in ndb_ax.get_lines()}
    np.testing.assert_allclose(ndb["real test clips"].get_ydata(), [0.1, 0.1, 0.2])
    target = {line.get_label(): line for line in is_ax.get_lines()}["0.7 × real IS"]
    np.testing.assert_allclose(target.get_ydata(), [2.1, 2.24, 2.45])
    assert fd_ax.get_yscale() == "log"
    plt.close("all")


def test_use_book_style_sets_a_figure_that_fits_the_text_column():
    with matplotlib.rc_context():
        plots.use_book_style()
        width, _ = plt.rcParams["figure.figsize"]
        assert width * plt.rcParams["figure.dpi"] <= 800   # shown at about its own size
        assert plt.rcParams["axes.grid"] and plt.rcParams["font.size"] >= 10
