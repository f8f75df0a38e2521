"""Figures the chapters share: waveforms, spectrograms, critic curves and metrics.

Every function draws on a Matplotlib ``Axes`` (made when not given) and
returns it, so that a chapter can combine them into its own figures.

Notebook: chapters/03_progressive_model.ipynb
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from pggan_lib import audio

__all__ = [
    "BOOK_STYLE",
    "use_book_style",
    "REPORT_COLOURS",
    "moving_average",
    "plot_critic_outputs",
    "plot_waveforms",
    "plot_spectrogram",
    "plot_real_vs_generated",
    "PHASE_COLOURS",
    "PHASE_ALPHAS",
    "shade_phases",
    "plot_run_curves",
    "plot_metrics_per_scale",
    "plot_study_curves",
]

#: Matplotlib settings of every chapter's figures. At 100 dpi a figure of at most
#: 8 inches is shown at (nearly) its own size in the book's text column, so
#: 10-point labels stay readable; wider figures are shrunk, and their labels too.
BOOK_STYLE = {"figure.dpi": 100, "figure.figsize": (7.5, 3.2), "axes.grid": True,
              "grid.alpha": 0.3, "font.size": 10, "axes.titlesize": 10,
              "legend.fontsize": 9}


def use_book_style() -> None:
    """Apply :data:`BOOK_STYLE` to Matplotlib (every chapter calls it once).

    Notebook: chapters/01_audio_fundamentals.ipynb
    """
    plt.rcParams.update(BOOK_STYLE)


#: The report's colours: D(x) blue, D(G(z)) orange, Delta green.
REPORT_COLOURS = {"d_real": "tab:blue", "d_fake": "tab:orange", "delta": "tab:green"}

#: Shading of training phases: fade-in purple, stable grey (and the opacity of each).
PHASE_COLOURS = {"fade": "tab:purple", "stable": "tab:gray"}
PHASE_ALPHAS = {"fade": 0.2, "stable": 0.08}


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average that keeps the input's length.

    Args:
        values: A series, shape ``(n,)``.
        window: Number of points averaged (1 returns the series unchanged).

    Returns:
        ``float64`` array of shape ``(n,)``; point ``i`` averages
        ``values[max(0, i - window + 1) : i + 1]``.
    """
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or values.size == 0:
        return values
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(ends - window, 0)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def plot_critic_outputs(steps: Sequence[int], d_real: Sequence[float], d_fake: Sequence[float],
                        smooth: int = 1, ax: plt.Axes | None = None,
                        title: str | None = None) -> plt.Axes:
    """The report's monitoring figure: D(x), D(G(z)) and Delta = |D(G(z)) - D(x)|.

    Args:
        steps: Training steps, shape ``(n,)``.
        d_real: Mean critic output on real clips per step, shape ``(n,)``.
        d_fake: Mean critic output on generated clips per step, shape ``(n,)``.
        smooth: Moving-average window applied to all three curves.
        ax: Axes to draw on (a new figure when ``None``).
        title: Axes title.

    Returns:
        The axes.

    Notebook: chapters/02_wgan_gp.ipynb
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3))
    d_real = np.asarray(d_real, dtype=np.float64)
    d_fake = np.asarray(d_fake, dtype=np.float64)
    ax.plot(steps, moving_average(d_real, smooth), color=REPORT_COLOURS["d_real"], label="D(x)")
    ax.plot(steps, moving_average(d_fake, smooth), color=REPORT_COLOURS["d_fake"], label="D(G(z))")
    ax.plot(steps, moving_average(np.abs(d_fake - d_real), smooth),
            color=REPORT_COLOURS["delta"], label="Δ = |D(G(z)) − D(x)|")
    ax.set(xlabel="step", ylabel="critic output")
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return ax


def plot_waveforms(clips: np.ndarray, sample_rate: int, labels: Sequence[str] | None = None,
                   axes: Sequence[plt.Axes] | None = None, colour: str = "tab:blue") -> list:
    """One waveform per row.

    Args:
        clips: Audio, shape ``(n, samples)`` or ``(n, samples, 1)``.
        sample_rate: Rate in Hz (sets the time axis).
        labels: Optional title per clip.
        axes: ``n`` axes to draw on (a new column of subplots when ``None``).
        colour: Line colour.

    Returns:
        The list of axes.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    clips = np.asarray(clips).reshape(len(clips), -1)
    if axes is None:
        _, axes = plt.subplots(len(clips), 1, figsize=(8, 1.5 * len(clips)), squeeze=False)
        axes = axes[:, 0]
    time = np.arange(clips.shape[1]) / sample_rate
    for index, (ax, clip) in enumerate(zip(axes, clips)):
        ax.plot(time, clip, linewidth=0.6, color=colour)
        ax.set(ylim=(-1.05, 1.05))
        if labels is not None:
            ax.set_title(labels[index], fontsize=9)
    axes[-1].set_xlabel("time (s)")
    return list(axes)


