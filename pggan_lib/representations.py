"""What the GAN grows over: the report's waveform pyramid or a spectrogram pyramid.

One name per choice (:data:`REPRESENTATIONS`, ``Preset.representation``,
``pggan train --representation``):

- ``"waveform"``: the report's sample-rate pyramid (:mod:`pggan_lib.models`);
  scale k is the clip at ``16000 / 2**(K-1-k)`` Hz.
- ``"spectral"``: GANSynth's choice, log magnitude + instantaneous frequency
  (:mod:`pggan_lib.spectral_models`); scale k is the finest spectrogram
  average-pooled ``2**(K-1-k)`` times in frames and bins, a blurred picture
  of the whole clip.
- ``"magnitude"``: the log magnitude alone (WaveGAN's SpecGAN), the phase
  estimated by Griffin-Lim when the clip is made audible.

Training turns each batch of real finest-scale windows into the current
scale's spectrograms in the graph (:func:`real_batch`); everything that makes
audio from a generator (samples, ``pggan generate``, evaluation, the web site)
goes through :func:`to_audio`, so a spectral run is scored by the same
per-scale classifiers, at each scale's sample rate, as a waveform run.

Notebook: chapters/08_which_representation.ipynb
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from pggan_lib import audio, models, spectral_models
from pggan_lib.config import REPRESENTATIONS
from pggan_lib.spectral import SpectralSpec
from pggan_lib.spectral_models import SpectralModelSpec

__all__ = [
    "REPRESENTATIONS",
    "stft_for_clip",
    "spectral_model_spec",
    "spec_from_dict",
    "network_builders",
    "real_batch",
    "to_audio",
]


# The log magnitude enters the networks as (log|X| + SHIFT) / SCALE: over the
# demo corpus's windows log|X| has mean -3.9 and standard deviation 2.2 (STFT
# 512 / 128), so the networks see values of order 1, like the IF channel.
_LOG_MAGNITUDE_SHIFT = 4.0
_LOG_MAGNITUDE_SCALE = 4.0


def stft_for_clip(clip_samples: int) -> SpectralSpec:
    """The STFT whose cropped spectrogram has twice as many bins as frames.

    With hop ``n_fft / 4`` a clip of T samples gives T / hop frames and
    ``n_fft / 2`` bins (last frame and Nyquist bin cropped); ``n_fft = 4 sqrt(T)``
    (rounded to a power of 2) makes bins = 2 x frames: 512 / 128 for 16,384
    samples (128 frames x 256 bins, 31 Hz per bin at 16 kHz), 1024 / 256 for 65,536.

    Notebook: chapters/08_which_representation.ipynb
    """
    n_fft = 2 ** max(2, round(math.log2(4.0 * math.sqrt(clip_samples))))
    return SpectralSpec(n_fft=n_fft, hop_length=n_fft // 4)


def spectral_model_spec(preset, manifest: dict, activation: str,
                        critic_output: str) -> SpectralModelSpec:
    """The :class:`SpectralModelSpec` of a preset on a dataset (as ``training.model_spec_for``).

    Widths and latent size are the preset's; kernels are 3 x 3 (PGGAN's image
    kernels; the preset's kernel is a 1-D length).

    Raises:
        ValueError: A clip length whose spectrogram does not halve ``K - 1`` times.

    Notebook: chapters/08_which_representation.ipynb
    """
    num_scales, clip_samples = int(manifest["num_scales"]), int(manifest["clip_samples"])
    stft = stft_for_clip(clip_samples)
    return SpectralModelSpec(
        num_scales=num_scales, top_frames=clip_samples // stft.hop_length,
        top_bins=stft.n_fft // 2,
        out_channels=2 if preset.representation == "spectral" else 1,
        n_fft=stft.n_fft, hop_length=stft.hop_length, clip_samples=clip_samples,
        latent_dim=preset.latent_dim, channels=preset.per_scale("channels", num_scales),
        kernel_size=3, activation=activation, critic_output_activation=critic_output,
        minibatch_group_size=preset.minibatch_group_size)


def spec_from_dict(values: dict):
    """A ``model_spec`` of ``config.json`` back as a ModelSpec or SpectralModelSpec."""
    if "top_frames" in values:
        return SpectralModelSpec.from_dict(values)
    return models.ModelSpec.from_dict(values)


def network_builders(spec):
    """``(build_generator, build_critic)``: callables ``spec -> model`` for the spec's kind."""
    if isinstance(spec, SpectralModelSpec):
        return spectral_models.SpectralGenerator, spectral_models.SpectralCritic
    if spec.architecture == "wavegan":
        return models.WaveGANGenerator, models.WaveGANCritic
    return models.build_generator, models.build_critic


def real_batch(clips, spec: SpectralModelSpec, scale: int):
    """Real finest-scale windows as the networks see them at ``scale`` (in the graph).

    Args:
        clips: ``(B, clip_samples, 1)`` waveforms at the finest sample rate.
        spec: The spectral models' spec.
        scale: Current scale.

    Returns:
        float32 ``(B, frames_k, bins_k, out_channels)``: the normalised finest
        spectrogram average-pooled ``2**(K-1-scale)`` times per axis.

    Notebook: chapters/08_which_representation.ipynb
    """
    r = spectral_models.representation_tensor(clips, spec.stft, spec.top_frames, spec.top_bins)
    r = ops.concatenate([(r[..., :1] + _LOG_MAGNITUDE_SHIFT) / _LOG_MAGNITUDE_SCALE,
                         r[..., 1:]], axis=-1)[..., :spec.out_channels]
    factor = 2 ** (spec.num_scales - 1 - scale)
    if factor == 1:
        return r
    return ops.average_pool(r, pool_size=factor, strides=factor, padding="valid",
                            data_format="channels_last")


def to_audio(spec, outputs, scale: int, at_finest_rate: bool = False) -> np.ndarray:
    """Generator outputs at ``scale`` as waveforms at that scale's sample rate.

    A coarse spectrogram is stretched back to the finest size (nearest
    neighbour, the inverse of the pooling up to blur), inverted at the finest
    rate, then taken down to the scale's rate as the dataset was
    (:func:`audio.downsample2`).

    Args:
        spec: The generator's spec (``ModelSpec``: outputs are waveforms already).
        outputs: ``(N, samples, 1)`` or ``(N, frames_k, bins_k, channels)``.
        scale: The scale they were generated at.
        at_finest_rate: Spectrograms only: keep the inverted clip at the finest
            rate (what a coarse picture sounds like over the whole band).

    Returns:
        float32 ``(N, spec.samples_at_scale(scale))``, or with ``at_finest_rate``
        ``(N, spec.clip_samples)``.

    Notebook: chapters/08_which_representation.ipynb
    """
    x = np.asarray(outputs, np.float32)
    if not isinstance(spec, SpectralModelSpec):
        if at_finest_rate:
            raise ValueError("to_audio: at_finest_rate applies to spectrogram outputs only")
        return x[..., 0]
    factor = 2 ** (spec.num_scales - 1 - scale)
    r = x.repeat(factor, axis=1).repeat(factor, axis=2)
    # No clip of |x| <= 1 has |X| above the window's sum (n_fft / 2 for Hann):
    # an untrained generator's huge values stay within full scale.
    r[..., 0] = np.minimum(r[..., 0] * _LOG_MAGNITUDE_SCALE - _LOG_MAGNITUDE_SHIFT,
                           np.log(spec.n_fft / 2))
    clips = spectral_models.waveforms(r, spec.stft, spec.clip_samples)
    for _ in range(0 if at_finest_rate else spec.num_scales - 1 - scale):
        clips = audio.downsample2(clips.T).T  # soxr works on (samples, channels)
    return np.ascontiguousarray(clips, dtype=np.float32)
