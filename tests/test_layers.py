"""Tests of pggan_lib.layers: shapes, values, anti-aliasing and .keras round-trips."""

import math
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from pggan_lib import layers as L

RNG = np.random.default_rng(0)


def _np_conv_same(x, kernel):
    """Reference 'same' cross-correlation: x (B, T, Ci), kernel (K, Ci, Co)."""
    k = kernel.shape[0]
    left = (k - 1) // 2
    padded = np.pad(x, ((0, 0), (left, k - 1 - left), (0, 0)))
    out = np.zeros((x.shape[0], x.shape[1], kernel.shape[2]), np.float64)
    for t in range(x.shape[1]):
        out[:, t] = np.einsum("bkc,kco->bo", padded[:, t:t + k], kernel)
    return out


def _roundtrip(model, inputs, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    return np.asarray(model(inputs)), np.asarray(loaded(inputs)), loaded


# ----------------------------------------------------------------- equalised LR

def test_equalized_conv_stores_unit_normal_and_scales_at_run_time():
    layer = L.EqualizedConv1D(64, 9)
    x = RNG.standard_normal((2, 20, 32)).astype("float32")
    y = np.asarray(layer(x))
    assert y.shape == (2, 20, 64)
    kernel = np.asarray(layer.kernel)
    assert kernel.shape == (9, 32, 64)
    assert abs(kernel.std() - 1.0) < 0.03 and abs(kernel.mean()) < 0.03
    fan_in = 9 * 32
    assert layer.runtime_scale == pytest.approx(math.sqrt(2.0 / fan_in))
    # The effective weights (what the convolution uses) have He's std.
    effective = kernel * layer.runtime_scale
    assert effective.std() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.03)
    np.testing.assert_allclose(y, _np_conv_same(x, effective), atol=1e-4)


def test_equalized_conv_gain_and_bias():
    layer = L.EqualizedConv1D(3, 1, gain=1.0)
    x = RNG.standard_normal((1, 5, 4)).astype("float32")
    layer(x)
    layer.bias.assign(np.array([1.0, 2.0, 3.0], "float32"))
    expected = x @ (np.asarray(layer.kernel)[0] / 2.0) + np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-5)


def test_equalized_conv_init_std_sets_the_stored_kernel_and_is_checked(tmp_path):
    x = RNG.standard_normal((2, 20, 32)).astype("float32")
    half = L.EqualizedConv1D(64, 9, init_std=0.5)
    half(x)
    assert np.asarray(half.kernel).std() == pytest.approx(0.5, rel=0.03)
    zero = L.EqualizedConv1D(4, 1, init_std=0.0)
    assert np.all(np.asarray(zero(x)) == 0.0) and np.all(np.asarray(zero.kernel) == 0.0)
    assert zero.runtime_scale == pytest.approx(math.sqrt(2.0 / 32))  # He's scale kept
    _, _, loaded = _roundtrip(keras.Sequential([keras.Input((20, 32)), zero]), x, tmp_path)
    assert loaded.layers[0].init_std == 0.0
    with pytest.raises(ValueError, match="init_std must be >= 0"):
        L.EqualizedConv1D(4, 1, init_std=-1.0)


def test_equalized_dense_values():
    layer = L.EqualizedDense(6, gain=2.0)
    x = RNG.standard_normal((3, 8)).astype("float32")
    y = np.asarray(layer(x))
    assert y.shape == (3, 6)
    np.testing.assert_allclose(y, x @ np.asarray(layer.kernel) * 2.0 / math.sqrt(8), atol=1e-5)


def test_bad_padding_is_rejected():
    with pytest.raises(ValueError, match="padding"):
        L.EqualizedConv1D(4, 3, padding="causal")


# ----------------------------------------------------------- normalisation/stats

