"""Spectrogram representations of audio clips, the choice GANSynth made instead of waveforms.

GANSynth (Engel et al., 2019) grows its GAN over spectrograms: per STFT frame
and frequency bin, the **log magnitude** and the **instantaneous frequency**
(IF), the time derivative of the unwrapped phase. The phase itself wraps and
looks like noise; its derivative is smooth for a steady partial (a constant
advance per hop), which a convolutional network can learn. Integrating the IF
along time gives the phase back, so the pair inverts to a waveform exactly, up
to the STFT's own limits (the window's overlap-add and float rounding).

This module converts clips of shape ``(N, samples)`` to arrays of shape
``(N, frames, bins, 2)`` (channel 0 log magnitude, channel 1 IF scaled to
[-1, 1]) and back, optionally on a mel frequency axis (GANSynth's "mel IF":
more bins for the low partials; the mapping back is a least-squares inverse,
no longer exact). The magnitude-only representation with Griffin-Lim phase
reconstruction (WaveGAN's SpecGAN) is here for comparison. The STFT, the
inverse STFT, the mel filters and Griffin-Lim are librosa's.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import librosa
import numpy as np

__all__ = [
    "SpectralSpec",
    "MAGNITUDE_FLOOR",
    "princarg",
    "stft",
    "istft",
    "to_magnitude_if",
    "from_magnitude_if",
    "instantaneous_frequency_hz",
    "to_magnitude",
    "from_magnitude_griffin_lim",
    "snr_db",
    "log_spectral_distance",
]

#: Magnitudes are floored here before the log: ``log(1e-6)`` = -13.8, a
#: level 120 dB under full scale, so silence maps to a finite value.
MAGNITUDE_FLOOR = 1e-6


@dataclasses.dataclass(frozen=True)
class SpectralSpec:
    """How clips become spectrograms.

    Attributes:
        n_fft: FFT size (window length); ``n_fft // 2 + 1`` linear bins.
        hop_length: Samples between frames (``n_fft // 4``: 75 % overlap, which
            a Hann window reconstructs exactly by overlap-add).
        mel_bins: 0 for the linear frequency axis; else the number of mel bins
            the magnitude and IF are mapped to (GANSynth's mel option).
        sample_rate: Needed for the mel axis and for IF in Hz.
    """

    n_fft: int = 256
    hop_length: int = 64
    mel_bins: int = 0
    sample_rate: float = 16_000.0

    def __post_init__(self):
        if self.n_fft < 4 or self.n_fft & (self.n_fft - 1):
            raise ValueError(f"n_fft must be a power of 2 >= 4, got {self.n_fft}")
        if not 0 < self.hop_length <= self.n_fft // 2:
            raise ValueError(f"hop_length must be in [1, n_fft / 2 = {self.n_fft // 2}], "
                             f"got {self.hop_length}")
        if self.mel_bins < 0:
            raise ValueError(f"mel_bins must be >= 0, got {self.mel_bins}")

    @property
    def linear_bins(self) -> int:
        """Bins of the linear STFT: ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    def frames(self, samples: int) -> int:
        """Frames of a clip of ``samples`` (centred frames: ``1 + samples // hop``)."""
        return 1 + samples // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def princarg(phase: np.ndarray) -> np.ndarray:
    """Wrap phases to [-pi, pi) (the principal argument)."""
    return np.mod(phase + np.pi, 2.0 * np.pi) - np.pi


def _as_clips(clips: np.ndarray) -> np.ndarray:
    x = np.asarray(clips, np.float64)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 2:
        raise ValueError(f"clips must be (N, samples) or (N, samples, 1), got shape {x.shape}")
    return x


def stft(clips: np.ndarray, spec: SpectralSpec) -> np.ndarray:
    """Complex STFT of each clip, frames first.

    Args:
        clips: ``(N, samples)`` or ``(N, samples, 1)``.
        spec: FFT size and hop.

    Returns:
        complex128 ``(N, frames, bins)``, ``bins = n_fft // 2 + 1``; Hann window,
        centred frames (librosa's defaults).

    Notebook: chapters/08_which_representation.ipynb
    """
    x = _as_clips(clips)
    s = librosa.stft(x, n_fft=spec.n_fft, hop_length=spec.hop_length, window="hann",
                     center=True)
    return np.swapaxes(s, -1, -2)


def istft(spectrogram: np.ndarray, spec: SpectralSpec, samples: int) -> np.ndarray:
    """Inverse of :func:`stft`: ``(N, frames, bins)`` complex to ``(N, samples)`` float32."""
    s = np.swapaxes(np.asarray(spectrogram), -1, -2)
    x = librosa.istft(s, n_fft=spec.n_fft, hop_length=spec.hop_length, window="hann",
                      center=True, length=samples)
    return x.astype(np.float32)


def _mel_maps(spec: SpectralSpec) -> tuple[np.ndarray, np.ndarray]:
    """(to_mel ``(mel, linear)``, from_mel ``(linear, mel)``): filters and their pseudo-inverse.

    Each mel filter is normalised to sum 1, so a magnitude or IF that is constant
    across a filter's bins keeps its value on the mel axis.
    """
    with warnings.catch_warnings():  # librosa warns of empty filters; the error below names them
        warnings.simplefilter("ignore")
        weights = librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft,
                                      n_mels=spec.mel_bins, norm=None, htk=True)
    sums = weights.sum(axis=1, keepdims=True)
    if np.any(sums == 0):
        raise ValueError(f"mel_bins={spec.mel_bins} is too many for n_fft={spec.n_fft}: "
                         f"{int(np.sum(sums == 0))} mel filters cover no FFT bin; use fewer "
                         f"mel bins or a larger n_fft")
    to_mel = weights / sums
    return to_mel, np.linalg.pinv(to_mel)


def to_magnitude_if(clips: np.ndarray, spec: SpectralSpec) -> np.ndarray:
    """Clips to GANSynth's two channels: log magnitude and instantaneous frequency.

    IF is the phase advance from one frame to the next, unwrapped along time and
    divided by pi, so a frame's IF lies in [-1, 1] (the first frame's is its phase
    over pi). On the mel axis both channels are mapped with normalised mel filters.

    Args:
        clips: ``(N, samples)`` or ``(N, samples, 1)``.
        spec: The :class:`SpectralSpec`.

    Returns:
        float32 ``(N, frames, bins, 2)``: ``log(max(|S|, MAGNITUDE_FLOOR))`` and IF;
        ``bins`` is ``n_fft // 2 + 1`` or ``mel_bins``.

    Notebook: chapters/08_which_representation.ipynb
    """
    s = stft(clips, spec)
    log_magnitude = np.log(np.maximum(np.abs(s), MAGNITUDE_FLOOR))
    phase = np.angle(s)
    advance = np.diff(phase, axis=1, prepend=0.0)
    inst_freq = princarg(advance) / np.pi
    if spec.mel_bins:
        to_mel, _ = _mel_maps(spec)
        log_magnitude, inst_freq = log_magnitude @ to_mel.T, inst_freq @ to_mel.T
    return np.stack([log_magnitude, inst_freq], axis=-1).astype(np.float32)


def from_magnitude_if(representation: np.ndarray, spec: SpectralSpec,
                      samples: int) -> np.ndarray:
    """Inverse of :func:`to_magnitude_if`: integrate IF to phase, then the inverse STFT.

    Args:
        representation: ``(N, frames, bins, 2)`` as :func:`to_magnitude_if` returns.
        spec: The same :class:`SpectralSpec`.
        samples: Samples per output clip.

    Returns:
        float32 ``(N, samples)``.

    Notebook: chapters/08_which_representation.ipynb
    """
    r = np.asarray(representation, np.float64)
    log_magnitude, inst_freq = r[..., 0], r[..., 1]
    if spec.mel_bins:
        _, from_mel = _mel_maps(spec)
        log_magnitude, inst_freq = log_magnitude @ from_mel.T, inst_freq @ from_mel.T
    magnitude = np.exp(log_magnitude)
    magnitude = np.where(magnitude <= MAGNITUDE_FLOOR * 1.0001, 0.0, magnitude)
    phase = np.cumsum(inst_freq * np.pi, axis=1)
    return istft(magnitude * np.exp(1j * phase), spec, samples)


