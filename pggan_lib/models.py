"""Progressive generator and critic for raw audio, and a WaveGAN-style baseline.

The scales form a sample-rate pyramid: scale ``k`` (0 = coarsest, ``K-1`` =
finest) holds ``clip_samples / 2**(K-1-k)`` samples. The generator has one
block per scale (block 0: latent -> dense -> conv; block k: anti-aliased
upsample x2 -> conv -> conv) and a 1x1 "to-waveform" convolution per scale;
the critic mirrors it (1x1 "from-waveform", block k: conv -> conv ->
anti-aliased downsample x2, final block: minibatch stddev -> conv -> dense ->
dense). While scale ``k`` fades in (PGGAN)::

    G(z) = (1 - a) * upsample(toWave_{k-1}(h_{k-1})) + a * toWave_k(block_k(h_{k-1}))
    D(x): h = (1 - a) * fromWave_{k-1}(downsample(x)) + a * block_k(fromWave_k(x))

With ``ModelSpec.output_skips`` (StyleGAN2's "skip" generator) the generator's
output is instead a sum over scales, each scale adding detail to the
upsampled output of the scale below, and the fade only scales the new
detail::

    y_0 = toWave_0(h_0),   y_k = upsample(y_{k-1}) + a * toWave_k(h_k)

so what the coarse scales learned stays in the finest output after the
network grows past them, and a coarse scale's output is the partial sum
``y_k`` that keeps training with the rest.

with ``a`` the models' non-trainable ``fade_alpha`` variable. All scales'
weights exist from construction, so the variable list (optimizer slots,
checkpoints) never changes while the network "grows": ``set_scale(k)`` only
chooses which blocks ``call`` runs (a Python int: compiled steps must be
retraced after it), and ``variables_for_scale(k)`` lists the weights that
scale trains.

Notebook: chapters/03_progressive_model.ipynb
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import keras
import numpy as np
from keras import ops

from pggan_lib.config import (ARCHITECTURES, DEFAULT_CLIP_SAMPLES, DEFAULT_NUM_SCALES,
                              UPSAMPLERS, is_fft_length, spectrum_frame)
from pggan_lib.layers import (ACTIVATION_NAMES, Downsample1D, EqualizedConv1D, EqualizedDense,
                              FadeIn, LogSpectrogram, MinibatchStdDev, PhaseShuffle, PixelNorm,
                              PreEmphasis, Upsample1D, make_activation)

__all__ = [
    "ModelSpec",
    "ProgressiveModel",
    "default_activation_alphas",
    "ProgressiveGenerator",
    "ProgressiveCritic",
    "build_generator",
    "build_critic",
    "count_flops",
    "count_params_at_scale",
    "build_wavegan_generator",
    "build_wavegan_critic",
    "WaveGANGenerator",
    "WaveGANCritic",
]

_PACKAGE = "pggan"


def default_activation_alphas(num_scales=DEFAULT_NUM_SCALES, coarsest=2.0, finest=16.0):
    """The report's activation constants: a larger alpha at larger (finer) scales.

    The report gives no numbers, only the direction; we use a geometric
    ramp from ``coarsest`` to ``finest`` (2, 2.8, 4, 5.7, 8, 11.3, 16 for 7
    scales), so the large-input slope ``1/alpha`` halves every two scales.

    Args:
        num_scales: K.
        coarsest: Alpha at scale 0.
        finest: Alpha at scale K-1.

    Returns:
        Tuple of K floats, coarse -> fine.

    Notebook: chapters/04_activation_and_loss.ipynb
    """
    if num_scales == 1:
        return (float(finest),)
    ratio = (finest / coarsest) ** (1.0 / (num_scales - 1))
    return tuple(round(coarsest * ratio ** k, 6) for k in range(num_scales))


@dataclasses.dataclass
class ModelSpec:
    """Everything that sizes the generator and critic (JSON-serialisable).

    Attributes:
        num_scales: K, number of progressive scales.
        clip_samples: Samples of a clip at the finest scale (divisible by
            ``2**(K-1)``).
        latent_dim: Size of z.
        channels: Feature channels per scale, coarse -> fine (None: 128 each).
        kernel_size: Taps of every hidden convolution.
        activation: Hidden activation, one of ``"report"``, ``"leaky"``,
            ``"linear"``, ``"tanh"``.
        activation_alphas: Alpha of the report activation per scale (None:
            :func:`default_activation_alphas`, larger at finer scales).
        critic_output_activation: ``"linear"`` (WGAN) or ``"report"`` (the
            report: ``tanh(x) + x / critic_output_alpha``).
        critic_output_alpha: Larger than the hidden alphas (the report).
        generator_output_activation: Applied to each to-waveform output
            (``"linear"`` as PGGAN, or ``"tanh"`` as WaveGAN, ...).
        num_classes: 0 = unconditional; > 0 = class-conditional (label
            embedding concatenated to z in G, projection term in the critic).
        minibatch_group_size: Group size of the critic's minibatch stddev.
        phase_shuffle: Critic phase-shuffle radius in samples (0 = off).
        use_pixel_norm: Pixel norm on z and after every generator conv.
        feature_pixel_norm: With ``use_pixel_norm``, also after every generator
            convolution (False: on z only). At audio rate the norm rescales every
            sample on its own, which puts power into each scale's top octave
            (chapter 5, "Where the hiss is made").
        fir_taps: Taps of the anti-aliasing filter of up/downsampling.
        upsample: How each generator block doubles the rate: ``"fir"``
            (insert zeros, low-pass: the new octave starts empty and only the
            activations fill it) or ``"subpixel"`` (a convolution at the lower
            rate with twice the channels, interleaved: Shi et al. 2016's
            sub-pixel convolution, in 1-D as in Kuleshov et al. 2017). The
            waveform fade path stays FIR.
        output_skips: Generator output as a sum of upsampled per-scale outputs
            (StyleGAN2's skip generator) instead of PGGAN's last-scale head.
        silent_heads: The to-waveform heads start at zero, so the generator
            starts silent. With He's initialisation the skip generator starts
            many times louder than the corpus, most of it below the coarsest
            band edge: a hum the critic must first remove (chapter 5).
        head_std: Standard deviation of the heads' kernels at initialisation
            (1 = He's; 0.1 starts each head near the corpus's RMS of 0.1).
            ``silent_heads`` overrides it with 0.
        critic_emphasis: Coefficient of a pre-emphasis filter
            (:class:`~pggan_lib.layers.PreEmphasis`) in front of each of the
            progressive critic's from-waveform layers, at that scale's rate
            (0 = none): the critic hears each scale's top octave louder.
        critic_spectrum: FFT length of a log-spectrogram branch beside the
            progressive critic's waveform path (0 = none). At each scale a
            :class:`~pggan_lib.layers.LogSpectrogram` (halved until it fits a
            quarter of the clip) feeds two convolutions over frames and a mean
            over time; its score adds to the waveform path's (chapter 5).
        architecture: ``"progressive"`` (the growing players) or ``"wavegan"``
            (:class:`WaveGANGenerator` / :class:`WaveGANCritic`: the finest
            scale only, the non-progressive peer).

    Notebook: chapters/03_progressive_model.ipynb
    """

    num_scales: int = DEFAULT_NUM_SCALES
    clip_samples: int = DEFAULT_CLIP_SAMPLES
    latent_dim: int = 128
    channels: Optional[Sequence[int]] = None
    kernel_size: int = 9
    activation: str = "report"
    activation_alphas: Optional[Sequence[float]] = None
    critic_output_activation: str = "report"
    critic_output_alpha: float = 32.0
    generator_output_activation: str = "linear"
    num_classes: int = 0
    minibatch_group_size: int = 4
    phase_shuffle: int = 2
    use_pixel_norm: bool = True
    feature_pixel_norm: bool = True
    fir_taps: int = 33
    upsample: str = "fir"
    output_skips: bool = False
    silent_heads: bool = False
    head_std: float = 1.0
    critic_emphasis: float = 0.0
    critic_spectrum: int = 0
    architecture: str = "progressive"

    def __post_init__(self):
        if self.num_scales < 1:
            raise ValueError(f"ModelSpec.num_scales must be >= 1, got {self.num_scales}")
        if self.clip_samples % 2 ** (self.num_scales - 1):
            raise ValueError(f"ModelSpec.clip_samples={self.clip_samples} is not divisible by "
                             f"2**(num_scales-1)={2 ** (self.num_scales - 1)}")
        if self.channels is None:
            self.channels = (128,) * self.num_scales
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) != self.num_scales:
            raise ValueError(f"ModelSpec.channels has {len(self.channels)} entries, "
                             f"num_scales is {self.num_scales}")
        if self.activation_alphas is None:
            self.activation_alphas = default_activation_alphas(self.num_scales)
        self.activation_alphas = tuple(float(a) for a in self.activation_alphas)
        if len(self.activation_alphas) != self.num_scales:
            raise ValueError(f"ModelSpec.activation_alphas has {len(self.activation_alphas)} "
                             f"entries, num_scales is {self.num_scales}")
        for field in ("activation", "critic_output_activation", "generator_output_activation"):
            if getattr(self, field) not in ACTIVATION_NAMES:
                raise ValueError(f"ModelSpec.{field} must be one of {ACTIVATION_NAMES}, "
                                 f"got {getattr(self, field)!r}")
        if self.num_classes < 0:
            raise ValueError(f"ModelSpec.num_classes must be >= 0, got {self.num_classes}")
        if not self.head_std >= 0:
            raise ValueError(f"ModelSpec.head_std must be >= 0, got {self.head_std}")
        if not 0.0 <= self.critic_emphasis < 1.0:
            raise ValueError(f"ModelSpec.critic_emphasis must be in [0, 1), "
                             f"got {self.critic_emphasis}")
        if self.critic_emphasis and self.architecture != "progressive":
            raise ValueError("ModelSpec.critic_emphasis applies to the progressive critic "
                             f"only, not architecture={self.architecture!r}")
        if self.critic_spectrum and not is_fft_length(self.critic_spectrum):
            raise ValueError(f"ModelSpec.critic_spectrum must be 0 or a power of 2 >= 4, "
                             f"got {self.critic_spectrum}")
        if self.critic_spectrum and self.architecture != "progressive":
            raise ValueError("ModelSpec.critic_spectrum applies to the progressive critic "
                             f"only, not architecture={self.architecture!r}")
        if self.critic_spectrum and self.samples_at_scale(0) < 16:
            raise ValueError(f"ModelSpec.critic_spectrum needs >= 16 samples at scale 0, "
                             f"got {self.samples_at_scale(0)}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"ModelSpec.architecture must be one of {ARCHITECTURES}, "
                             f"got {self.architecture!r}")
        if self.upsample not in UPSAMPLERS:
            raise ValueError(f"ModelSpec.upsample must be one of {UPSAMPLERS}, "
                             f"got {self.upsample!r}")

    def samples_at_scale(self, scale: int) -> int:
        """Samples of a clip at scale ``scale`` (0 = coarsest)."""
        if not 0 <= scale < self.num_scales:
            raise ValueError(f"scale must be in [0, {self.num_scales - 1}], got {scale}")
        return self.clip_samples // 2 ** (self.num_scales - 1 - scale)

    @property
    def conditional(self) -> bool:
        """True when the models take class labels."""
        return self.num_classes > 0

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["channels"] = list(self.channels)
        out["activation_alphas"] = list(self.activation_alphas)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "ModelSpec":
        """Inverse of :meth:`to_dict`; unknown keys raise a ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{cls.__name__}.from_dict: unknown keys {sorted(unknown)}")
        return cls(**values)


def _split_inputs(inputs, conditional, who):
    """``z`` or ``[z, labels]`` -> ``(z, labels or None)`` with a clear error."""
    if conditional:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f"{who}: the model is class-conditional; "
                             "call it with [inputs, labels]")
        return inputs[0], inputs[1]
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 1:
            raise ValueError(f"{who}: the model is unconditional (num_classes=0); "
                             "call it with one tensor, not a list")
        return inputs[0], None
    return inputs, None