def test_pixel_norm_gives_unit_rms_per_sample():
    x = RNG.standard_normal((2, 7, 16)).astype("float32") * 5
    y = np.asarray(L.PixelNorm()(x))
    np.testing.assert_allclose(np.sqrt((y ** 2).mean(-1)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(y / x, (y / x)[..., :1] * np.ones_like(x), rtol=1e-5)


def test_minibatch_stddev_hand_computed():
    # Batch 4, group 2 -> groups {0, 2} and {1, 3} (PGGAN's strided grouping).
    x = np.array([[[1.0], [2.0]], [[0.0], [0.0]], [[3.0], [6.0]], [[4.0], [0.0]]], "float32")
    y = np.asarray(L.MinibatchStdDev(group_size=2, epsilon=0.0)(x))
    assert y.shape == (4, 2, 2)
    np.testing.assert_allclose(y[..., 0], x[..., 0])
    # group {0,2}: per-entry std |1-3|/2=1, |2-6|/2=2 -> mean 1.5 ; group {1,3}: 2, 0 -> 1.0
    np.testing.assert_allclose(y[:, :, 1], [[1.5, 1.5], [1.0, 1.0], [1.5, 1.5], [1.0, 1.0]],
                               atol=1e-6)


@pytest.mark.parametrize("batch, expected_group", [(3, 3), (6, 3), (2, 2), (8, 4), (5, 1)])
def test_minibatch_stddev_group_for_any_batch(batch, expected_group):
    layer = L.MinibatchStdDev(group_size=4, epsilon=0.0)
    x = RNG.standard_normal((batch, 3, 2)).astype("float32")
    y = np.asarray(layer(x))
    members = batch // expected_group
    grouped = x.reshape(expected_group, members, 3, 2)
    feature = grouped.std(axis=0).mean(axis=(1, 2))
    np.testing.assert_allclose(y[:, 0, 2], np.tile(feature, expected_group), atol=1e-5)
    # Same value when the batch size is unknown at trace time.
    traced = tf.function(layer, input_signature=[tf.TensorSpec((None, 3, 2), tf.float32)])
    np.testing.assert_allclose(np.asarray(traced(x)), y, atol=1e-6)


# ---------------------------------------------------------------------- fade-in

def test_fade_in_limits_and_midpoint():
    old = RNG.standard_normal((2, 5, 1)).astype("float32")
    new = RNG.standard_normal((2, 5, 1)).astype("float32")
    fade = L.FadeIn(initial_alpha=0.0)
    assert not fade.alpha.trainable and fade.trainable_weights == []
    np.testing.assert_allclose(np.asarray(fade([old, new])), old, atol=1e-7)
    fade.set_alpha(1.0)
    np.testing.assert_allclose(np.asarray(fade([old, new])), new, atol=1e-7)
    fade.set_alpha(0.25)
    np.testing.assert_allclose(np.asarray(fade([old, new])), 0.75 * old + 0.25 * new, atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        fade.set_alpha(1.5)


# ------------------------------------------------------------ anti-aliased x2

def _tone(freq_cycles_per_sample, n=2048):
    return np.sin(2 * np.pi * freq_cycles_per_sample * np.arange(n)).astype("float32")


def test_downsample_attenuates_tone_above_new_nyquist_by_40_db():
    down = L.Downsample1D()
    for freq, min_attenuation_db in ((0.30, 40.0), (0.35, 40.0), (0.45, 40.0)):
        y = np.asarray(down(_tone(freq)[None, :, None]))[0, :, 0]
        assert y.shape == (1024,)
        interior = y[64:-64]  # away from the zero-padded edges
        attenuation = -20 * np.log10(np.sqrt(2) * interior.std() + 1e-12)
        assert attenuation >= min_attenuation_db, (freq, attenuation)
    # A tone well below the new Nyquist passes (within 0.1 dB).
    y = np.asarray(down(_tone(0.05)[None, :, None]))[0, 64:-64, 0]
    assert abs(20 * np.log10(np.sqrt(2) * y.std())) < 0.1


def test_upsample_suppresses_the_spectral_image():
    up = L.Upsample1D()
    x = _tone(0.1, 1024)  # 0.1 cycles/input sample -> 0.05 cycles/output sample
    y = np.asarray(up(x[None, :, None]))[0, :, 0]
    assert y.shape == (2048,)
    interior = y[256:-256]
    spectrum = np.abs(np.fft.rfft(interior * np.hanning(len(interior))))
    freqs = np.fft.rfftfreq(len(interior))
    tone = spectrum[np.abs(freqs - 0.05) < 0.005].max()
    image = spectrum[np.abs(freqs - 0.45) < 0.005].max()   # the zero-insertion image
    assert 20 * np.log10(tone / image) >= 40.0
    # Amplitude kept, and the original samples are (nearly) reproduced at even outputs.
    assert abs(np.sqrt(2) * interior.std() - 1.0) < 0.01
    np.testing.assert_allclose(y[256:-256:2], x[128:-128], atol=0.01)


@pytest.mark.parametrize("policy,atol", [("mixed_bfloat16", 0.05), ("mixed_float16", 0.005)])
@pytest.mark.parametrize("layer_class", [L.Upsample1D, L.Downsample1D], ids=["up", "down"])
def test_resampling_under_mixed_precision_matches_float32(layer_class, policy, atol):
    # Under mixed precision the filters get 16-bit floats; they filter in float32
    # (oneDNN's 16-bit depthwise convolutions stall on CPUs) and hand back 16 bits.
    x = np.random.default_rng(0).standard_normal((2, 64, 3)).astype(np.float32)
    reference = np.asarray(layer_class()(x))
    low = layer_class(dtype=policy)(x)
    assert keras.backend.standardize_dtype(low.dtype) == policy.split("_")[1]
    # Error of rounding the input and the output to 16 bits (8 or 11 mantissa bits).
    np.testing.assert_allclose(np.asarray(ops.cast(low, "float32")), reference, atol=atol)


def test_lowpass_filter_rejects_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        L.lowpass_filter(32)
    with pytest.raises(ValueError, match="cutoff"):
        L.lowpass_filter(33, cutoff=0.6)


# ---------------------------------------------------------------- phase shuffle

def test_phase_shuffle_identity_cases():
    x = RNG.standard_normal((3, 10, 2)).astype("float32")
    np.testing.assert_array_equal(np.asarray(L.PhaseShuffle(0)(x, training=True)), x)
    np.testing.assert_array_equal(np.asarray(L.PhaseShuffle(2)(x, training=False)), x)


def test_phase_shuffle_shifts_with_reflect_padding():
    rad = 2
    layer = L.PhaseShuffle(rad, seed=3)
    x = np.arange(2 * 12 * 1, dtype="float32").reshape(2, 12, 1) + 1
    padded = np.pad(x, ((0, 0), (rad, rad), (0, 0)), mode="reflect")
    seen = set()
    for _ in range(30):
        y = np.asarray(layer(x, training=True))
        assert y.shape == x.shape
        for b in range(2):
            matches = [n for n in range(-rad, rad + 1)
                       if np.array_equal(y[b], padded[b, rad - n:rad - n + 12])]
            assert len(matches) == 1
            seen.add(matches[0])
    assert seen == set(range(-rad, rad + 1))


def test_phase_shuffle_stream_is_seeded_and_resumable():
    x = np.arange(4 * 12, dtype="float32").reshape(4, 12, 1)
    first, second = L.PhaseShuffle(2, seed=5), L.PhaseShuffle(2, seed=5)
    outputs = [np.asarray(first(x, training=True)) for _ in range(3)]
    assert int(first.draws.value) == 3                 # one draw per training call
    assert not all(np.array_equal(outputs[0], o) for o in outputs[1:])
    second.draws.assign(2)                            # e.g. restored from a checkpoint
    np.testing.assert_array_equal(np.asarray(second(x, training=True)), outputs[2])


# ---------------------------------------------------------------- pre-emphasis

@pytest.mark.parametrize("cycles", [1, 16, 64, 127])
def test_pre_emphasis_gain_in_db_is_the_first_difference_response(cycles):
    coef, samples = 0.95, 256
    t = np.arange(samples)
    w = 2 * np.pi * cycles / samples
    x = np.sin(w * t).astype("float32")[None, :, None]
    y = np.asarray(L.PreEmphasis(coef)(x))[0, 1:, 0]   # past the first sample
    expected = np.sin(w * t[1:]) - coef * np.sin(w * (t[1:] - 1))
    np.testing.assert_allclose(y, expected, atol=1e-5)
    gain_db = 10 * np.log10(np.mean(y ** 2) / np.mean(x[0, 1:, 0] ** 2))
    analytic_db = 20 * np.log10(abs(1 - coef * np.exp(-1j * w)))
    assert gain_db == pytest.approx(analytic_db, abs=0.1)


def test_pre_emphasis_matches_librosa_and_round_trips(tmp_path):
    import librosa

    x = RNG.standard_normal((3, 100, 1)).astype("float32")
    layer = L.PreEmphasis(0.9)
    y = np.asarray(layer(x))[..., 0]
    np.testing.assert_allclose(y[:, 1:], librosa.effects.preemphasis(x[..., 0], coef=0.9)[:, 1:],
                               atol=1e-6)
    np.testing.assert_allclose(y[:, 0], 0.1 * x[:, 0, 0], atol=1e-7)  # x[-1] taken as x[0]
    np.testing.assert_array_equal(np.asarray(L.PreEmphasis(0.0)(x)), x)
    model = keras.Sequential([keras.Input((100, 1)), layer])
    ours, loaded, restored = _roundtrip(model, x, tmp_path)
    np.testing.assert_array_equal(ours, loaded)
    assert restored.layers[0].coef == 0.9
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"coef must be in \[0, 1\)"):
            L.PreEmphasis(bad)


# ------------------------------------------------------------ log spectrogram

def test_log_spectrogram_matches_librosa_and_finds_a_tone(tmp_path):
    import librosa

    x = RNG.standard_normal((2, 1024, 1)).astype("float32")
    layer = L.LogSpectrogram(256)
    ours = np.asarray(layer(x))
    power = np.abs(librosa.stft(x[..., 0], n_fft=256, hop_length=64, center=False)) ** 2
    np.testing.assert_allclose(ours, np.log10(power + 1e-4).transpose(0, 2, 1), atol=1e-4)
    assert ours.shape == layer.compute_output_shape((2, 1024, 1)) == (2, 13, 129)
    # A tone on bin 32 peaks there in every frame at |X| = A * sum(hann) / 2.
    tone = 0.5 * np.sin(2 * np.pi * 32 / 256 * np.arange(1024)).astype("float32")
    frames = np.asarray(layer(tone[None, :, None]))[0]
    assert (frames.argmax(axis=1) == 32).all()
    np.testing.assert_allclose(frames[:, 32], np.log10((0.5 * 128 / 2) ** 2), atol=1e-3)
    model = keras.Sequential([keras.Input((1024, 1)), layer])
    ours, loaded, restored = _roundtrip(model, x, tmp_path)
    np.testing.assert_array_equal(ours, loaded)
    assert restored.layers[0].fft_length == 256
    for bad in (0, 100, 2):
        with pytest.raises(ValueError, match="fft_length must be a power of 2 >= 4"):
            L.LogSpectrogram(bad)


# ------------------------------------------------------------------ activations

def test_report_activation_values_and_derivative():
    alpha = 4.0
    x = tf.constant(np.linspace(-5, 5, 41, dtype="float32"))
    layer = L.ReportActivation(alpha)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    grad = tape.gradient(y, x).numpy()
    xs = x.numpy()
    np.testing.assert_allclose(y.numpy(), np.tanh(xs) + xs / alpha, atol=1e-6)
    np.testing.assert_allclose(grad, 1 - np.tanh(xs) ** 2 + 1 / alpha, atol=1e-6)
    assert grad.min() >= 1 / alpha - 1e-6  # never zero, unlike tanh
    with pytest.raises(ValueError, match="alpha"):
        L.ReportActivation(0.0)


def test_make_activation_names():
    x = np.array([-2.0, 0.5], "float32")
    np.testing.assert_allclose(np.asarray(L.make_activation("report", 2.0)(x)),
                               np.tanh(x) + x / 2, atol=1e-6)
    np.testing.assert_allclose(np.asarray(L.make_activation("leaky")(x)), [-0.4, 0.5], atol=1e-6)
    np.testing.assert_allclose(np.asarray(L.make_activation("linear")(x)), x)
    np.testing.assert_allclose(np.asarray(L.make_activation("tanh")(x)), np.tanh(x), atol=1e-6)
    with pytest.raises(ValueError, match="make_activation"):
        L.make_activation("relu")


# --------------------------------------------------------------- serialisation

@pytest.mark.parametrize("make_layer, channels", [
    (lambda: L.EqualizedConv1D(4, 3, gain=1.5), 3),
    (lambda: L.PixelNorm(epsilon=1e-6), 3),
    (lambda: L.MinibatchStdDev(group_size=2), 3),
    (lambda: L.Upsample1D(num_taps=9), 3),
    (lambda: L.Downsample1D(num_taps=11), 3),
    (lambda: L.PhaseShuffle(2, seed=1), 3),
    (lambda: L.ReportActivation(3.0), 3),
])
def test_sequence_layers_keras_roundtrip(make_layer, channels, tmp_path):
    model = keras.Sequential([keras.Input((16, channels)), make_layer()])
    x = RNG.standard_normal((4, 16, channels)).astype("float32")
    before, after, loaded = _roundtrip(model, x, tmp_path)
    np.testing.assert_array_equal(before, after)
    assert type(loaded.layers[0]) is type(model.layers[0])
    assert loaded.layers[0].get_config() == model.layers[0].get_config()


def test_dense_and_fade_keras_roundtrip(tmp_path):
    old, new = keras.Input((5,)), keras.Input((5,))
    fade = L.FadeIn(initial_alpha=0.0)
    out = L.EqualizedDense(3)(fade([old, new]))
    model = keras.Model([old, new], out)
    fade.set_alpha(0.3)
    inputs = [RNG.standard_normal((2, 5)).astype("float32") for _ in range(2)]
    before, after, loaded = _roundtrip(model, inputs, tmp_path)
    np.testing.assert_array_equal(before, after)
    loaded_fade = [layer for layer in loaded.layers if isinstance(layer, L.FadeIn)][0]
    assert float(loaded_fade.alpha) == pytest.approx(0.3)