def instantaneous_frequency_hz(clips: np.ndarray, spec: SpectralSpec) -> np.ndarray:
    """Each bin's instantaneous frequency in Hz (the phase vocoder's estimate).

    Bin ``k`` advances by ``2 pi k hop / n_fft`` per hop at its centre
    frequency; the deviation of the measured advance from that, wrapped to
    [-pi, pi), says how far the partial in the bin lies from the centre.

    Args:
        clips: ``(N, samples)`` or ``(N, samples, 1)``.
        spec: The :class:`SpectralSpec` (linear axis).

    Returns:
        float64 ``(N, frames - 1, n_fft // 2 + 1)`` in Hz.

    Notebook: chapters/08_which_representation.ipynb
    """
    phase = np.angle(stft(clips, spec))
    expected = 2.0 * np.pi * np.arange(spec.linear_bins) * spec.hop_length / spec.n_fft
    advance = expected + princarg(np.diff(phase, axis=1) - expected)
    return advance * spec.sample_rate / (2.0 * np.pi * spec.hop_length)


def to_magnitude(clips: np.ndarray, spec: SpectralSpec) -> np.ndarray:
    """Log magnitude only (SpecGAN's representation): float32 ``(N, frames, bins, 1)``.

    Notebook: chapters/08_which_representation.ipynb
    """
    return to_magnitude_if(clips, spec)[..., :1]


def from_magnitude_griffin_lim(representation: np.ndarray, spec: SpectralSpec, samples: int,
                               n_iter: int = 32, seed: int = 0) -> np.ndarray:
    """Waveforms from log magnitudes alone, the phase estimated by Griffin-Lim.

    Args:
        representation: ``(N, frames, bins, 1)`` (or ``(..., 2)``: IF ignored).
        spec: The :class:`SpectralSpec` (on the mel axis the magnitudes are mapped
            back by the filters' pseudo-inverse first).
        samples: Samples per output clip.
        n_iter: Griffin-Lim iterations (librosa's fast variant, momentum 0.99).
        seed: Seed of the random initial phase.

    Returns:
        float32 ``(N, samples)``.

    Notebook: chapters/08_which_representation.ipynb
    """
    log_magnitude = np.asarray(representation, np.float64)[..., 0]
    if spec.mel_bins:
        _, from_mel = _mel_maps(spec)
        log_magnitude = log_magnitude @ from_mel.T
    magnitude = np.swapaxes(np.exp(log_magnitude), -1, -2)
    x = librosa.griffinlim(magnitude, n_iter=n_iter, hop_length=spec.hop_length,
                           n_fft=spec.n_fft, window="hann", center=True, length=samples,
                           init="random", random_state=seed)
    return x.astype(np.float32)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-error ratio in dB over all clips: ``10 log10(sum r^2 / sum (r - e)^2)``.

    Notebook: chapters/08_which_representation.ipynb
    """
    r = _as_clips(reference)
    e = _as_clips(estimate)
    error = np.sum((r - e) ** 2)
    return float("inf") if error == 0 else float(10.0 * np.log10(np.sum(r ** 2) / error))


def log_spectral_distance(reference: np.ndarray, estimate: np.ndarray, spec: SpectralSpec,
                          floor_db: float = 80.0) -> np.ndarray:
    """Root-mean-square difference of two clips' STFT levels, in dB, per clip.

    Levels more than ``floor_db`` under the reference clip's loudest bin are
    raised to that floor in both clips, so silence and an empty band count as
    at most ``floor_db`` apart instead of as an infinite difference.

    Args:
        reference, estimate: ``(N, samples)`` clips of the same length.
        spec: The STFT (linear axis).
        floor_db: Dynamic range kept below each reference clip's maximum.

    Returns:
        float64 ``(N,)``: 0 for identical magnitudes; a clip 6 dB louder
        everywhere above the floor gives 6.

    Notebook: chapters/08_which_representation.ipynb
    """
    levels = [20.0 * np.log10(np.abs(stft(x, spec)) + 1e-12) for x in (reference, estimate)]
    floor = levels[0].max(axis=(1, 2), keepdims=True) - floor_db
    a, b = (np.maximum(level, floor) for level in levels)
    return np.sqrt(np.mean((a - b) ** 2, axis=(1, 2)))