def plot_spectrogram(clip: np.ndarray, sample_rate: int, ax: plt.Axes | None = None,
                     title: str | None = None, vmin: float = -80.0) -> plt.Axes:
    """Log-magnitude STFT of one clip, frequency from 0 to Nyquist.

    Args:
        clip: Audio, shape ``(samples,)`` or ``(samples, 1)``.
        sample_rate: Rate in Hz.
        ax: Axes to draw on (a new figure when ``None``).
        title: Axes title.
        vmin: Lowest level shown, dB relative to the clip's maximum.

    Returns:
        The axes.

    Notebook: chapters/03_progressive_model.ipynb
    """
    clip = np.asarray(clip, dtype=np.float32).reshape(-1)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 2.5))
    spectrum_db = audio.stft_db(clip, n_fft=min(512, clip.size))
    ax.imshow(spectrum_db, origin="lower", aspect="auto", vmin=vmin, vmax=0.0,
              extent=[0, clip.size / sample_rate, 0, sample_rate / 2], cmap="magma")
    ax.set(xlabel="time (s)", ylabel="Hz")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_real_vs_generated(real: np.ndarray, generated: np.ndarray, sample_rate: int,
                           count: int = 3, title: str | None = None) -> plt.Figure:
    """Waveforms and spectrograms of real (left) and generated (right) clips.

    Args:
        real: Real clips, shape ``(n, samples[, 1])``.
        generated: Generated clips, same shape.
        sample_rate: Rate in Hz.
        count: Number of rows (clips of each kind).
        title: Figure title.

    Returns:
        The figure, 7.5 inches wide: two rows per clip (real, then generated),
        columns waveform and spectrogram; ``fig.axes`` holds, per clip, real
        waveform, real spectrogram, generated waveform, generated spectrogram.

    Notebook: chapters/03_progressive_model.ipynb
    """
    count = min(count, len(real), len(generated))
    fig, axes = plt.subplots(2 * count, 2, figsize=(7.5, 1.7 * 2 * count), squeeze=False)
    axes = axes.reshape(count, 4)
    for row in range(count):
        for column, (clips, name, colour) in enumerate(
                [(real, "real", "tab:blue"), (generated, "generated", "tab:orange")]):
            clip = np.asarray(clips[row]).reshape(-1)
            plot_waveforms(clip[None], sample_rate, axes=[axes[row, 2 * column]], colour=colour)
            plot_spectrogram(clip, sample_rate, ax=axes[row, 2 * column + 1])
            axes[row, 2 * column].set_title(f"{name} {row}: waveform", fontsize=9)
            axes[row, 2 * column + 1].set_title(f"{name} {row}: spectrogram", fontsize=9)
    for ax in fig.axes[:-2]:  # one time axis label, under the last row
        ax.set_xlabel("")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _phase_field(phase: Any, name: str) -> Any:
    """``phase[name]`` for a dict (``config.json``), ``phase.name`` for a :class:`training.Phase`."""
    return phase[name] if isinstance(phase, Mapping) else getattr(phase, name)


def shade_phases(ax: plt.Axes, schedule: Sequence[Any], scale: int | None = None,
                 max_step: float | None = None, kinds: Sequence[str] = ("fade", "stable"),
                 alpha: float | None = None, label: bool = True) -> list:
    """Shade the training phases of a progressive run behind a curve over steps.

    Phase ``p`` trains global steps ``start_step + 1 .. start_step + steps``
    (history rows are 1-based step counts), so its span runs from
    ``start_step + 0.5`` to ``start_step + steps + 0.5``: adjacent phases
    touch and every step's point sits inside its own phase.

    Args:
        ax: Axes whose x axis is the global step.
        schedule: The run's phases: dicts with ``scale``, ``kind``, ``steps``,
            ``start_step`` (``config.json["schedule"]``) or :class:`training.Phase`.
        scale: Shade only this scale's phases (None: all).
        max_step: Last step trained so far: later phases are left out and the
            one in progress is cut at ``max_step + 0.5`` (None: the whole schedule).
        kinds: Phase kinds to shade (colours :data:`PHASE_COLOURS`).
        alpha: Opacity of the shading (default: :data:`PHASE_ALPHAS` per kind).
        label: Label the first span of each kind (for a legend).

    Returns:
        The spans drawn (Matplotlib patches), in schedule order.

    Notebook: chapters/02_wgan_gp.ipynb
    """
    spans, labelled = [], set()
    for phase in schedule:
        kind = _phase_field(phase, "kind")
        if kind not in kinds or (scale is not None and int(_phase_field(phase, "scale")) != scale):
            continue
        start = int(_phase_field(phase, "start_step")) + 0.5
        end = start + int(_phase_field(phase, "steps"))
        if max_step is not None:
            if start > max_step:
                continue
            end = min(end, max_step + 0.5)
        text = f"{kind} phase" if label and kind not in labelled else "_nolegend_"
        labelled.add(kind)
        spans.append(ax.axvspan(start, end, color=PHASE_COLOURS.get(kind, "tab:gray"),
                                alpha=PHASE_ALPHAS.get(kind, 0.1) if alpha is None else alpha,
                                linewidth=0, label=text))
    return spans