class ProgressiveModel(keras.Model):
    """What every progressive generator and critic shares: spec, scale, fade variable, config.

    Subclasses build one block per scale in ``__init__``, then call
    ``_build_all_scales``; they define ``_dummy_inputs(scale)`` and
    ``_layers_for_scale(scale)``. ``spec_class`` is the dataclass of their
    spec (``to_dict``/``from_dict``, ``num_scales``).
    """

    spec_class = ModelSpec

    def __init__(self, spec, scale=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(spec, dict):
            spec = self.spec_class.from_dict(spec)
        self.spec = spec
        self._scale = spec.num_scales - 1
        self.fade = FadeIn(initial_alpha=1.0, name="fade")

    def _build_all_scales(self):
        # Run every scale once on a dummy example so that every weight exists now.
        for k in range(self.spec.num_scales):
            self._scale = k
            self.call(self._dummy_inputs(k), training=False)
        self._scale = self.spec.num_scales - 1
        self.built = True

    @property
    def first_scale(self) -> int:
        """The coarsest scale the model can run (0: it grows from the coarsest)."""
        return 0

    @property
    def current_scale(self) -> int:
        """The scale ``call`` produces/consumes (Python int)."""
        return self._scale

    @property
    def fade_alpha(self):
        """Non-trainable scalar variable: weight of the new block while fading in."""
        return self.fade.alpha

    def set_scale(self, scale: int):
        """Choose the scale that ``call`` runs; retrace compiled steps afterwards.

        Args:
            scale: Python int in ``[0, num_scales - 1]``.
        """
        if not isinstance(scale, (int, np.integer)) or not 0 <= scale < self.spec.num_scales:
            raise ValueError(f"set_scale: scale must be a Python int in "
                             f"[0, {self.spec.num_scales - 1}], got {scale!r}")
        self._scale = int(scale)

    def set_alpha(self, alpha: float):
        """Assign ``fade_alpha`` (float in [0, 1]; 1 = new block only). No retrace."""
        self.fade.set_alpha(alpha)

    def _layers_for_scale(self, scale):
        raise NotImplementedError

    def variables_for_scale(self, scale: Optional[int] = None):
        """Trainable variables used at ``scale`` (default: the current one).

        Includes the previous scale's to/from-waveform layer (the fade path).

        Returns:
            List of ``keras.Variable`` without duplicates, in a stable order.
        """
        scale = self._scale if scale is None else scale
        seen, out = set(), []
        for layer in self._layers_for_scale(scale):
            for variable in layer.trainable_weights:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    out.append(variable)
        return out

    def count_params_at_scale(self, scale: Optional[int] = None) -> int:
        """Number of trainable parameters used at ``scale``."""
        return count_params_at_scale(self, scale)

    def get_config(self):
        return {"name": self.name, "spec": self.spec.to_dict(), "scale": self._scale}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        scale = config.pop("scale", None)
        model = cls(cls.spec_class.from_dict(config.pop("spec")), **config)
        if scale is not None:
            model.set_scale(scale)
        return model


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ProgressiveGenerator(ProgressiveModel):
    """Progressive waveform generator over ``spec.num_scales`` scales.

    Args:
        spec: A :class:`ModelSpec` (or its dict).
        **kwargs: ``keras.Model`` arguments (``name``).

    Call args:
        inputs: ``z`` of shape ``(batch, latent_dim)``, or ``[z, labels]`` with
            int labels ``(batch,)`` when ``spec.num_classes > 0``.
        training: Falsy at inference: then, with ``fade_alpha == 1``, the
            faded-out old path is skipped (it would be multiplied by 0).

    Returns:
        Audio ``(batch, spec.samples_at_scale(current_scale), 1)``.
    """

    def __init__(self, spec, **kwargs):
        kwargs.setdefault("name", "generator")
        super().__init__(spec, **kwargs)
        spec = self.spec
        c, alphas = spec.channels, spec.activation_alphas
        self.label_embedding = (keras.layers.Embedding(spec.num_classes, spec.latent_dim,
                                                       name="label_embedding")
                                if spec.conditional else None)
        self.latent_norm = PixelNorm(name="latent_norm") if spec.use_pixel_norm else None
        self.blocks = []
        for k in range(spec.num_scales):
            layers = []
            if k == 0:
                layers += [EqualizedDense(spec.samples_at_scale(0) * c[0], name="g0_dense"),
                           keras.layers.Reshape((spec.samples_at_scale(0), c[0]),
                                                name="g0_reshape")]
                convs = [[EqualizedConv1D(c[0], spec.kernel_size, name="g0_conv")]]
            else:
                convs = self._upsampling_convs(k)
            activation = make_activation(spec.activation, alphas[k], layer_name=f"g{k}_act")
            norm = spec.use_pixel_norm and spec.feature_pixel_norm
            if k == 0:  # the dense output is activated and normalised too (PGGAN)
                layers += [activation] + ([PixelNorm(name="g0_norm0")] if norm else [])
            for i, conv in enumerate(convs):
                layers += [*conv, activation]
                if norm:
                    layers.append(PixelNorm(name=f"g{k}_norm{i + 1}"))
            self.blocks.append(layers)
        head_std = 0.0 if spec.silent_heads else spec.head_std
        self.to_wave = [EqualizedConv1D(1, 1, gain=1.0, init_std=head_std,
                                        name=f"to_wave{k}")
                        for k in range(spec.num_scales)]
        self.output_activation = make_activation(spec.generator_output_activation,
                                                 alphas[-1], layer_name="output_act")
        self.wave_upsample = Upsample1D(num_taps=spec.fir_taps, name="wave_upsample")
        self.wave_upsample.build((None, None, 1))  # the dummy calls below may skip it (alpha 1)
        self._build_all_scales()

    def _upsampling_convs(self, k):
        """Block ``k``'s two convolutions (each a list of layers), the rate doubled
        before the first (``"fir"``) or by it (``"subpixel"``)."""
        spec, c = self.spec, self.spec.channels
        second = [EqualizedConv1D(c[k], spec.kernel_size, name=f"g{k}_conv2")]
        if spec.upsample == "subpixel":
            # One convolution at the lower rate makes both phases of every new
            # sample (2 c channels, interleaved): the new octave comes from learned
            # filters, not from what the activations make of low-passed features.
            return [[EqualizedConv1D(2 * c[k], spec.kernel_size, name=f"g{k}_conv1"),
                     keras.layers.Reshape((spec.samples_at_scale(k), c[k]),
                                          name=f"g{k}_shuffle")], second]
        return [[Upsample1D(num_taps=spec.fir_taps, name=f"g{k}_upsample"),
                 EqualizedConv1D(c[k], spec.kernel_size, name=f"g{k}_conv1")], second]

    def _dummy_inputs(self, scale):
        z = ops.zeros((1, self.spec.latent_dim))
        return [z, ops.zeros((1,), dtype="int32")] if self.spec.conditional else z

    def _waveform(self, features, scale):
        return self.output_activation(self.to_wave[scale](features))

    def _latent(self, inputs):
        """``z`` (with its label embedding when conditional), pixel-normed if the spec says."""
        z, labels = _split_inputs(inputs, self.spec.conditional, "ProgressiveGenerator")
        if labels is not None:
            z = ops.concatenate(
                [z, ops.cast(self.label_embedding(ops.reshape(labels, (-1,))), z.dtype)], axis=-1)
        return self.latent_norm(z) if self.latent_norm is not None else z

    def trace_newest_block(self, inputs) -> list:
        """Every layer's output in the current scale's block, then its head's.

        A diagnostic: where in the newest block a band's power comes from
        (chapter 5 measures the top octave with ``evaluation.band_share_db``).

        Args:
            inputs: As :meth:`call`.

        Returns:
            ``[(layer name, array (batch, samples, channels)), ...]`` from the
            block's first layer to ``to_wave{scale}`` (the head's output: the
            clip, or with ``output_skips`` the detail added to the upsampled clip).

        Notebook: chapters/05_training_on_gpu.ipynb
        """
        h = self._latent(inputs)
        for k in range(self._scale):
            for layer in self.blocks[k]:
                h = layer(h)
        trace = []
        for layer in self.blocks[self._scale]:
            h = layer(h)
            trace.append((layer.name, np.asarray(h)))
        head = self.to_wave[self._scale]
        return trace + [(head.name, np.asarray(head(h)))]

    def call(self, inputs, training=None):
        h = self._latent(inputs)
        if self.spec.output_skips:
            return self._call_with_skips(h)
        scale = self._scale
        for k in range(scale):
            for layer in self.blocks[k]:
                h = layer(h)
        new_features = h
        for layer in self.blocks[scale]:
            new_features = layer(new_features)
        new = self._waveform(new_features, scale)
        if scale == 0:
            return new

        def faded():
            old = self.wave_upsample(self._waveform(h, scale - 1))
            return self.fade([old, new])

        if training:
            return faded()
        # Inference after a finished fade (alpha = 1): the old path gets weight 0,
        # so skip computing it. alpha is a variable: decided at run time, no retrace.
        return ops.cond(ops.equal(self.fade.alpha, 1.0), lambda: new, faded)

    def _call_with_skips(self, h):
        # y_k = upsample(y_{k-1}) + a * toWave_k(h_k): the fade blends "no new
        # detail" with "new detail", so FadeIn sees [old, old + detail].
        y = None
        for k in range(self._scale + 1):
            for layer in self.blocks[k]:
                h = layer(h)
            detail = self.to_wave[k](h)
            if y is None:
                y = detail
            else:
                y = self.wave_upsample(y)
                y = self.fade([y, y + detail]) if k == self._scale else y + detail
        return self.output_activation(y)

    def _layers_for_scale(self, scale):
        layers = [layer for k in range(scale + 1) for layer in self.blocks[k]]
        if self.spec.output_skips:
            layers += self.to_wave[:scale + 1]
        else:
            layers.append(self.to_wave[scale])
            if scale > 0:
                layers.append(self.to_wave[scale - 1])
        if self.label_embedding is not None:
            layers.append(self.label_embedding)
        return layers


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ProgressiveCritic(ProgressiveModel):
    """Progressive critic (WGAN discriminator) over ``spec.num_scales`` scales.

    Args:
        spec: A :class:`ModelSpec` (or its dict).
        **kwargs: ``keras.Model`` arguments (``name``).

    Call args:
        inputs: Audio ``(batch, spec.samples_at_scale(current_scale), 1)``, or
            ``[audio, labels]`` with int labels ``(batch,)`` when conditional
            (projection discriminator: ``+ <embed(label), features>``).
        training: Enables phase shuffle.

    Returns:
        Scores ``(batch, 1)``.
    """

    def __init__(self, spec, **kwargs):
        kwargs.setdefault("name", "critic")
        super().__init__(spec, **kwargs)
        spec = self.spec
        c, alphas = spec.channels, spec.activation_alphas
        self.from_wave = [
            [EqualizedConv1D(c[k], 1, name=f"from_wave{k}"),
             make_activation(spec.activation, alphas[k], layer_name=f"from_wave{k}_act")]
            for k in range(spec.num_scales)]
        self.blocks = [None]
        for k in range(1, spec.num_scales):
            activation = make_activation(spec.activation, alphas[k], layer_name=f"d{k}_act")
            block = [EqualizedConv1D(c[k], spec.kernel_size, name=f"d{k}_conv1"), activation,
                     EqualizedConv1D(c[k - 1], spec.kernel_size, name=f"d{k}_conv2"), activation,
                     Downsample1D(num_taps=spec.fir_taps, name=f"d{k}_downsample")]
            if spec.phase_shuffle > 0:
                block.append(PhaseShuffle(spec.phase_shuffle, name=f"d{k}_phase_shuffle"))
            self.blocks.append(block)
        activation0 = make_activation(spec.activation, alphas[0], layer_name="d0_act")
        self.final_features = [
            MinibatchStdDev(spec.minibatch_group_size, name="d0_minibatch_stddev"),
            EqualizedConv1D(c[0], spec.kernel_size, name="d0_conv"), activation0,
            keras.layers.Flatten(name="d0_flatten"),
            EqualizedDense(c[0], name="d0_dense"), activation0]
        self.final_dense = EqualizedDense(1, gain=1.0, name="d0_out")
        self.label_projection = (keras.layers.Embedding(spec.num_classes, c[0],
                                                        name="label_projection")
                                 if spec.conditional else None)
        self.output_activation = make_activation(spec.critic_output_activation,
                                                 spec.critic_output_alpha, layer_name="output_act")
        self.wave_downsample = Downsample1D(num_taps=spec.fir_taps, name="wave_downsample")
        self.emphasis = (PreEmphasis(spec.critic_emphasis, name="emphasis")
                         if spec.critic_emphasis else None)
        self.spectrum = ([self._spectrum_branch(k) for k in range(spec.num_scales)]
                         if spec.critic_spectrum else None)
        self._build_all_scales()

    def _spectrum_branch(self, scale):
        """Layers of ``scale``'s log-spectrogram branch, ``(B, T, 1) -> (B, 1)``."""
        spec = self.spec
        fft_length = spectrum_frame(spec.critic_spectrum, spec.samples_at_scale(scale))
        width = max(spec.channels)  # the bins need more room than 16 channels
        activation = make_activation(spec.activation, spec.activation_alphas[scale],
                                     layer_name=f"spectrum{scale}_act")
        return [LogSpectrogram(fft_length, name=f"spectrum{scale}_stft"),
                EqualizedConv1D(width, 3, name=f"spectrum{scale}_conv1"), activation,
                EqualizedConv1D(width, 3, name=f"spectrum{scale}_conv2"), activation,
                keras.layers.GlobalAveragePooling1D(name=f"spectrum{scale}_mean"),
                EqualizedDense(1, gain=1.0, name=f"spectrum{scale}_out")]

    def _spectrum_score(self, x, scale):
        """The spectrogram branch's score ``(B, 1)``, faded like the waveform path."""
        def run(y, k):
            for layer in self.spectrum[k]:
                y = layer(y)
            return y
        score = run(x, scale)
        if scale > 0:
            score = self.fade([run(self.wave_downsample(x), scale - 1), score])
        return score

    def _dummy_inputs(self, scale):
        x = ops.zeros((1, self.spec.samples_at_scale(scale), 1))
        return [x, ops.zeros((1,), dtype="int32")] if self.spec.conditional else x

    def _from_waveform(self, x, scale):
        if self.emphasis is not None:
            x = self.emphasis(x)
        for layer in self.from_wave[scale]:
            x = layer(x)
        return x

    def _run_block(self, h, scale, training):
        for layer in self.blocks[scale]:
            h = layer(h, training=training) if isinstance(layer, PhaseShuffle) else layer(h)
        return h

    def call(self, inputs, training=None):
        x, labels = _split_inputs(inputs, self.spec.conditional, "ProgressiveCritic")
        scale = self._scale
        h = self._from_waveform(x, scale)
        if scale > 0:
            new = self._run_block(h, scale, training)
            old = self._from_waveform(self.wave_downsample(x), scale - 1)
            h = self.fade([old, new])
        for k in range(scale - 1, 0, -1):
            h = self._run_block(h, k, training)
        for layer in self.final_features:
            h = layer(h)
        score = self.final_dense(h)
        if self.spectrum is not None:
            score = score + self._spectrum_score(x, scale)
        if labels is not None:
            embedded = ops.cast(self.label_projection(ops.reshape(labels, (-1,))), h.dtype)
            score = score + ops.sum(embedded * h, axis=-1, keepdims=True)
        return self.output_activation(score)

    def _layers_for_scale(self, scale):
        layers = list(self.from_wave[scale])
        if scale > 0:
            layers += self.from_wave[scale - 1]
        for k in range(1, scale + 1):
            layers += self.blocks[k]
        layers += self.final_features + [self.final_dense]
        if self.spectrum is not None:
            layers += self.spectrum[scale] + (self.spectrum[scale - 1] if scale > 0 else [])
        if self.label_projection is not None:
            layers.append(self.label_projection)
        return layers


def build_generator(spec: ModelSpec, scale: Optional[int] = None) -> ProgressiveGenerator:
    """Build a :class:`ProgressiveGenerator` with all scales' weights.

    Args:
        spec: Sizes.
        scale: Initial scale (default: the coarsest, 0, where training starts).

    Returns:
        The generator.

    Notebook: chapters/03_progressive_model.ipynb
    """
    model = ProgressiveGenerator(spec)
    model.set_scale(0 if scale is None else scale)
    return model


def build_critic(spec: ModelSpec, scale: Optional[int] = None) -> ProgressiveCritic:
    """Build a :class:`ProgressiveCritic` with all scales' weights.

    Args:
        spec: Sizes.
        scale: Initial scale (default: the coarsest, 0).

    Returns:
        The critic.

    Notebook: chapters/03_progressive_model.ipynb
    """
    model = ProgressiveCritic(spec)
    model.set_scale(0 if scale is None else scale)
    return model


def count_params_at_scale(model, scale: Optional[int] = None) -> int:
    """Trainable parameters that ``model`` uses at ``scale`` (default: current).

    Args:
        model: A :class:`ProgressiveGenerator` or :class:`ProgressiveCritic`.
        scale: Scale index.

    Returns:
        Number of scalars in ``model.variables_for_scale(scale)``.

    Notebook: chapters/03_progressive_model.ipynb
    """
    return int(sum(math.prod(v.shape) for v in model.variables_for_scale(scale)))


def count_flops(spec: ModelSpec, scale: int) -> dict:
    """Analytic forward FLOPs per example at ``scale`` (multiply-add = 2 FLOPs).

    Counts convolutions, dense layers and the anti-aliasing FIR filters as
    implemented (polyphase upsampling, strided downsampling), including the
    fade path; elementwise work (activations, pixel norm, fade sum) is left
    out, being small and memory-bound. A training step costs roughly 3x the
    forward FLOPs per network pass (forward + two backward products), more
    with the gradient penalty's double backprop.

    Args:
        spec: Sizes.
        scale: Scale index.

    Returns:
        ``{"generator": int, "critic": int}``.

    Notebook: chapters/03_progressive_model.ipynb
    """
    spec.samples_at_scale(scale)  # validates scale
    c, kernel, taps = spec.channels, spec.kernel_size, spec.fir_taps
    length = [spec.samples_at_scale(k) for k in range(spec.num_scales)]
    z_in = spec.latent_dim * (2 if spec.conditional else 1)

    generator = 2 * z_in * length[0] * c[0] + 2 * length[0] * kernel * c[0] * c[0]
    for k in range(1, scale + 1):
        if spec.upsample == "fir":  # sub-pixel: the first conv's cost is the same, no FIR
            generator += 2 * length[k] * taps * c[k - 1] // 2      # polyphase: taps/2 per output
        generator += 2 * length[k] * kernel * (c[k - 1] * c[k] + c[k] * c[k])
    generator += 2 * length[scale] * c[scale]                     # to_wave
    if scale > 0:
        generator += 2 * length[scale - 1] * c[scale - 1] + 2 * length[scale] * taps // 2

    critic = 2 * length[scale] * c[scale]                          # from_wave
    if scale > 0:
        critic += 2 * length[scale - 1] * taps + 2 * length[scale - 1] * c[scale - 1]
    for k in range(scale, 0, -1):
        critic += 2 * length[k] * kernel * (c[k] * c[k] + c[k] * c[k - 1])
        critic += 2 * length[k - 1] * taps * c[k - 1]             # strided: one output in two
    critic += 2 * length[0] * kernel * (c[0] + 1) * c[0]          # after minibatch stddev
    critic += 2 * length[0] * c[0] * c[0] + 2 * c[0]              # dense layers
    if spec.conditional:
        critic += 2 * c[0]
    return {"generator": int(generator), "critic": int(critic)}


# ---------------------------------------------------------------------------
# Non-progressive baseline (chapter 2)
# ---------------------------------------------------------------------------

def build_wavegan_generator(spec: ModelSpec) -> keras.Model:
    """A WaveGAN-style generator that makes the finest scale directly.

    ``z -> Dense -> (L0, C0) -> [Conv1DTranspose(stride 2) + activation] x (K-1)
    -> Conv1D(1) -> tanh``: plain Keras layers, no equalised learning rate,
    no pixel norm, no fade; ``spec.channels[k]`` channels after the k-th
    upsampling. Conditional specs concatenate a label embedding to z.

    Args:
        spec: Sizes (``clip_samples`` is the output length).

    Returns:
        A functional ``keras.Model``: ``z`` or ``[z, labels]`` ->
        ``(batch, clip_samples, 1)``.

    Notebook: chapters/02_wgan_gp.ipynb
    """
    c, alphas = spec.channels, spec.activation_alphas
    z = keras.Input((spec.latent_dim,), name="z")
    inputs, h = z, z
    if spec.conditional:
        labels = keras.Input((), dtype="int32", name="labels")
        inputs = [z, labels]
        h = keras.layers.Concatenate()(
            [z, keras.layers.Embedding(spec.num_classes, spec.latent_dim)(labels)])
    h = keras.layers.Dense(spec.samples_at_scale(0) * c[0])(h)
    h = keras.layers.Reshape((spec.samples_at_scale(0), c[0]))(h)
    h = make_activation(spec.activation, alphas[0])(h)
    for k in range(1, spec.num_scales):
        h = keras.layers.Conv1DTranspose(c[k], spec.kernel_size, strides=2, padding="same")(h)
        h = make_activation(spec.activation, alphas[k])(h)
    h = keras.layers.Conv1D(1, spec.kernel_size, padding="same")(h)
    audio = keras.layers.Activation("tanh", name="audio")(h)
    return keras.Model(inputs, audio, name="wavegan_generator")


def build_wavegan_critic(spec: ModelSpec) -> keras.Model:
    """A WaveGAN-style critic for clips of the finest scale.

    ``[Conv1D(stride 2) + activation + PhaseShuffle] x (K-1) -> Conv1D ->
    Flatten -> Dense(1)``, channels ``spec.channels`` fine -> coarse; phase
    shuffle (radius ``spec.phase_shuffle``) after every strided layer, as in
    WaveGAN. Conditional specs add a projection term.

    Args:
        spec: Sizes.

    Returns:
        A functional ``keras.Model``: audio ``(batch, clip_samples, 1)`` or
        ``[audio, labels]`` -> ``(batch, 1)``.

    Notebook: chapters/02_wgan_gp.ipynb
    """
    c, alphas = spec.channels, spec.activation_alphas
    audio = keras.Input((spec.clip_samples, 1), name="audio")
    inputs, h = audio, audio
    for k in range(spec.num_scales - 1, 0, -1):
        h = keras.layers.Conv1D(c[k], spec.kernel_size, strides=2, padding="same")(h)
        h = make_activation(spec.activation, alphas[k])(h)
        if spec.phase_shuffle > 0:
            h = PhaseShuffle(spec.phase_shuffle)(h)
    h = keras.layers.Conv1D(c[0], spec.kernel_size, padding="same")(h)
    h = make_activation(spec.activation, alphas[0])(h)
    h = keras.layers.Flatten()(h)
    score = keras.layers.Dense(1)(h)
    if spec.conditional:
        labels = keras.Input((), dtype="int32", name="labels")
        inputs = [audio, labels]
        features = keras.layers.Dense(c[0])(h)
        embedded = keras.layers.Embedding(spec.num_classes, c[0])(labels)
        projection = keras.layers.Dot(axes=-1)([features, embedded])
        score = keras.layers.Add()([score, projection])
    score = make_activation(spec.critic_output_activation, spec.critic_output_alpha,
                            layer_name="score")(score)
    return keras.Model(inputs, score, name="wavegan_critic")


class _FinestScaleModel(ProgressiveModel):
    """A WaveGAN network behind the progressive players' interface.

    It has one scale, the finest, and never grows; wrapping it lets the
    training driver, its checkpoints, ``.keras`` files and the study harness
    treat the non-progressive peer exactly as the progressive players.
    Subclasses set ``_build_network`` (``spec -> keras.Model``).
    """

    def __init__(self, spec, **kwargs):
        super().__init__(spec, **kwargs)
        self.network = type(self)._build_network(self.spec)
        self.built = True

    @property
    def first_scale(self) -> int:
        """The finest scale: the only one this model has."""
        return self.spec.num_scales - 1

    def set_scale(self, scale: int):
        """Accept only the finest scale (a WaveGAN network does not grow)."""
        if scale != self.first_scale:
            raise ValueError(f"{self.name}: a WaveGAN network has only the finest scale "
                             f"({self.first_scale}); scale {scale!r} does not exist")
        super().set_scale(scale)

    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    def _layers_for_scale(self, scale):
        return [self.network]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WaveGANGenerator(_FinestScaleModel):
    """:func:`build_wavegan_generator` as a one-scale progressive player.

    Args:
        spec: A :class:`ModelSpec` (or its dict); ``architecture`` is not read.

    Call args:
        inputs: ``z`` ``(batch, latent_dim)`` or ``[z, labels]``.

    Returns:
        Audio ``(batch, spec.clip_samples, 1)``.

    Notebook: chapters/05_training_on_gpu.ipynb
    """

    _build_network = staticmethod(build_wavegan_generator)

    def __init__(self, spec, **kwargs):
        kwargs.setdefault("name", "wavegan_generator")
        super().__init__(spec, **kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WaveGANCritic(_FinestScaleModel):
    """:func:`build_wavegan_critic` as a one-scale progressive player.

    Args:
        spec: A :class:`ModelSpec` (or its dict).

    Call args:
        inputs: Audio ``(batch, spec.clip_samples, 1)`` or ``[audio, labels]``.

    Returns:
        Scores ``(batch, 1)``.

    Notebook: chapters/05_training_on_gpu.ipynb
    """

    _build_network = staticmethod(build_wavegan_critic)

    def __init__(self, spec, **kwargs):
        kwargs.setdefault("name", "wavegan_critic")
        super().__init__(spec, **kwargs)
