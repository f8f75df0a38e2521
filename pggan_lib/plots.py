"""Figures the chapters share: waveforms, spectrograms and critic curves.

Every function draws on a Matplotlib ``Axes`` (made when not given) and
returns it, so that a chapter can combine them into its own figures.

Notebook: chapters/03_progressive_model.ipynb
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from pggan_lib import audio

__all__ = [
    "REPORT_COLOURS",
    "moving_average",
    "plot_critic_outputs",
    "plot_waveforms",
    "plot_spectrogram",
    "plot_real_vs_generated",
]

#: The report's colours: D(x) blue, D(G(z)) orange, Delta green.
REPORT_COLOURS = {"d_real": "tab:blue", "d_fake": "tab:orange", "delta": "tab:green"}


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

    Notebook: chapters/01_audio_fundamentals.ipynb
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

    Notebook: chapters/01_audio_fundamentals.ipynb
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
        The figure: ``count`` rows, columns real waveform, real spectrogram,
        generated waveform, generated spectrogram.

    Notebook: chapters/03_progressive_model.ipynb
    """
    count = min(count, len(real), len(generated))
    fig, axes = plt.subplots(count, 4, figsize=(13, 1.8 * count), squeeze=False)
    for row in range(count):
        for column, (clips, name, colour) in enumerate(
                [(real, "real", "tab:blue"), (generated, "generated", "tab:orange")]):
            clip = np.asarray(clips[row]).reshape(-1)
            plot_waveforms(clip[None], sample_rate, axes=[axes[row, 2 * column]], colour=colour)
            plot_spectrogram(clip, sample_rate, ax=axes[row, 2 * column + 1])
            if row == 0:
                axes[row, 2 * column].set_title(f"{name}: waveform", fontsize=9)
                axes[row, 2 * column + 1].set_title(f"{name}: spectrogram", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
