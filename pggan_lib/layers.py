"""Building blocks of the progressive generator and critic, for 1-D audio.

All layers work channels-last on tensors of shape ``(batch, samples, channels)``
and are registered with Keras under the package name ``"pggan"``, so a
``.keras`` file that contains them loads in Keras's safe mode (no lambdas).

* :class:`EqualizedConv1D`, :class:`EqualizedDense`: PGGAN's equalised
  learning rate. Weights are stored ~ N(0, 1) and multiplied at run time by
  He's constant ``gain / sqrt(fan_in)``, so that Adam's per-parameter step is
  the same relative size for every layer.
* :class:`PixelNorm`: normalises each sample's feature vector to unit RMS.
* :class:`MinibatchStdDev`: appends the average standard deviation across a
  group of examples as one extra feature channel (helps against mode collapse).
* :class:`FadeIn`: ``(1 - alpha) * old + alpha * new`` with ``alpha`` a
  non-trainable variable that the training loop ramps from 0 to 1.
* :class:`Upsample1D`, :class:`Downsample1D`: change the sample rate by 2
  through a fixed Kaiser-windowed-sinc low-pass filter (anti-aliasing), as a
  depthwise convolution.
* :class:`PhaseShuffle`: WaveGAN's random shift of the critic's activations.
* :class:`ReportActivation`: the report's ``f(x) = tanh(x) + x / alpha``.
* :func:`augment_audio`: differentiable augmentation of real and generated
  audio alike (gain, polarity, time shift, cut-out, noise).

Notebook: chapters/03_progressive_model.ipynb
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from pggan_lib.config import is_fft_length

__all__ = [
    "EqualizedConv1D",
    "EqualizedConv2D",
    "EqualizedDense",
    "PixelNorm",
    "MinibatchStdDev",
    "FadeIn",
    "Upsample1D",
    "Downsample1D",
    "PhaseShuffle",
    "PreEmphasis",
    "LogSpectrogram",
    "log_power_spectrogram",
    "ReportActivation",
    "make_activation",
    "ACTIVATION_NAMES",
    "lowpass_filter",
    "AUGMENT_NAMES",
    "check_augment",
    "augment_audio",
]

#: Names accepted by :func:`make_activation`.
ACTIVATION_NAMES = ("report", "leaky", "linear", "tanh")

_PACKAGE = "pggan"


# ---------------------------------------------------------------------------
# Equalised learning rate
# ---------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package=_PACKAGE)
class EqualizedConv1D(keras.layers.Layer):
    """1-D convolution with PGGAN's equalised learning rate.

    The kernel is stored ~ N(0, 1); the convolution uses
    ``kernel * gain / sqrt(kernel_size * in_channels)``, so every layer's
    effective weights have He's standard deviation whatever its fan-in.

    Args:
        filters: Output channels.
        kernel_size: Taps of the convolution.
        gain: Numerator of He's constant (``sqrt(2)`` for (leaky-)ReLU-like
            activations, 1 for a linear output layer).
        use_bias: Add a bias (initialised to 0, not scaled).
        padding: ``"same"`` (length kept) or ``"valid"``.
        strides: Convolution stride.
        init_std: Standard deviation of the stored kernel at initialisation
            (1: He's; 0: the layer starts at zero and learns from there).

    Input shape: ``(batch, samples, in_channels)``.
    Output shape: ``(batch, samples', filters)`` (``samples' = samples`` for
    ``"same"`` padding and stride 1).

    Notebook: chapters/03_progressive_model.ipynb
    """

    def __init__(self, filters, kernel_size, gain=math.sqrt(2.0), use_bias=True,
                 padding="same", strides=1, init_std=1.0, **kwargs):
        super().__init__(**kwargs)
        if padding not in ("same", "valid"):
            raise ValueError(f"EqualizedConv1D padding must be 'same' or 'valid', got {padding!r}")
        if init_std < 0:
            raise ValueError(f"EqualizedConv1D init_std must be >= 0, got {init_std}")
        self.init_std = float(init_std)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.gain = float(gain)
        self.use_bias = bool(use_bias)
        self.padding = padding
        self.strides = int(strides)

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, in_channels, self.filters),
            initializer=keras.initializers.RandomNormal(0.0, self.init_std))
        self.bias = (self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
                     if self.use_bias else None)
        # He's constant, applied at run time (not folded into the stored weights).
        self.runtime_scale = self.gain / math.sqrt(self.kernel_size * in_channels)

    def call(self, inputs):
        kernel = self.kernel * ops.cast(self.runtime_scale, self.kernel.dtype)
        outputs = ops.conv(inputs, kernel, strides=self.strides, padding=self.padding,
                           data_format="channels_last")
        if self.use_bias:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        length = input_shape[1]
        if length is not None:
            if self.padding == "same":
                length = -(-length // self.strides)
            else:
                length = (length - self.kernel_size) // self.strides + 1
        return (input_shape[0], length, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, gain=self.gain,
                      use_bias=self.use_bias, padding=self.padding, strides=self.strides,
                      init_std=self.init_std)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EqualizedConv2D(keras.layers.Layer):
    """2-D convolution with PGGAN's equalised learning rate (for spectrogram models).

    As :class:`EqualizedConv1D`, over ``(frames, bins)``: the kernel
    ``(k, k, in, out)`` is stored ~ N(0, 1) and scaled at run time by
    ``gain / sqrt(k * k * in_channels)``; "same" padding, stride 1.

    Args:
        filters: Output channels.
        kernel_size: Side of the square kernel.
        gain: Numerator of He's constant.
        use_bias: Add a bias (initialised to 0).

    Input shape: ``(batch, frames, bins, in_channels)``.
    Output shape: ``(batch, frames, bins, filters)``.
    """

    def __init__(self, filters, kernel_size, gain=math.sqrt(2.0), use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.gain = float(gain)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, in_channels, self.filters),
            initializer=keras.initializers.RandomNormal(0.0, 1.0))
        self.bias = (self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
                     if self.use_bias else None)
        self.runtime_scale = self.gain / math.sqrt(k * k * in_channels)

    def call(self, inputs):
        kernel = self.kernel * ops.cast(self.runtime_scale, self.kernel.dtype)
        outputs = ops.conv(inputs, kernel, padding="same", data_format="channels_last")
        return outputs + self.bias if self.use_bias else outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, gain=self.gain,
                      use_bias=self.use_bias)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EqualizedDense(keras.layers.Layer):
    """Dense layer with PGGAN's equalised learning rate.

    Args:
        units: Output features.
        gain: Numerator of He's constant ``gain / sqrt(in_features)``.
        use_bias: Add a bias (initialised to 0).

    Input shape: ``(batch, in_features)``. Output shape: ``(batch, units)``.

    Notebook: chapters/03_progressive_model.ipynb
    """

    def __init__(self, units, gain=math.sqrt(2.0), use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.gain = float(gain)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        in_features = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel", shape=(in_features, self.units),
            initializer=keras.initializers.RandomNormal(0.0, 1.0))
        self.bias = (self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
                     if self.use_bias else None)
        self.runtime_scale = self.gain / math.sqrt(in_features)

    def call(self, inputs):
        outputs = ops.matmul(inputs, self.kernel * ops.cast(self.runtime_scale, self.kernel.dtype))
        if self.use_bias:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, gain=self.gain, use_bias=self.use_bias)
        return config


# ---------------------------------------------------------------------------
# Normalisation and statistics
# ---------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package=_PACKAGE)
class PixelNorm(keras.layers.Layer):
    """PGGAN's pixelwise feature normalisation (per sample, across channels).

    ``y = x / sqrt(mean(x**2, axis=-1) + epsilon)``.

    Args:
        epsilon: Added under the square root so silence does not divide by 0.

    Input/output shape: ``(..., channels)``.

    Notebook: chapters/03_progressive_model.ipynb
    """

    def __init__(self, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        return inputs * ops.rsqrt(ops.mean(ops.square(inputs), axis=-1, keepdims=True)
                                  + self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MinibatchStdDev(keras.layers.Layer):
    """Append the group-averaged standard deviation as one feature channel.

    As in PGGAN: the batch is split into groups of ``G = min(group_size,
    batch)`` examples, example ``b`` belonging to group ``b % (batch // G)``;
    within each group the standard deviation of every (sample, channel) entry
    is taken over the G members (population std, epsilon 1e-8 under the root)
    and averaged into one number, which is broadcast as an extra channel to
    the group's members. If the batch is not divisible by G, G is lowered to
    the largest divisor of the batch not above it (PGGAN itself would fail).

    Args:
        group_size: Examples per group (PGGAN: 4).
        epsilon: Added to the variance before the square root.

    Input shape: ``(batch, samples, channels)``.
    Output shape: ``(batch, samples, channels + 1)``.

    Notebook: chapters/03_progressive_model.ipynb
    """

    def __init__(self, group_size=4, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        if int(group_size) < 1:
            raise ValueError(f"MinibatchStdDev group_size must be >= 1, got {group_size}")
        self.group_size = int(group_size)
        self.epsilon = float(epsilon)

    def _group_size_for(self, batch):
        if isinstance(batch, int):
            group = min(self.group_size, batch)
            while batch % group:
                group -= 1
            return group
        # Batch unknown while tracing: pick the largest divisor <= group_size with ops.
        candidates = ops.arange(self.group_size, 0, -1, dtype="int32")
        divides = ops.equal(ops.mod(batch, candidates), 0)
        return ops.take(candidates, ops.argmax(ops.cast(divides, "int32")))

    def call(self, inputs):
        batch, samples, channels = (ops.shape(inputs)[0], ops.shape(inputs)[1],
                                    ops.shape(inputs)[2])
        group = self._group_size_for(batch)
        grouped = ops.reshape(inputs, (group, -1, samples, channels))   # (G, M, L, C)
        grouped = ops.cast(grouped, "float32")  # statistics in fp32 under mixed precision
        variance = ops.mean(ops.square(grouped - ops.mean(grouped, axis=0, keepdims=True)), axis=0)
        stddev = ops.sqrt(variance + self.epsilon)                      # (M, L, C)
        feature = ops.mean(stddev, axis=(1, 2))                          # (M,)
        feature = ops.reshape(ops.tile(feature[None, :], (group, 1)), (-1, 1, 1))  # (B, 1, 1)
        feature = ops.cast(feature, inputs.dtype) * ops.ones_like(inputs[:, :, :1])
        return ops.concatenate([inputs, feature], axis=-1)

    def compute_output_shape(self, input_shape):
        channels = None if input_shape[-1] is None else input_shape[-1] + 1
        return tuple(input_shape[:-1]) + (channels,)

    def get_config(self):
        config = super().get_config()
        config.update(group_size=self.group_size, epsilon=self.epsilon)
        return config


# ---------------------------------------------------------------------------
# Fade-in between scales
# ---------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package=_PACKAGE)
class FadeIn(keras.layers.Layer):
    """Weighted sum ``(1 - alpha) * old + alpha * new`` of two equal-shape tensors.

    ``alpha`` is a non-trainable scalar variable (saved with the weights), so a
    compiled train step reads its current value without retracing. Set it
    with :meth:`set_alpha`.

    Args:
        initial_alpha: Starting value of ``alpha`` (1 = only the new path).

    Call args:
        inputs: ``[old, new]``, two tensors of the same shape.

    Returns:
        A tensor of that shape.

    Notebook: chapters/03_progressive_model.ipynb
    """

    def __init__(self, initial_alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_alpha = float(initial_alpha)
        # Created here (not in build) so the owner model can expose it at once.
        self.alpha = self.add_weight(
            name="alpha", shape=(), trainable=False, dtype="float32",
            initializer=keras.initializers.Constant(self.initial_alpha))
        self.built = True

    def set_alpha(self, value):
        """Assign ``alpha`` (a float in [0, 1]); no retrace needed."""
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"FadeIn alpha must be in [0, 1], got {value}")
        self.alpha.assign(value)

    def call(self, inputs):
        old, new = inputs
        alpha = ops.cast(self.alpha, old.dtype)
        return old + alpha * (new - old)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(initial_alpha=self.initial_alpha)
        return config


# ---------------------------------------------------------------------------
# Anti-aliased resampling by 2
# ---------------------------------------------------------------------------

def lowpass_filter(num_taps=33, cutoff=0.225, kaiser_beta=6.0):
    """Kaiser-windowed-sinc low-pass FIR with unit DC gain.

    The defaults pass up to 0.15 of the input rate (< 0.02 dB loss) and
    attenuate everything from 0.28 of the rate by more than 45 dB, from 0.3 by
    more than 65 dB: a tone above the half-rate Nyquist (0.25) folds back at
    least 40 dB down after decimation by 2.

    Args:
        num_taps: Odd filter length (odd keeps the filter zero-phase).
        cutoff: -6 dB point in cycles per input sample (0.25 = half Nyquist).
        kaiser_beta: Kaiser window shape (larger: more attenuation, wider
            transition band).

    Returns:
        np.float32 array of shape ``(num_taps,)``.

    Notebook: chapters/03_progressive_model.ipynb
    """
    if num_taps < 1 or num_taps % 2 == 0:
        raise ValueError(f"lowpass_filter num_taps must be odd and positive, got {num_taps}")
    if not 0.0 < cutoff < 0.5:
        raise ValueError(f"lowpass_filter cutoff must be in (0, 0.5) cycles/sample, got {cutoff}")
    n = np.arange(num_taps) - (num_taps - 1) / 2
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(num_taps, kaiser_beta)
    return (taps / taps.sum()).astype(np.float32)


class _FIRResample(keras.layers.Layer):
    """Shared code of :class:`Upsample1D` and :class:`Downsample1D`."""

    def __init__(self, num_taps=33, cutoff=0.225, kaiser_beta=6.0, **kwargs):
        super().__init__(**kwargs)
        self.num_taps = int(num_taps)
        self.cutoff = float(cutoff)
        self.kaiser_beta = float(kaiser_beta)
        self.taps = lowpass_filter(self.num_taps, self.cutoff, self.kaiser_beta)

    def _depthwise(self, inputs, taps, pad_left, pad_right, strides=1):
        # A fixed constant, tiled over channels: a depthwise conv, no weights to save.
        channels = int(inputs.shape[-1])
        # TensorFlow 2.21's oneDNN 16-bit depthwise convolution stalls on CPUs (bfloat16
        # on AMD EPYC: over 40 s for a (4, 64, 8) input; float16 on Intel Xeon: minutes):
        # filter 16-bit floats in float32. The filter is a small share of a step, so
        # the casts cost little.
        half = keras.backend.standardize_dtype(inputs.dtype) in ("bfloat16", "float16")
        compute_dtype = "float32" if half else inputs.dtype
        kernel = np.tile(np.asarray(taps, np.float32)[:, None, None], (1, channels, 1))
        kernel = ops.convert_to_tensor(kernel, dtype=compute_dtype)
        padded = ops.pad(ops.cast(inputs, compute_dtype), ((0, 0), (pad_left, pad_right), (0, 0)))
        filtered = ops.depthwise_conv(padded, kernel, strides=strides, padding="valid",
                                      data_format="channels_last")
        return ops.cast(filtered, inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(num_taps=self.num_taps, cutoff=self.cutoff, kaiser_beta=self.kaiser_beta)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Upsample1D(_FIRResample):
    """Double the sample rate: insert zeros, then low-pass (image suppression).

    Zero-insertion makes a mirror image of the spectrum above the old Nyquist;
    the low-pass filter (gain 2, to keep the amplitude) removes it.

    Args:
        num_taps, cutoff, kaiser_beta: See :func:`lowpass_filter`.

    Input shape: ``(batch, samples, channels)``.
    Output shape: ``(batch, 2 * samples, channels)``.

    Notebook: chapters/03_progressive_model.ipynb
    """

    def call(self, inputs):
        # Polyphase form of "insert zeros, filter with gain 2": even outputs use
        # the even taps, odd outputs the odd taps; no multiplications by zero.
        centre = (self.num_taps - 1) // 2
        gained = 2.0 * self.taps
        if centre % 2 == 0:
            even = self._depthwise(inputs, gained[0::2], centre // 2, centre // 2)
            odd = self._depthwise(inputs, gained[1::2], centre // 2 - 1, centre // 2)
        else:
            even = self._depthwise(inputs, gained[1::2], centre // 2, centre // 2)
            odd = self._depthwise(inputs, gained[0::2], centre // 2, centre // 2 + 1)
        samples, channels = inputs.shape[1], inputs.shape[2]
        length = -1 if samples is None else 2 * samples
        return ops.reshape(ops.stack([even, odd], axis=2), (-1, length, channels))

    def compute_output_shape(self, input_shape):
        samples = None if input_shape[1] is None else 2 * input_shape[1]
        return (input_shape[0], samples, input_shape[2])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Downsample1D(_FIRResample):
    """Halve the sample rate: low-pass below the new Nyquist, keep every 2nd sample.

    Args:
        num_taps, cutoff, kaiser_beta: See :func:`lowpass_filter`.

    Input shape: ``(batch, samples, channels)`` with even ``samples``.
    Output shape: ``(batch, samples // 2, channels)``.

    Notebook: chapters/03_progressive_model.ipynb
    """

    def call(self, inputs):
        # Filter centred on the even samples, evaluated only there (stride 2).
        half = (self.num_taps - 1) // 2
        return self._depthwise(inputs, self.taps, half, half, strides=2)

    def compute_output_shape(self, input_shape):
        samples = None if input_shape[1] is None else input_shape[1] // 2
        return (input_shape[0], samples, input_shape[2])


# ---------------------------------------------------------------------------
# Phase shuffle (WaveGAN)
# ---------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package=_PACKAGE)
class PhaseShuffle(keras.layers.Layer):
    """WaveGAN's phase shuffle: shift each example by a random ``n in [-rad, rad]``.

    ``y[t] = x[t - n]`` with reflect padding at the edges, so the length is
    kept. One shift per example (WaveGAN draws one per batch; per example
    regularises the same way with more variety). Identity at inference
    (``training=False``) and when ``rad == 0``.

    Replica-safe: the shifts are a stateless function of ``(seed, draws)``,
    where ``draws`` is a non-trainable counter (saved with the weights, so a
    resumed run continues the stream) that only the first replica advances.
    Under a ``tf.distribute`` strategy every replica draws the shifts of the
    *global* batch and keeps its strided share (examples ``r, r + n, ...``,
    as ``training`` splits batches), so N devices shift exactly as one does.

    Args:
        rad: Largest shift in samples.
        seed: Integer seed of the shift stream (None: drawn from NumPy's
            global RNG, so ``keras.utils.set_random_seed`` fixes it; the drawn
            value is stored in the config).

    Input/output shape: ``(batch, samples, channels)`` with ``samples > rad``.
    """

    def __init__(self, rad=2, seed=None, **kwargs):
        super().__init__(**kwargs)
        if int(rad) < 0:
            raise ValueError(f"PhaseShuffle rad must be >= 0, got {rad}")
        self.rad = int(rad)
        self.seed = int(np.random.randint(2 ** 31 - 1)) if seed is None else int(seed)
        # Created here (not in build) so it exists under the creator's strategy scope.
        self.draws = self.add_weight(name="draws", shape=(), dtype="int32", trainable=False,
                                     initializer="zeros", aggregation="only_first_replica")
        self.built = True

    def call(self, inputs, training=False):
        if self.rad == 0 or not training:
            return inputs
        context = tf.distribute.get_replica_context()
        replicas = 1 if context is None else context.num_replicas_in_sync
        batch, samples = ops.shape(inputs)[0], ops.shape(inputs)[1]
        seed = tf.stack([tf.constant(self.seed, tf.int32), tf.identity(self.draws.value)])
        shifts = tf.random.stateless_uniform((batch * replicas,), seed, minval=-self.rad,
                                             maxval=self.rad + 1, dtype=tf.int32)
        if replicas > 1:
            shifts = shifts[context.replica_id_in_sync_group::replicas]
        with tf.control_dependencies([shifts]):
            self.draws.assign_add(1)
        padded = ops.pad(inputs, ((0, 0), (self.rad, self.rad), (0, 0)), mode="reflect")
        # y[t] = padded[t + rad - n] = x[t - n]
        index = ops.arange(samples, dtype="int32")[None, :] + self.rad - shifts[:, None]  # (B, L)
        return ops.take_along_axis(padded, index[:, :, None], axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rad=self.rad, seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PreEmphasis(keras.layers.Layer):
    """First-order pre-emphasis ``y[t] = x[t] - coef * x[t - 1]`` (``x[-1] = x[0]``).

    Its gain is ``|1 - coef * exp(-i w)|``: ``1 - coef`` at DC and ``1 + coef``
    at Nyquist, so it lifts a clip's top octave against its bass, as
    ``librosa.effects.preemphasis`` does. In front of a critic it makes a
    quiet top octave count for more; the critic's penalty still acts on the
    waveform before it.

    Args:
        coef: The filter's coefficient, in [0, 1) (0 = identity).

    Input/output shape: ``(batch, samples, channels)``.

    Notebook: chapters/05_training_on_gpu.ipynb
    """

    def __init__(self, coef=0.95, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(coef) < 1.0:
            raise ValueError(f"PreEmphasis coef must be in [0, 1), got {coef}")
        self.coef = float(coef)
        self.built = True

    def call(self, inputs):
        previous = ops.concatenate([inputs[:, :1], inputs[:, :-1]], axis=1)
        return inputs - ops.cast(self.coef, inputs.dtype) * previous

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(coef=self.coef)
        return config


def log_power_spectrogram(x, fft_length, floor=1e-4):
    """``log10(|STFT(x)|^2 + floor)``: Hann frames of ``fft_length``, hop a
    quarter frame, no padding (what :class:`LogSpectrogram` computes).

    Args:
        x: Audio ``(batch, samples, 1)``, ``samples >= fft_length``.
        fft_length: Frame and FFT length, a power of 2 >= 4.
        floor: Power added before the log (keeps it and its gradient finite).

    Returns:
        ``(batch, 1 + (samples - fft_length) // (fft_length // 4), fft_length // 2 + 1)``.
    """
    real, imag = ops.stft(ops.squeeze(x, -1), fft_length, fft_length // 4, fft_length,
                          window="hann", center=False)
    power = real * real + imag * imag + ops.cast(floor, real.dtype)
    return ops.log(power) / ops.cast(np.log(10.0), real.dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LogSpectrogram(keras.layers.Layer):
    """Log power spectrogram ``log10(|STFT|^2 + floor)`` of a mono waveform.

    Hann frames of ``fft_length`` samples, hop ``fft_length // 4``, no
    padding. In front of a convolution over frames (bins as channels) it lets
    a critic compare partials across the whole band at once, which a stack of
    short waveform convolutions sees only through many layers. Differentiable
    twice (the gradient penalty flows through it); ``floor`` keeps the log
    and its gradients finite on silence.

    Args:
        fft_length: Frame and FFT length in samples, a power of 2 >= 4.
        floor: Power added before the log (0.1 RMS audio peaks near 1e2 at 512).

    Input shape ``(batch, samples, 1)``, ``samples >= fft_length``; output
    ``(batch, 1 + (samples - fft_length) // hop, fft_length // 2 + 1)``.

    Notebook: chapters/05_training_on_gpu.ipynb
    """

    def __init__(self, fft_length=512, floor=1e-4, **kwargs):
        super().__init__(**kwargs)
        fft_length = int(fft_length)
        if not is_fft_length(fft_length):
            raise ValueError(f"LogSpectrogram fft_length must be a power of 2 >= 4, "
                             f"got {fft_length}")
        if not float(floor) > 0:
            raise ValueError(f"LogSpectrogram floor must be > 0, got {floor}")
        self.fft_length, self.floor = fft_length, float(floor)
        self.built = True

    def call(self, inputs):
        return log_power_spectrogram(inputs, self.fft_length, self.floor)

    def compute_output_shape(self, input_shape):
        batch, samples = input_shape[0], input_shape[1]
        frames = None if samples is None else 1 + (samples - self.fft_length) // (
            self.fft_length // 4)
        return (batch, frames, self.fft_length // 2 + 1)

    def get_config(self):
        config = super().get_config()
        config.update(fft_length=self.fft_length, floor=self.floor)
        return config


# ---------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package=_PACKAGE)
class ReportActivation(keras.layers.Layer):
    """The report's activation ``f(x) = tanh(x) + x / alpha``.

    Near 0 it has slope ``1 + 1/alpha``; for large ``|x|`` the tanh saturates
    and the slope falls to ``1/alpha``: a larger alpha bounds the output more
    softly. Its derivative is ``1 - tanh(x)**2 + 1/alpha`` (never 0, unlike tanh).

    Args:
        alpha: Positive constant; the report uses larger values at finer scales
            and for the critic output.

    Input/output shape: any.
    """

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        if not float(alpha) > 0:
            raise ValueError(f"ReportActivation alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def call(self, inputs):
        return ops.tanh(inputs) + inputs * (1.0 / self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha)
        return config


def make_activation(name, alpha=1.0, layer_name=None):
    """Build a hidden/output activation layer by name (for ablations).

    Args:
        name: ``"report"`` (``tanh(x) + x/alpha``), ``"leaky"`` (LeakyReLU
            with slope 0.2, as PGGAN), ``"linear"`` or ``"tanh"``.
        alpha: The report activation's constant (ignored by the others).
        layer_name: Optional Keras name of the layer.

    Returns:
        A ``keras.layers.Layer``.

    Notebook: chapters/04_activation_and_loss.ipynb
    """
    kwargs = {} if layer_name is None else {"name": layer_name}
    if name == "report":
        return ReportActivation(alpha, **kwargs)
    if name == "leaky":
        return keras.layers.LeakyReLU(negative_slope=0.2, **kwargs)
    if name == "linear":
        return keras.layers.Activation("linear", **kwargs)
    if name == "tanh":
        return keras.layers.Activation("tanh", **kwargs)
    raise ValueError(f"make_activation name must be one of {ACTIVATION_NAMES}, got {name!r}")


# ---------------------------------------------------------------------------
# Differentiable augmentation (DiffAugment for audio)
# ---------------------------------------------------------------------------

#: Names accepted by :func:`augment_audio`, in the order they are applied.
AUGMENT_NAMES = ("gain", "polarity", "shift", "cutout", "noise")
#: Strengths: gain in +-6 dB, shift up to 1/8 of the window (zero filled), a
#: cut-out (silenced) segment of 1/4 of the window, noise at -40 dBFS RMS.
AUGMENT_GAIN_DB = 6.0
AUGMENT_SHIFT_FRACTION = 0.125
AUGMENT_CUTOUT_FRACTION = 0.25
AUGMENT_NOISE_STD = 0.01
#: Uniform numbers each augmented example needs (gain, polarity, shift, cutout).
AUGMENT_UNIFORMS = 4


def check_augment(policy) -> tuple:
    """Validate an augmentation policy: a sequence of :data:`AUGMENT_NAMES`.

    Returns:
        The policy as a tuple.

    Raises:
        ValueError: An unknown name (the message lists the valid ones).
    """
    policy = tuple(policy or ())
    unknown = [name for name in policy if name not in AUGMENT_NAMES]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown}; choose from {AUGMENT_NAMES}")
    return policy


def augment_audio(x, uniforms, noise=None, policy=AUGMENT_NAMES):
    """Randomly transform a batch of audio, differentiably (DiffAugment).

    Applied alike to real and generated audio in both players' steps, so the
    critic cannot tell them apart by the transformation and the generator is
    not pushed to make augmented-looking audio (Zhao et al., 2020). Every
    transformation is a gather or a product with the input, so gradients
    flow back to the generator.

    Args:
        x: ``(batch, samples, channels)`` audio.
        uniforms: ``(batch, AUGMENT_UNIFORMS)`` numbers in [0, 1): gain,
            polarity, shift and cutout position of each example.
        noise: ``(batch, samples, channels)`` standard normal noise (needed
            when the policy has ``"noise"``).
        policy: Names from :data:`AUGMENT_NAMES`.

    Returns:
        Augmented audio, same shape and dtype as ``x``.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    policy = check_augment(policy)
    samples = ops.shape(x)[1]
    u = ops.cast(uniforms, "float32")  # factors in float32, cast to x's dtype (mixed precision)
    if "gain" in policy:
        gain = ops.power(10.0, (2.0 * u[:, 0] - 1.0) * (AUGMENT_GAIN_DB / 20.0))
        x = x * ops.cast(gain, x.dtype)[:, None, None]
    if "polarity" in policy:
        x = x * ops.cast(ops.where(u[:, 1] < 0.5, -1.0, 1.0), x.dtype)[:, None, None]
    time = ops.arange(samples)
    if "shift" in policy:
        limit = int(round(AUGMENT_SHIFT_FRACTION * samples))
        shift = ops.cast(ops.round((2.0 * u[:, 2] - 1.0) * limit), "int32")
        source = time[None, :] - shift[:, None]
        valid = ops.cast((source >= 0) & (source < samples), x.dtype)
        x = tf.gather(x, ops.clip(source, 0, samples - 1), batch_dims=1) * valid[..., None]
    if "cutout" in policy:
        width = int(round(AUGMENT_CUTOUT_FRACTION * samples))
        start = ops.cast(ops.floor(u[:, 3] * (samples - width + 1)), "int32")[:, None]
        keep = (time[None, :] < start) | (time[None, :] >= start + width)
        x = x * ops.cast(keep, x.dtype)[..., None]
    if "noise" in policy:
        x = x + AUGMENT_NOISE_STD * ops.cast(noise, x.dtype)
    return x
