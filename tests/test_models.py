"""Tests of pggan_lib.models on a tiny 3-scale spec (64 samples, 8 channels)."""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import pytest
import tensorflow as tf

from pggan_lib import layers as L
from pggan_lib import models as M

RNG = np.random.default_rng(0)
TINY = dict(num_scales=3, clip_samples=64, latent_dim=8, channels=(8, 8, 8), kernel_size=3)


@pytest.fixture(scope="module")
def tiny():
    spec = M.ModelSpec(**TINY)
    return spec, M.build_generator(spec), M.build_critic(spec)


def _z(batch=4, dim=8):
    return RNG.standard_normal((batch, dim)).astype("float32")


# ------------------------------------------------------------------------ spec

def test_spec_defaults_json_roundtrip_and_samples():
    spec = M.ModelSpec()
    assert spec.channels == (128,) * 7
    assert [spec.samples_at_scale(k) for k in range(7)] == [256 * 2 ** k for k in range(7)]
    alphas = spec.activation_alphas
    assert all(a < b for a, b in zip(alphas, alphas[1:]))  # larger alpha at finer scales
    assert spec.critic_output_alpha > max(alphas)
    restored = M.ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert restored == spec


@pytest.mark.parametrize("bad, message", [
    (dict(clip_samples=90), "divisible"),
    (dict(channels=(8, 8)), "channels"),
    (dict(activation="relu"), "activation"),
    (dict(activation_alphas=(1.0,)), "activation_alphas"),
    (dict(upsample="nearest"), "upsample must be one of"),
])
def test_spec_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        M.ModelSpec(**{**TINY, **bad})
    with pytest.raises(ValueError, match="unknown"):
        M.ModelSpec.from_dict({"num_scales": 3, "wrong": 1})


# --------------------------------------------------------------- every scale

def test_shapes_at_every_scale_and_stable_variables(tiny):
    spec, gen, critic = tiny
    n_gen, n_critic = len(gen.variables), len(critic.variables)
    z = _z(5)
    for k in range(spec.num_scales):
        gen.set_scale(k)
        critic.set_scale(k)
        audio = gen(z)
        assert audio.shape == (5, spec.samples_at_scale(k), 1)
        assert critic(audio).shape == (5, 1)
        assert critic(audio, training=True).shape == (5, 1)
        assert gen.current_scale == k and critic.current_scale == k
    assert len(gen.variables) == n_gen and len(critic.variables) == n_critic
    with pytest.raises(ValueError, match="set_scale"):
        gen.set_scale(3)


def test_generator_fade_at_alpha_zero_is_previous_scale_upsampled(tiny):
    spec, gen, _ = tiny
    z = _z()
    for k in range(1, spec.num_scales):
        gen.set_scale(k - 1)
        previous = gen(z)
        gen.set_scale(k)
        gen.set_alpha(0.0)
        faded = np.asarray(gen(z))
        np.testing.assert_allclose(faded, np.asarray(L.Upsample1D()(previous)), atol=1e-5)
        gen.set_alpha(1.0)
        assert not np.allclose(np.asarray(gen(z)), faded)
    gen.set_alpha(1.0)


@pytest.fixture(scope="module")
def tiny_skips():
    spec = M.ModelSpec(**TINY, output_skips=True)
    return spec, M.build_generator(spec)


def test_skip_generator_output_is_the_sum_of_upsampled_scale_outputs(tiny_skips):
    spec, gen = tiny_skips
    z = _z()
    up = L.Upsample1D()
    for k in range(1, spec.num_scales):
        gen.set_scale(k - 1)
        previous = np.asarray(gen(z))
        gen.set_scale(k)
        gen.set_alpha(0.0)  # no new detail yet: the coarser output, upsampled
        np.testing.assert_allclose(np.asarray(gen(z)), np.asarray(up(previous)), atol=1e-5)
        gen.set_alpha(1.0)
        full = np.asarray(gen(z))
        gen.set_alpha(0.25)  # the fade scales the new detail linearly
        quarter = np.asarray(gen(z))
        np.testing.assert_allclose(quarter - np.asarray(up(previous)),
                                   0.25 * (full - np.asarray(up(previous))), atol=1e-5)
        gen.set_alpha(1.0)
        # After the fade the coarse output is still in the fine one (PGGAN drops it):
        # zeroing this scale's own head leaves exactly the upsampled coarser output.
        kernel = gen.to_wave[k].weights[0]
        saved = np.asarray(kernel)
        kernel.assign(np.zeros_like(saved))
        np.testing.assert_allclose(np.asarray(gen(z)), np.asarray(up(previous)), atol=1e-5)
        kernel.assign(saved)


def test_skip_generator_trains_every_head_and_round_trips(tiny_skips, tmp_path):
    spec, gen = tiny_skips
    top = spec.num_scales - 1
    gen.set_scale(top)
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(gen(_z()) ** 2)
    grads = tape.gradient(out, gen.trainable_variables)
    used = {id(v) for v, g in zip(gen.trainable_variables, grads) if g is not None}
    assert used == {id(v) for v in gen.variables_for_scale(top)}
    assert all(id(head.weights[0]) in used for head in gen.to_wave)
    gen.save(tmp_path / "g.keras")
    restored = keras.saving.load_model(tmp_path / "g.keras", safe_mode=True)
    assert restored.spec.output_skips
    z = _z()
    np.testing.assert_array_equal(np.asarray(restored(z)), np.asarray(gen(z)))


def test_silent_heads_start_at_zero_and_learn_from_the_first_step():
    spec = M.ModelSpec(**TINY, output_skips=True, silent_heads=True)
    gen = M.build_generator(spec)
    z = _z()
    for k in range(spec.num_scales):
        gen.set_scale(k)
        np.testing.assert_array_equal(np.asarray(gen(z)), 0.0)
    target = tf.constant(RNG.standard_normal((4, spec.clip_samples, 1)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((gen(z) - target) ** 2)
    heads = [head.weights[0] for head in gen.to_wave]
    grads = tape.gradient(loss, heads)
    # Zero heads stop no gradient from reaching their own kernels.
    assert all(float(tf.reduce_max(tf.abs(g))) > 1e-3 for g in grads)
    for head, grad in zip(heads, grads):
        head.assign_sub(0.1 * grad)
    with tf.GradientTape() as tape:
        after = tf.reduce_mean((gen(z) - target) ** 2)
    assert float(after) < float(loss)


def test_silent_heads_are_saved_and_old_specs_keep_he_heads(tmp_path):
    spec = M.ModelSpec(**TINY, output_skips=True, silent_heads=True)
    gen = M.build_generator(spec)
    gen.save(tmp_path / "g.keras")
    restored = keras.saving.load_model(tmp_path / "g.keras", safe_mode=True)
    assert restored.spec.silent_heads and restored.to_wave[0].init_std == 0.0
    old = {k: v for k, v in M.ModelSpec(**TINY).to_dict().items() if k != "silent_heads"}
    he = M.build_generator(M.ModelSpec.from_dict(old))
    assert float(np.std(np.asarray(he.to_wave[0].weights[0]))) > 0.3


def test_head_std_scales_the_untrained_output_and_is_checked(tmp_path):
    z = _z()
    outputs = {}
    for std in (1.0, 0.1):
        keras.utils.set_random_seed(7)  # the same draws: only the heads' std differs
        gen = M.build_generator(M.ModelSpec(**TINY, output_skips=True, head_std=std))
        gen.set_scale(2)
        outputs[std] = np.asarray(gen(z))
    # The skip output is linear in the heads' kernels: 0.1 x the kernels, 0.1 x the audio.
    np.testing.assert_allclose(outputs[0.1], 0.1 * outputs[1.0], rtol=1e-4, atol=1e-7)
    assert float(np.std(outputs[1.0])) > 0.1
    gen.save(tmp_path / "g.keras")
    restored = keras.saving.load_model(tmp_path / "g.keras", safe_mode=True)
    assert restored.spec.head_std == 0.1 and restored.to_wave[2].init_std == 0.1
    silent = M.build_generator(M.ModelSpec(**TINY, silent_heads=True, head_std=0.1))
    assert all(head.init_std == 0.0 for head in silent.to_wave)  # silent wins
    with pytest.raises(ValueError, match="ModelSpec.head_std must be >= 0, got -1"):
        M.ModelSpec(**TINY, head_std=-1.0)


def test_trace_of_the_newest_block_ends_in_the_generator_output(tiny):
    spec, gen, _ = tiny
    z = _z()
    for scale in range(spec.num_scales):
        gen.set_scale(scale)
        trace = gen.trace_newest_block(z)
        assert [name for name, _ in trace] == ([layer.name for layer in gen.blocks[scale]]
                                               + [f"to_wave{scale}"])
        assert trace[-1][1].shape == (4, spec.samples_at_scale(scale), 1)
        np.testing.assert_allclose(trace[-1][1], np.asarray(gen(z)), atol=1e-5)


def test_critic_emphasis_filters_each_from_waveform_input_at_its_scale(tmp_path):
    x = RNG.standard_normal((4, TINY["clip_samples"], 1)).astype("float32")
    keras.utils.set_random_seed(3)
    plain = M.build_critic(M.ModelSpec(**TINY))
    keras.utils.set_random_seed(3)  # the same weights; only the filter differs
    heard = M.build_critic(M.ModelSpec(**TINY, critic_emphasis=0.95))
    emphasis = L.PreEmphasis(0.95)
    for scale in range(3):
        low = x
        for _ in range(2 - scale):
            low = np.asarray(L.Downsample1D()(low))
        plain.set_scale(scale)
        heard.set_scale(scale)
        np.testing.assert_allclose(np.asarray(heard(low)),
                                   np.asarray(plain(np.asarray(emphasis(low)))), atol=1e-5)
    # Fading in, the previous scale's path filters the downsampled clip at its own rate.
    _assert_fade_at_zero_is_previous_scale(heard, x)
    heard.save(tmp_path / "d.keras")
    assert keras.saving.load_model(tmp_path / "d.keras").spec.critic_emphasis == 0.95
    with pytest.raises(ValueError, match=r"critic_emphasis must be in \[0, 1\)"):
        M.ModelSpec(**TINY, critic_emphasis=1.0)
    with pytest.raises(ValueError, match="progressive critic only"):
        M.ModelSpec(**TINY, critic_emphasis=0.5, architecture="wavegan")


def test_critic_spectrum_branch_adds_a_faded_score_through_the_penalty(tmp_path):
    from pggan_lib import losses

    x = RNG.standard_normal((4, TINY["clip_samples"], 1)).astype("float32")
    plain = M.build_critic(M.ModelSpec(**TINY), scale=2)
    heard = M.build_critic(M.ModelSpec(**TINY, critic_spectrum=16), scale=2)
    weights = {v.path: v for v in heard.weights}
    for variable in plain.weights:  # the same waveform path in both
        weights[variable.path].assign(variable)
    assert [layer.fft_length for layer in (b[0] for b in heard.spectrum)] == [4, 8, 16]
    assert any("spectrum1" in v.path for v in heard.variables_for_scale(2))
    assert not np.allclose(np.asarray(heard(x)), np.asarray(plain(x)), atol=1e-4)
    # Fading in, the previous scale's branch hears the downsampled clip.
    _assert_fade_at_zero_is_previous_scale(heard, x)
    # The penalty's gradient reaches the branch (double backprop through the FFT).
    branch = [v for v in heard.trainable_weights if v.path == "spectrum2_conv1/kernel"]
    with tf.GradientTape() as tape:
        penalty = losses.gradient_penalty(heard, x, 0.5 * x, seed=1)
    grad = np.asarray(tape.gradient(penalty, branch)[0])
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0
    heard.save(tmp_path / "d.keras")
    loaded = keras.saving.load_model(tmp_path / "d.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(heard(x)), atol=1e-6)
    # With its output weights at zero the branch adds nothing.
    for k in range(3):
        for v in heard.spectrum[k][-1].weights:
            v.assign(np.zeros(v.shape, "float32"))
    np.testing.assert_allclose(np.asarray(heard(x)), np.asarray(plain(x)), atol=1e-6)
    for bad, message in ((12, "power of 2 >= 4"), (2, "power of 2 >= 4")):
        with pytest.raises(ValueError, match=message):
            M.ModelSpec(**TINY, critic_spectrum=bad)
    with pytest.raises(ValueError, match="progressive critic only"):
        M.ModelSpec(**TINY, critic_spectrum=16, architecture="wavegan")


def _assert_fade_at_zero_is_previous_scale(critic, x):
    """At alpha 0 the finest scale's critic scores ``x`` as the scale below scores
    ``x`` downsampled (each path at its own rate)."""
    top = critic.spec.num_scales - 1
    critic.set_scale(top - 1)
    expected = np.asarray(critic(L.Downsample1D()(x)))
    critic.set_scale(top)
    critic.set_alpha(0.0)
    np.testing.assert_allclose(np.asarray(critic(x)), expected, atol=1e-5)
    critic.set_alpha(1.0)


def test_critic_fade_at_alpha_zero_is_previous_scale_on_downsampled_input(tiny):
    spec, _, critic = tiny
    _assert_fade_at_zero_is_previous_scale(
        critic, RNG.standard_normal((4, spec.clip_samples, 1)).astype("float32"))


@pytest.mark.parametrize("which", ["generator", "critic"])
def test_variables_for_scale_are_exactly_those_with_gradients(tiny, which):
    spec, gen, critic = tiny
    model = gen if which == "generator" else critic
    for k in range(spec.num_scales):
        model.set_scale(k)
        model.set_alpha(0.5)  # both fade paths active
        inputs = _z() if which == "generator" else RNG.standard_normal(
            (4, spec.samples_at_scale(k), 1)).astype("float32")
        with tf.GradientTape() as tape:
            out = tf.reduce_sum(model(inputs) ** 2)
        grads = tape.gradient(out, model.trainable_variables)
        used = {id(v) for v, g in zip(model.trainable_variables, grads) if g is not None}
        assert used == {id(v) for v in model.variables_for_scale(k)}
        assert M.count_params_at_scale(model, k) == sum(
            int(np.prod(v.shape)) for v in model.variables_for_scale(k))
    model.set_alpha(1.0)
    counts = [model.count_params_at_scale(k) for k in range(spec.num_scales)]
    assert counts == sorted(counts) and counts[-1] <= model.count_params()


def test_keras_roundtrip_keeps_scale_alpha_and_outputs(tiny, tmp_path):
    spec, gen, critic = tiny
    gen.set_scale(1)
    gen.set_alpha(0.3)
    critic.set_scale(1)
    critic.set_alpha(0.7)
    z = _z()
    x = np.asarray(gen(z))
    gen.save(tmp_path / "g.keras")
    critic.save(tmp_path / "d.keras")
    gen2 = keras.saving.load_model(tmp_path / "g.keras", safe_mode=True)
    critic2 = keras.saving.load_model(tmp_path / "d.keras", safe_mode=True)
    assert isinstance(gen2, M.ProgressiveGenerator) and gen2.spec == spec
    assert gen2.current_scale == 1 and critic2.current_scale == 1
    assert float(gen2.fade_alpha) == pytest.approx(0.3)
    assert float(critic2.fade_alpha) == pytest.approx(0.7)
    np.testing.assert_array_equal(np.asarray(gen2(z)), x)
    np.testing.assert_array_equal(np.asarray(critic2(x)), np.asarray(critic(x)))
    gen.set_alpha(1.0)
    critic.set_alpha(1.0)


def test_conditional_models():
    spec = M.ModelSpec(**TINY, num_classes=3)
    gen, critic = M.build_generator(spec, scale=2), M.build_critic(spec, scale=2)
    z = _z(6)
    labels = np.array([0, 1, 2, 0, 1, 2], "int32")
    audio = gen([z, labels])
    assert audio.shape == (6, 64, 1)
    assert critic([audio, labels]).shape == (6, 1)
    # The label changes the output for the same z.
    other = gen([z, (labels + 1) % 3])
    assert not np.allclose(np.asarray(audio), np.asarray(other))
    with pytest.raises(ValueError, match="conditional"):
        gen(z)
    with pytest.raises(ValueError, match="unconditional"):
        M.build_generator(M.ModelSpec(**TINY))([z, labels])


def test_critic_accepts_batch_not_divisible_by_group():
    spec = M.ModelSpec(**TINY, minibatch_group_size=4)
    critic = M.build_critic(spec, scale=2)
    x = RNG.standard_normal((3, 64, 1)).astype("float32")
    assert critic(x).shape == (3, 1)


# ---------------------------------------------------------------- FLOP counts

def test_count_flops_hand_computed_scale_zero_and_growth():
    spec = M.ModelSpec(**TINY)
    flops = M.count_flops(spec, 0)
    length, c, k = 16, 8, 3
    generator = 2 * 8 * length * c + 2 * length * k * c * c + 2 * length * c
    critic = 2 * length * c + 2 * length * k * (c + 1) * c + 2 * length * c * c + 2 * c
    assert flops == {"generator": generator, "critic": critic}
    totals = [sum(M.count_flops(spec, s).values()) for s in range(3)]
    assert totals[0] < totals[1] < totals[2]
    # The finest default scale: two 9-tap 128x128 convolutions over 16384 samples dominate.
    big = M.count_flops(M.ModelSpec(), 6)["generator"]
    assert big > 2 * 2 * 16384 * 9 * 128 * 128


# ---------------------------------------------------------------- sub-pixel

def _new_octave_share_db(upsample):
    """Power above the old Nyquist after block 2's first convolution, in dB of the
    total, for white-noise features at the lower rate (8 examples x 256 samples)."""
    spec = M.ModelSpec(**{**TINY, "clip_samples": 512, "upsample": upsample})
    gen = M.build_generator(spec)
    h = RNG.standard_normal((8, 256, 8)).astype("float32")
    for layer in gen.blocks[2][:2]:  # FIR upsample + conv1, or conv1 + interleave
        h = layer(h)
    power = np.abs(np.fft.rfft(np.asarray(h), axis=1)) ** 2  # (8, 257, channels)
    return 10 * np.log10(power[:, 129:].sum() / power.sum()), tuple(h.shape)


def test_subpixel_upsampling_fills_the_new_octave_that_fir_leaves_empty():
    fir_db, fir_shape = _new_octave_share_db("fir")
    subpixel_db, subpixel_shape = _new_octave_share_db("subpixel")
    assert fir_shape == subpixel_shape == (8, 512, 8)
    assert fir_db < -25.0  # the anti-aliasing filter (its transition band included)
    assert subpixel_db > -6.0  # random interleaved phases: about half the power


def test_subpixel_generator_roundtrip_and_flops(tmp_path):
    spec = M.ModelSpec(**TINY, upsample="subpixel")
    gen = M.build_generator(spec, scale=2)
    assert not any(isinstance(layer, L.Upsample1D) for block in gen.blocks for layer in block)
    z = _z()
    gen.save(tmp_path / "g.keras")
    restored = keras.saving.load_model(tmp_path / "g.keras", safe_mode=True)
    assert restored.spec.upsample == "subpixel"
    np.testing.assert_array_equal(np.asarray(restored(z)), np.asarray(gen(z)))
    # The same convolution cost (2c outputs at half the rate), no FIR filter.
    fir = M.count_flops(M.ModelSpec(**TINY), 2)["generator"]
    taps, c = spec.fir_taps, 8
    assert M.count_flops(spec, 2)["generator"] == fir - sum(
        2 * spec.samples_at_scale(k) * taps * c // 2 for k in (1, 2))


# -------------------------------------------------------------------- WaveGAN

def test_wavegan_baseline_shapes_and_roundtrip(tmp_path):
    spec = M.ModelSpec(**TINY)
    gen, critic = M.build_wavegan_generator(spec), M.build_wavegan_critic(spec)
    z = _z(4)
    audio = np.asarray(gen(z))
    assert audio.shape == (4, 64, 1) and np.abs(audio).max() <= 1.0
    score = np.asarray(critic(audio))
    assert score.shape == (4, 1)
    assert any(isinstance(layer, L.PhaseShuffle) for layer in critic.layers)
    critic.save(tmp_path / "wd.keras")
    loaded = keras.saving.load_model(tmp_path / "wd.keras", safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded(audio)), score)

    cond = M.ModelSpec(**TINY, num_classes=2)
    labels = np.array([0, 1, 1, 0], "int32")
    cond_audio = np.asarray(M.build_wavegan_generator(cond)([z, labels]))
    assert cond_audio.shape == (4, 64, 1)
    assert M.build_wavegan_critic(cond)([cond_audio, labels]).shape == (4, 1)


def test_wavegan_players_behind_the_progressive_interface(tmp_path):
    spec = M.ModelSpec(**TINY, architecture="wavegan")
    gen, critic = M.WaveGANGenerator(spec), M.WaveGANCritic(spec)
    assert gen.first_scale == critic.first_scale == gen.current_scale == 2
    assert M.build_generator(M.ModelSpec(**TINY)).first_scale == 0
    with pytest.raises(ValueError, match="only the finest scale"):
        gen.set_scale(1)
    # The wrapper is build_wavegan_*'s network: same weights, same outputs.
    plain = M.build_wavegan_generator(spec)
    plain.set_weights(gen.network.get_weights())
    z = _z(4)
    audio = np.asarray(gen(z))
    np.testing.assert_array_equal(audio, np.asarray(plain(z)))
    assert audio.shape == (4, 64, 1) and critic(audio).shape == (4, 1)
    # All of its weights train at its one scale.
    assert {id(v) for v in gen.variables_for_scale()} == {
        id(v) for v in gen.network.trainable_weights}
    gen.save(tmp_path / "g.keras")
    loaded = keras.saving.load_model(tmp_path / "g.keras", safe_mode=True)
    assert isinstance(loaded, M.WaveGANGenerator) and loaded.spec == spec
    np.testing.assert_array_equal(np.asarray(loaded(z)), audio)
    with pytest.raises(ValueError, match="architecture"):
        M.ModelSpec(**TINY, architecture="stylegan")