def plot_run_curves(history: Mapping[str, Sequence[float]], schedule: Sequence[Any],
                    scales: Sequence[int] | None = None, smooth: int = 1, columns: int = 2,
                    title: str | None = None) -> plt.Figure:
    """The report's critic curves of a progressive run, one panel per scale, phases shaded.

    Args:
        history: Columns of ``history.csv`` (:func:`runs.read_history` or
            ``ReferenceRun.curves()``): ``step``, ``scale``, ``d_real``,
            ``d_fake``, each of shape ``(steps,)``.
        schedule: The run's phases (see :func:`shade_phases`).
        scales: Scales to draw (default: every scale present in the history).
        smooth: Moving-average window (within each scale).
        columns: Panels per row (2: a 7.2-inch-wide figure, more rows).
        title: Figure title.

    Returns:
        The figure: one panel per scale (unused panels switched off), x axis
        the global step, fade phases shaded purple and stable phases grey; the
        legend sits in the first unused panel (else in the first panel).

    Notebook: chapters/03_progressive_model.ipynb
    """
    step = np.asarray(history["step"], dtype=np.float64)
    scale_of_step = np.asarray(history["scale"], dtype=np.int64)
    d_real = np.asarray(history["d_real"], dtype=np.float64)
    d_fake = np.asarray(history["d_fake"], dtype=np.float64)
    if scales is None:
        scales = sorted(set(scale_of_step.tolist()))
    columns = max(1, min(columns, len(scales)))
    rows = max(1, -(-len(scales) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.9 * rows), squeeze=False)
    last_step = float(step[-1]) if step.size else None
    for index, ax in enumerate(axes.ravel()):
        if index >= len(scales):
            ax.axis("off")
            continue
        k = int(scales[index])
        mask = scale_of_step == k
        plot_critic_outputs(step[mask], d_real[mask], d_fake[mask], smooth=smooth, ax=ax,
                            title=f"scale {k}")
        shade_phases(ax, schedule, scale=k, max_step=last_step)
        ax.get_legend().remove()
    legend = {}                        # label -> handle, over every panel
    for ax in axes.flat[:len(scales)]:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(text, handle)
    handles, labels = list(legend.values()), list(legend)
    spare = axes.flat[len(scales)] if axes.size > len(scales) else None
    if spare is not None:
        spare.legend(handles, labels, loc="center", fontsize=9)
    else:
        axes.flat[0].legend(handles, labels, loc="best", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_metrics_per_scale(entries: Mapping[Any, Mapping[str, Any]], num_classes: int,
                           sources: Sequence[str] = ("real", "ema"),
                           target_ratio: float | None = None,
                           title: str | None = None) -> plt.Figure:
    """Inception Score, Fréchet distance and NDB/K per scale, generated beside real.

    Args:
        entries: Scale -> per-scale metrics as :func:`evaluation.evaluate_run`
            writes them under ``"scales"`` (or the entries of
            ``metrics_by_phase.json``): each has ``"real"`` and a dict per
            generator variant (``"ema"``, ``"raw"``) with ``inception_score``,
            ``inception_score_std``, ``frechet_distance`` and ``ndb_over_k``.
        num_classes: Number of classes C (the IS ceiling, drawn grey).
        sources: Which rows to draw; a source missing at a scale is skipped there.
        target_ratio: Also draw this fraction of the real IS (e.g. 0.7), dashed.
        title: Figure title.

    Returns:
        The figure, 8 inches wide: three panels in a 2 x 2 grid (IS with its
        std as error bars, Fréchet distance on a log axis, NDB/K; the fourth
        cell holds the legend), x axis the scale.

    Notebook: chapters/06_evaluation.ipynb
    """
    scales = sorted(int(k) for k in entries)
    by_scale = {int(k): v for k, v in entries.items()}
    styles = {"real": ("o-", "tab:blue", "real test clips"),
              "ema": ("s--", "tab:orange", "generated (EMA)"),
              "raw": ("^:", "tab:red", "generated (raw)")}
    fig, grid = plt.subplots(2, 2, figsize=(8, 6))
    axes, legend_ax = grid.ravel()[:3], grid.ravel()[3]
    for source in sources:
        present = [k for k in scales if source in by_scale[k]]
        if not present:
            continue
        values = [by_scale[k][source] for k in present]
        fmt, colour, label = styles.get(source, ("x-", None, source))
        axes[0].errorbar(present, [v["inception_score"] for v in values],
                         [v["inception_score_std"] for v in values], fmt=fmt, color=colour,
                         label=label, capsize=3)
        axes[1].semilogy(present, [v["frechet_distance"] for v in values], fmt, color=colour,
                         label=label)
        axes[2].plot(present, [v["ndb_over_k"] for v in values], fmt, color=colour, label=label)
        if source == "real" and target_ratio is not None:
            axes[0].plot(present, [target_ratio * v["inception_score"] for v in values], ":",
                         color=colour, label=f"{target_ratio:g} × real IS")
    axes[0].axhline(num_classes, color="grey", linewidth=1)
    axes[0].set(ylabel="Inception Score", ylim=(0.9, num_classes + 0.2),
                title=f"IS (grey: ceiling C = {num_classes})")
    axes[1].set(ylabel="Fréchet distance to train", title="Fréchet distance")
    axes[2].set(ylabel="NDB / K", ylim=(-0.05, 1.05), title="NDB/K")
    for ax in axes:
        ax.set(xlabel="scale")
        ax.set_xticks(scales)
    legend_ax.axis("off")
    legend_ax.legend(*axes[0].get_legend_handles_labels(), loc="center", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _aligned_points(seeds, metric, source):
    """Mean CPU-seconds and per-seed values of points met by every seed.

    Points carrying a ``mark`` (the CPU budget they were scored at) are matched
    by mark, so a seed that skipped an early mark still lines up; others by order.
    """
    def key(i, point):
        return point.get("mark", i)

    keys = set.intersection(*({key(i, p) for i, p in enumerate(r["points"])} for r in seeds))
    by_key = [{key(i, p): p for i, p in enumerate(r["points"])} for r in seeds]
    order = sorted(keys)
    cpu = np.array([np.mean([points[k]["cpu_s"] for points in by_key]) for k in order])
    values = np.array([[(points[k][source] or {}).get(metric, np.nan) for points in by_key]
                       for k in order], dtype=float)
    return cpu, values


def plot_study_curves(runs: Sequence[Mapping[str, Any]], metric: str = "frechet_distance",
                      source: str = "ema", arms: Sequence[str] | None = None) -> plt.Figure:
    """Quality against training CPU-seconds, one line per study arm (mean over seeds, range shaded).

    Args:
        runs: Records of ``study.run_study_arm`` (``results/study/runs/*.json``) or
            ``representation_study.run_representation_arm``.
        metric: ``"frechet_distance"``, ``"inception_score"``, ``"ndb_over_k"`` or
            ``"spectral_flatness"``.
        source: ``"ema"`` or ``"raw"`` generator.
        arms: Arm names to draw, in this order (default: all, as they come).

    Returns:
        The figure: log-log axes, the real test clips' value as a dashed line.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    by_arm: dict[str, list] = {}
    for run in runs:
        by_arm.setdefault(run["arm"]["name"], []).append(run)
    names = list(arms) if arms is not None else list(by_arm)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name in names:
        seeds = [r for r in by_arm.get(name, []) if r["points"]]
        if not seeds:
            continue
        cpu, values = _aligned_points(seeds, metric, source)
        line, = ax.plot(cpu, np.nanmean(values, axis=1), marker="o", ms=3, label=name)
        if len(seeds) > 1:
            ax.fill_between(cpu, np.nanmin(values, axis=1), np.nanmax(values, axis=1),
                            color=line.get_color(), alpha=0.15)
    real = runs[0]["real"][metric] if runs else None
    if real is not None:
        ax.axhline(real, color="k", ls="--", lw=1, label="real test clips")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training CPU-seconds")
    ax.set_ylabel(f"{metric.replace('_', ' ')} ({source})")
    ax.legend(fontsize=9, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig
