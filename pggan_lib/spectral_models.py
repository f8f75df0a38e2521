"""A progressive generator and critic over spectrogram resolutions (GANSynth's way).

The waveform models of :mod:`pggan_lib.models` grow over a sample-rate
pyramid: the coarsest rung keeps only the bass. These grow as PGGAN does for
images: scale ``k`` is a ``(frames, bins)`` picture of the whole clip, half as
many frames and bins as scale ``k + 1`` (2 x 2 average pooling of the finest
spectrogram, :func:`spectral_pyramid`), so the coarsest rung is a blurred
picture of the whole piece. Channels are those of
:func:`pggan_lib.spectral.to_magnitude_if` (log magnitude and instantaneous
frequency), or the log magnitude alone.

Blocks mirror the waveform models: generator block 0 is latent -> dense ->
conv, block k nearest-neighbour upsampling x2 -> conv -> conv, with a 1 x 1
"to-spectrogram" convolution per scale; the critic mirrors it with 2 x 2
average pooling. Fade-in, equalised learning rate, pixel norm, minibatch
standard deviation and the scale/alpha interface are PGGAN's and
:class:`pggan_lib.models.ProgressiveModel`'s.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import keras
import numpy as np
from keras import ops

from pggan_lib import spectral
from pggan_lib.layers import (ACTIVATION_NAMES, EqualizedConv2D, EqualizedDense, FadeIn,
                              MinibatchStdDev, PixelNorm, make_activation)
from pggan_lib.models import ModelSpec, ProgressiveModel, default_activation_alphas
from pggan_lib.spectral import SpectralSpec

__all__ = [
    "SpectralModelSpec",
    "SpectralGenerator",
    "SpectralCritic",
    "spectral_pyramid",
    "representation_tensor",
    "waveforms",
]

_PACKAGE = "pggan"


@dataclasses.dataclass
class SpectralModelSpec:
    """Sizes of the spectrogram generator and critic (JSON-serialisable).

    Attributes:
        num_scales: K, number of progressive scales.
        top_frames, top_bins: Spectrogram size at the finest scale (each
            divisible by ``2**(K-1)``; at most the STFT's frames and bins).
        out_channels: 2 (log magnitude + IF) or 1 (log magnitude only).
        n_fft, hop_length: The STFT of the finest-scale waveform.
        clip_samples: Samples per finest-scale clip (the waveform it inverts to).
        latent_dim: Size of z.
        channels: Feature channels per scale, coarse -> fine (None: 64 each).
        kernel_size: Side of every hidden convolution's square kernel.
        activation: Hidden activation (:data:`layers.ACTIVATION_NAMES`).
        activation_alphas: Alpha of the report activation per scale (None: default ramp).
        critic_output_activation: ``"linear"`` (WGAN) or ``"report"``.
        critic_output_alpha: Alpha of a ``"report"`` critic output.
        minibatch_group_size: Group size of the critic's minibatch stddev.
        use_pixel_norm: Pixel norm on z and after every generator conv.
    """

    num_scales: int = 7
    top_frames: int = 128
    top_bins: int = 256
    out_channels: int = 2
    n_fft: int = 512
    hop_length: int = 128
    clip_samples: int = 16_384
    latent_dim: int = 128
    channels: Optional[Sequence[int]] = None
    kernel_size: int = 3
    activation: str = "leaky"
    activation_alphas: Optional[Sequence[float]] = None
    critic_output_activation: str = "linear"
    critic_output_alpha: float = 32.0
    minibatch_group_size: int = 4
    use_pixel_norm: bool = True

    def __post_init__(self):
        if self.num_scales < 1:
            raise ValueError(f"SpectralModelSpec.num_scales must be >= 1, got {self.num_scales}")
        for field in ("top_frames", "top_bins"):
            if getattr(self, field) % 2 ** (self.num_scales - 1):
                raise ValueError(f"SpectralModelSpec.{field}={getattr(self, field)} is not "
                                 f"divisible by 2**(num_scales-1)={2 ** (self.num_scales - 1)}")
        stft = self.stft  # checks n_fft and hop_length
        for field, most in (("top_frames", stft.frames(self.clip_samples)),
                            ("top_bins", stft.linear_bins)):
            if getattr(self, field) > most:
                raise ValueError(f"SpectralModelSpec.{field}={getattr(self, field)} is more "
                                 f"than the STFT's {most}")
        if self.out_channels not in (1, 2):
            raise ValueError(f"SpectralModelSpec.out_channels must be 1 or 2, "
                             f"got {self.out_channels}")
        self.channels = tuple(int(c) for c in (self.channels or (64,) * self.num_scales))
        self.activation_alphas = tuple(float(a) for a in (
            self.activation_alphas or default_activation_alphas(self.num_scales)))
        for field in ("channels", "activation_alphas"):
            if len(getattr(self, field)) != self.num_scales:
                raise ValueError(f"SpectralModelSpec.{field} has {len(getattr(self, field))} "
                                 f"entries, num_scales is {self.num_scales}")
        for field in ("activation", "critic_output_activation"):
            if getattr(self, field) not in ACTIVATION_NAMES:
                raise ValueError(f"SpectralModelSpec.{field} must be one of {ACTIVATION_NAMES}, "
                                 f"got {getattr(self, field)!r}")

    def shape_at_scale(self, scale: int) -> tuple[int, int]:
        """``(frames, bins)`` at scale ``scale`` (0 = coarsest)."""
        if not 0 <= scale < self.num_scales:
            raise ValueError(f"scale must be in [0, {self.num_scales - 1}], got {scale}")
        factor = 2 ** (self.num_scales - 1 - scale)
        return self.top_frames // factor, self.top_bins // factor

    def samples_at_scale(self, scale: int) -> int:
        """Samples of the waveform a scale's spectrogram stands for, at that scale's rate."""
        self.shape_at_scale(scale)
        return self.clip_samples // 2 ** (self.num_scales - 1 - scale)

    @property
    def stft(self) -> SpectralSpec:
        """The :class:`spectral.SpectralSpec` of the finest scale (linear frequency axis)."""
        return SpectralSpec(n_fft=self.n_fft, hop_length=self.hop_length)

    @property
    def representation(self) -> str:
        """``"spectral"`` (log magnitude + IF) or ``"magnitude"`` (Griffin-Lim phase)."""
        return "spectral" if self.out_channels == 2 else "magnitude"

    @property
    def conditional(self) -> bool:
        """Always False: the spectral models are unconditional."""
        return False

    @property
    def num_classes(self) -> int:
        """Always 0 (unconditional)."""
        return 0

    # The same JSON round trip as the waveform models' spec (tuples become lists).
    to_dict = ModelSpec.to_dict
    from_dict = classmethod(ModelSpec.from_dict.__func__)


def spectral_pyramid(representation: np.ndarray, num_scales: int) -> list[np.ndarray]:
    """The finest spectrograms and their 2 x 2 average pools, coarse -> fine.

    Args:
        representation: ``(N, frames, bins, channels)`` at the finest scale, frames
            and bins divisible by ``2**(num_scales-1)``.
        num_scales: K.

    Returns:
        List of K float32 arrays, scale 0 first: ``(N, frames / 2**(K-1-k),
        bins / 2**(K-1-k), channels)``.
    """
    x = np.asarray(representation, np.float32)
    n, frames, bins, channels = x.shape
    if frames % 2 ** (num_scales - 1) or bins % 2 ** (num_scales - 1):
        raise ValueError(f"spectral_pyramid: frames={frames} and bins={bins} must be divisible "
                         f"by 2**(num_scales-1)={2 ** (num_scales - 1)}")
    levels = [x]
    for _ in range(num_scales - 1):
        f, b = levels[-1].shape[1] // 2, levels[-1].shape[2] // 2
        levels.append(levels[-1].reshape(n, f, 2, b, 2, channels).mean(axis=(2, 4)))
    return levels[::-1]


def _upsample(x):
    return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)


def _downsample(x):
    return ops.average_pool(x, pool_size=2, strides=2, padding="valid",
                            data_format="channels_last")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpectralGenerator(ProgressiveModel):
    """Progressive spectrogram generator over ``spec.num_scales`` resolutions.

    Call args:
        inputs: ``z`` of shape ``(batch, latent_dim)``.
        training: Falsy at inference (with ``fade_alpha == 1`` the old path is skipped).

    Returns:
        ``(batch, frames, bins, out_channels)`` at the current scale (linear output).
    """

    spec_class = SpectralModelSpec

    def __init__(self, spec, **kwargs):
        kwargs.setdefault("name", "spectral_generator")
        super().__init__(spec, **kwargs)
        spec = self.spec
        c, kernel = spec.channels, spec.kernel_size
        frames0, bins0 = spec.shape_at_scale(0)
        self.latent_norm = PixelNorm(name="latent_norm") if spec.use_pixel_norm else None
        self.blocks = []
        for k in range(spec.num_scales):
            activation = make_activation(spec.activation, spec.activation_alphas[k],
                                         layer_name=f"g{k}_act")
            norm = [PixelNorm(name=f"g{k}_norm")] if spec.use_pixel_norm else []
            if k == 0:
                layers = [EqualizedDense(frames0 * bins0 * c[0], name="g0_dense"),
                          keras.layers.Reshape((frames0, bins0, c[0]), name="g0_reshape"),
                          activation, *norm,
                          EqualizedConv2D(c[0], kernel, name="g0_conv"), activation, *norm]
            else:
                layers = [_Upsample2D(name=f"g{k}_upsample")]
                for i in (1, 2):
                    layers += [EqualizedConv2D(c[k], kernel, name=f"g{k}_conv{i}"), activation,
                               *norm]
            self.blocks.append(layers)
        self.to_spec = [EqualizedConv2D(spec.out_channels, 1, gain=1.0, name=f"to_spec{k}")
                        for k in range(spec.num_scales)]
        self.spec_upsample = _Upsample2D(name="spec_upsample")
        self._build_all_scales()

    def _dummy_inputs(self, scale):
        return ops.zeros((1, self.spec.latent_dim))

    def call(self, inputs, training=None):
        h = self.latent_norm(inputs) if self.latent_norm is not None else inputs
        scale = self._scale
        for k in range(scale):
            for layer in self.blocks[k]:
                h = layer(h)
        new_features = h
        for layer in self.blocks[scale]:
            new_features = layer(new_features)
        new = self.to_spec[scale](new_features)
        if scale == 0:
            return new

        def faded():
            return self.fade([self.spec_upsample(self.to_spec[scale - 1](h)), new])

        if training:
            return faded()
        return ops.cond(ops.equal(self.fade.alpha, 1.0), lambda: new, faded)

    def _layers_for_scale(self, scale):
        layers = [layer for k in range(scale + 1) for layer in self.blocks[k]]
        return layers + self.to_spec[max(scale - 1, 0):scale + 1]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class _Upsample2D(keras.layers.Layer):
    """Nearest-neighbour upsampling by 2 in frames and bins (PGGAN's image upsampling)."""

    def call(self, inputs):
        return _upsample(inputs)

    def compute_output_shape(self, input_shape):
        b, f, n, c = input_shape
        return (b, None if f is None else 2 * f, None if n is None else 2 * n, c)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpectralCritic(ProgressiveModel):
    """Progressive critic over spectrogram resolutions.

    Call args:
        inputs: ``(batch, frames, bins, out_channels)`` at the current scale.

    Returns:
        Scores ``(batch, 1)``.
    """

    spec_class = SpectralModelSpec

    def __init__(self, spec, **kwargs):
        kwargs.setdefault("name", "spectral_critic")
        super().__init__(spec, **kwargs)
        spec = self.spec
        c, kernel, alphas = spec.channels, spec.kernel_size, spec.activation_alphas
        self.from_spec = [
            [EqualizedConv2D(c[k], 1, name=f"from_spec{k}"),
             make_activation(spec.activation, alphas[k], layer_name=f"from_spec{k}_act")]
            for k in range(spec.num_scales)]
        self.blocks = [None]
        for k in range(1, spec.num_scales):
            activation = make_activation(spec.activation, alphas[k], layer_name=f"d{k}_act")
            self.blocks.append([EqualizedConv2D(c[k], kernel, name=f"d{k}_conv1"), activation,
                                EqualizedConv2D(c[k - 1], kernel, name=f"d{k}_conv2"),
                                activation, _Downsample2D(name=f"d{k}_downsample")])
        activation0 = make_activation(spec.activation, alphas[0], layer_name="d0_act")
        frames0, bins0 = spec.shape_at_scale(0)
        self.final_features = [
            keras.layers.Reshape((frames0 * bins0, c[0]), name="d0_to_sequence"),
            MinibatchStdDev(spec.minibatch_group_size, name="d0_minibatch_stddev"),
            keras.layers.Reshape((frames0, bins0, c[0] + 1), name="d0_to_image"),
            EqualizedConv2D(c[0], kernel, name="d0_conv"), activation0,
            keras.layers.Flatten(name="d0_flatten"),
            EqualizedDense(c[0], name="d0_dense"), activation0]
        self.final_dense = EqualizedDense(1, gain=1.0, name="d0_out")
        self.output_activation = make_activation(spec.critic_output_activation,
                                                 spec.critic_output_alpha, layer_name="output_act")
        self.spec_downsample = _Downsample2D(name="spec_downsample")
        self._build_all_scales()

    def _dummy_inputs(self, scale):
        return ops.zeros((1, *self.spec.shape_at_scale(scale), self.spec.out_channels))

    def _run(self, layers, h):
        for layer in layers:
            h = layer(h)
        return h

    def call(self, inputs, training=None):
        scale = self._scale
        h = self._run(self.from_spec[scale], inputs)
        if scale > 0:
            new = self._run(self.blocks[scale], h)
            old = self._run(self.from_spec[scale - 1], self.spec_downsample(inputs))
            h = self.fade([old, new])
        for k in range(scale - 1, 0, -1):
            h = self._run(self.blocks[k], h)
        h = self._run(self.final_features, h)
        return self.output_activation(self.final_dense(h))

    def _layers_for_scale(self, scale):
        layers = list(self.from_spec[scale])
        if scale > 0:
            layers += self.from_spec[scale - 1]
        for k in range(1, scale + 1):
            layers += self.blocks[k]
        return layers + self.final_features + [self.final_dense]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class _Downsample2D(keras.layers.Layer):
    """2 x 2 average pooling (PGGAN's image downsampling)."""

    def call(self, inputs):
        return _downsample(inputs)

    def compute_output_shape(self, input_shape):
        b, f, n, c = input_shape
        return (b, None if f is None else f // 2, None if n is None else n // 2, c)


def representation_tensor(clips, stft: SpectralSpec, frames: int, bins: int):
    """Clips to the models' input in the graph: :func:`spectral.to_magnitude_if`, cropped.

    The same numbers as the NumPy/librosa version (zero-padded centred frames,
    periodic Hann window), computed with ``keras.ops`` so that a training step
    can turn real waveform windows into spectrograms on the fly. The STFT's
    last frame and its Nyquist bin are cropped so that frames and bins halve
    evenly down the pyramid (GANSynth crops the same way).

    Args:
        clips: ``(batch, samples)`` or ``(batch, samples, 1)`` float tensor.
        stft: FFT size and hop (linear frequency axis).
        frames, bins: Size kept (at most the STFT's ``1 + samples // hop`` and
            ``n_fft // 2 + 1``).

    Returns:
        float32 tensor ``(batch, frames, bins, 2)``.
    """
    x = ops.convert_to_tensor(clips, "float32")
    if len(x.shape) == 3:
        x = x[..., 0]
    half = stft.n_fft // 2
    x = ops.pad(x, [[0, 0], [half, half]])
    real, imag = ops.stft(x, stft.n_fft, stft.hop_length, stft.n_fft, window="hann",
                          center=False)
    real, imag = real[:, :frames, :bins], imag[:, :frames, :bins]
    magnitude = ops.sqrt(real * real + imag * imag)
    log_magnitude = ops.log(ops.maximum(magnitude, spectral.MAGNITUDE_FLOOR))
    phase = ops.arctan2(imag, real)
    advance = phase - ops.pad(phase[:, :-1], [[0, 0], [1, 0], [0, 0]])
    wrapped = ops.mod(advance + np.pi, 2.0 * np.pi) - np.pi
    return ops.stack([log_magnitude, wrapped / np.pi], axis=-1)


def waveforms(representation: np.ndarray, stft: SpectralSpec, samples: int) -> np.ndarray:
    """Inverse of :func:`representation_tensor` (the cropped frame and bin restored as silence).

    Args:
        representation: ``(N, frames, bins, 2)`` (log magnitude, IF) or ``(..., 1)``
            (log magnitude only: the phase is then estimated by Griffin-Lim).
        stft: The :class:`spectral.SpectralSpec` it was made with.
        samples: Samples per clip.

    Returns:
        float32 ``(N, samples)``.
    """
    r = np.asarray(representation, np.float32)
    full_frames, full_bins = stft.frames(samples), stft.linear_bins
    pad = [(0, 0), (0, full_frames - r.shape[1]), (0, full_bins - r.shape[2]), (0, 0)]
    padded = np.pad(r, pad)
    padded[:, r.shape[1]:, :, 0] = np.log(spectral.MAGNITUDE_FLOOR)
    padded[:, :, r.shape[2]:, 0] = np.log(spectral.MAGNITUDE_FLOOR)
    if r.shape[-1] == 1:
        return spectral.from_magnitude_griffin_lim(padded, stft, samples)
    return spectral.from_magnitude_if(padded, stft, samples)
