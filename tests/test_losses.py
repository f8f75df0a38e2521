"""Tests of pggan_lib.losses against hand-computed and analytic values."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import pytest
import tensorflow as tf

from pggan_lib import losses as Lo
from pggan_lib import models as M

RNG = np.random.default_rng(0)


def _col(values):
    return tf.constant(np.asarray(values, "float32").reshape(-1, 1))


# ------------------------------------------------------------ log-spectrum gap

def _tone_and_noise(samples=256, bin_index=8, fft_length=64):
    t = np.arange(samples)
    tone = 0.1 * np.sin(2 * np.pi * bin_index / fft_length * t)
    noise = RNG.standard_normal((3, samples))
    return (np.broadcast_to(tone, (3, samples))[..., None].astype("float32"),
            noise[..., None].astype("float32"))


def test_log_spectrum_gap_of_a_gain_is_analytic():
    _, noise = _tone_and_noise()
    real = 0.1 * noise
    assert float(Lo.log_spectrum_gap(real, real, 64)) == 0.0
    for gain in (2.0, 0.1):
        gap = float(Lo.log_spectrum_gap(real, gain * real, 64, floor=1e-12))
        assert gap == pytest.approx((2 * np.log10(gain)) ** 2, rel=1e-3)


def test_log_spectrum_gap_sees_a_noise_floor_and_its_gradient_lowers_it():
    tone, noise = _tone_and_noise()
    hiss = 1e-3 * noise  # -40 dB under the tone: 1e-4 of its power
    fake = tf.Variable(tone + hiss)
    with tf.GradientTape() as tape:
        gap = Lo.log_spectrum_gap(tone, fake, 64)
    grad = tape.gradient(gap, fake).numpy()
    # Between the partials the floor rises by decades: the gap is of order 1 bel^2
    # although the hiss changes the waveform by 1 % of its RMS.
    assert float(gap) > 0.5
    assert float(np.sum(grad * hiss)) > 0  # descending the gradient removes the hiss
    stepped = tone + hiss - 0.2 * float(gap) / np.sum(grad ** 2) * grad
    assert float(Lo.log_spectrum_gap(tone, stepped, 64)) < float(gap)


# ------------------------------------------------------------ gradient penalty

def test_gradient_penalty_of_linear_critic_is_analytic():
    w = RNG.standard_normal((1, 10, 2)).astype("float32") * 0.3
    real = RNG.standard_normal((6, 10, 2)).astype("float32")
    fake = RNG.standard_normal((6, 10, 2)).astype("float32")

    def linear_critic(x):
        return tf.reduce_sum(x * w, axis=(1, 2))[:, None]

    seed = keras.random.SeedGenerator(1)
    penalty = float(Lo.gradient_penalty(linear_critic, real, fake, seed=seed))
    expected = (np.linalg.norm(w) - 1.0) ** 2
    assert penalty == pytest.approx(expected, rel=1e-4)
    # In the critic loss it is weighted by lambda.
    loss = float(Lo.wgan_gp_critic_loss(_col([0.0]), _col([0.0]), penalty, gp_weight=10.0))
    assert loss == pytest.approx(10.0 * expected, rel=1e-4)


def test_r1_penalty_is_half_the_mean_squared_gradient_on_real_examples():
    # D(x) = 0.5 * sum(x^2) + sum(w * x): grad D(x_i) = x_i + w, a different norm per example.
    w = RNG.standard_normal((1, 10, 2)).astype("float32")
    real = RNG.standard_normal((6, 10, 2)).astype("float32")

    def critic(x):
        return tf.reduce_sum(0.5 * x ** 2 + x * w, axis=(1, 2))[:, None]

    expected = 0.5 * np.mean(np.sum((real + w) ** 2, axis=(1, 2)))
    assert float(Lo.r1_penalty(critic, real)) == pytest.approx(expected, rel=1e-5)
    # Zero-centred: a critic that is flat on the data pays nothing (WGAN-GP's would pay 1).
    assert float(Lo.r1_penalty(lambda x: tf.reduce_sum(0.0 * x, axis=(1, 2))[:, None],
                               real)) == 0.0


def test_r1_penalty_differentiates_into_critic_weights():
    scale = tf.Variable(2.0)
    real = RNG.standard_normal((3, 8, 1)).astype("float32")
    with tf.GradientTape() as tape:
        # D(x) = scale * sum(x): grad = scale, R1 = 0.5 * scale^2 * 8, d/dscale = 8 * scale.
        penalty = Lo.r1_penalty(lambda x: scale * tf.reduce_sum(x, axis=(1, 2))[:, None], real)
    assert float(penalty) == pytest.approx(0.5 * 4.0 * 8)
    assert float(tape.gradient(penalty, scale)) == pytest.approx(16.0)


def test_gradient_penalty_uses_the_interpolates():
    # D(x) = 0.5 ||x||^2 has gradient x: the penalty depends on where x_hat lies.
    real = RNG.standard_normal((5, 4, 1)).astype("float32")
    fake = RNG.standard_normal((5, 4, 1)).astype("float32")
    penalty = float(Lo.gradient_penalty(lambda x: 0.5 * tf.reduce_sum(x ** 2, axis=(1, 2)),
                                        real, fake, seed=7))
    eps = np.asarray(Lo.sample_interpolation_coefficients(5, seed=7))  # same int seed, same draw
    x_hat = real + eps * (fake - real)
    norms = np.linalg.norm(x_hat.reshape(5, -1), axis=1)
    assert penalty == pytest.approx(np.mean((norms - 1.0) ** 2), rel=1e-4)


@pytest.mark.parametrize("eps_shape", [(5,), (5, 1, 1)])
def test_gradient_penalty_with_given_epsilon_uses_those_interpolates(eps_shape):
    # D(x) = 0.5 ||x||^2 has gradient x: the penalty is a function of x_hat itself.
    real = RNG.standard_normal((5, 4, 2)).astype("float32")
    fake = RNG.standard_normal((5, 4, 2)).astype("float32")
    eps = np.array([0.0, 0.25, 0.5, 0.9, 1.0], "float32")
    penalty = float(Lo.gradient_penalty(lambda x: 0.5 * tf.reduce_sum(x ** 2, axis=(1, 2)),
                                        real, fake, epsilon=eps.reshape(eps_shape)))
    x_hat = real + eps[:, None, None] * (fake - real)
    norms = np.linalg.norm(x_hat.reshape(5, -1), axis=1)
    assert penalty == pytest.approx(np.mean((norms - 1.0) ** 2), rel=1e-5)


def test_gradient_penalty_of_spectrograms_takes_one_coefficient_per_example():
    # Rank-4 inputs (batch, frames, bins, channels), as the spectrogram critic sees them.
    real = RNG.standard_normal((3, 4, 2, 2)).astype("float32")
    fake = RNG.standard_normal((3, 4, 2, 2)).astype("float32")
    eps = np.array([0.1, 0.5, 1.0], "float32")
    penalty = float(Lo.gradient_penalty(lambda x: 0.5 * tf.reduce_sum(x ** 2, axis=(1, 2, 3)),
                                        real, fake, epsilon=eps))
    x_hat = real + eps[:, None, None, None] * (fake - real)
    norms = np.linalg.norm(x_hat.reshape(3, -1), axis=1)
    assert penalty == pytest.approx(np.mean((norms - 1.0) ** 2), rel=1e-5)


def test_interpolation_coefficients_are_uniform_on_unit_interval():
    seed = keras.random.SeedGenerator(0)
    draws = np.concatenate([np.asarray(Lo.sample_interpolation_coefficients(2000, seed)).ravel()
                            for _ in range(10)])
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    assert draws.mean() == pytest.approx(0.5, abs=0.01)
    assert draws.var() == pytest.approx(1.0 / 12.0, abs=0.003)
    # Each quarter of [0, 1] holds a quarter of the draws (a normal would not).
    counts = np.histogram(draws, bins=4, range=(0, 1))[0] / draws.size
    np.testing.assert_allclose(counts, 0.25, atol=0.015)
    # A SeedGenerator gives fresh draws on every call.
    assert not np.array_equal(np.asarray(Lo.sample_interpolation_coefficients(8, seed)),
                              np.asarray(Lo.sample_interpolation_coefficients(8, seed)))


def test_gradient_penalty_differentiates_into_critic_weights():
    w = tf.Variable(np.full((1, 3, 1), 0.2, "float32"))
    real = RNG.standard_normal((4, 3, 1)).astype("float32")
    fake = RNG.standard_normal((4, 3, 1)).astype("float32")
    with tf.GradientTape() as tape:
        penalty = Lo.gradient_penalty(lambda x: tf.reduce_sum(x * w, axis=(1, 2)), real, fake)
    grad = tape.gradient(penalty, w).numpy()
    norm = np.linalg.norm(w.numpy())
    np.testing.assert_allclose(grad, 2 * (norm - 1) * w.numpy() / norm, rtol=1e-4)


# ------------------------------------------------------------------- WGAN-GP

def test_wgan_losses_hand_computed():
    d_real, d_fake = _col([1.0, 3.0]), _col([-1.0, 0.0])
    # mean(fake) - mean(real) + 10 * 0.5 + 0.001 * mean(real^2) = -0.5 - 2 + 5 + 0.005
    loss = Lo.wgan_gp_critic_loss(d_real, d_fake, 0.5, gp_weight=10.0, drift_weight=1e-3)
    assert float(loss) == pytest.approx(2.505, rel=1e-6)
    no_penalty = Lo.wgan_gp_critic_loss(d_real, d_fake, None, drift_weight=0.0)
    assert float(no_penalty) == pytest.approx(-2.5)
    assert float(Lo.wgan_generator_loss(d_fake)) == pytest.approx(0.5)


# ---------------------------------------------------------------- report loss

@pytest.mark.parametrize("d_real, d_fake", [
    ([1.0, 2.0], [3.0, 2.5]),     # D(G(z)) > D(x): s = +1
    ([1.0, 2.0], [-1.0, 0.5]),    # D(G(z)) < D(x): s = -1
    ([1.0, -2.0], [3.0, -4.0]),   # one of each
])
def test_report_losses_and_gradients_hand_computed(d_real, d_fake):
    real = tf.constant(np.asarray(d_real, "float32")[:, None])
    fake = tf.constant(np.asarray(d_fake, "float32")[:, None])
    r, f = np.asarray(d_real), np.asarray(d_fake)
    s = np.sign(f - r)
    np.testing.assert_array_equal(Lo.gap_sign(real, fake).numpy(), s)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([real, fake])
        critic = Lo.report_critic_loss(real, fake)
        generator = Lo.report_generator_loss(real, fake)
    assert float(critic) == pytest.approx(np.mean((s + 1e-4) * r + (s + 0.000999) * f), rel=1e-6)
    assert float(generator) == pytest.approx(np.mean((s + 1e-4) * f + np.abs(f - r)), rel=1e-6)
    n = len(r)
    # s is a constant: d/dD(x) = (s+1e-4)/n, d/dD(G(z)) = (s+0.000999)/n.
    np.testing.assert_allclose(tape.gradient(critic, real).numpy()[:, 0], (s + 1e-4) / n, rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(critic, fake).numpy()[:, 0], (s + 0.000999) / n,
                               rtol=1e-5)
    # Generator: d/dD(G(z)) = (s + 1e-4 + sign(gap)) / n = (2s + 1e-4) / n.
    np.testing.assert_allclose(tape.gradient(generator, fake).numpy()[:, 0], (2 * s + 1e-4) / n,
                               rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(generator, real).numpy()[:, 0], -s / n, rtol=1e-5)


def test_report_loss_at_zero_gap_uses_sign_zero():
    real = _col([0.5, -2.0])
    fake = _col([0.5, -2.0])
    np.testing.assert_array_equal(Lo.gap_sign(real, fake).numpy(), [0.0, 0.0])
    critic = float(Lo.report_critic_loss(real, fake))
    assert np.isfinite(critic)
    assert critic == pytest.approx(np.mean([1e-4 * 0.5 + 0.000999 * 0.5,
                                            1e-4 * -2.0 + 0.000999 * -2.0]), rel=1e-5)
    assert float(Lo.report_generator_loss(real, fake)) == pytest.approx(
        np.mean([1e-4 * 0.5, 1e-4 * -2.0]), rel=1e-5)


# ------------------------------------------------------------------- get_loss

def test_get_loss_selection_and_penalty_flags():
    d_real, d_fake = _col([1.0, 2.0]), _col([0.0, 3.0])
    wgan = Lo.get_loss("wgan-gp")
    assert wgan.uses_penalty
    assert float(wgan.critic_loss(d_real, d_fake, 0.1)) == pytest.approx(
        float(Lo.wgan_gp_critic_loss(d_real, d_fake, 0.1)))
    assert float(wgan.generator_loss(d_real, d_fake)) == pytest.approx(-1.5)

    report = Lo.get_loss("report")
    assert not report.uses_penalty
    plain = float(report.critic_loss(d_real, d_fake, None))
    assert plain == pytest.approx(float(Lo.report_critic_loss(d_real, d_fake)))
    with_gp = Lo.get_loss("report", gradient_penalty=True, gp_weight=10.0)
    assert with_gp.uses_penalty
    assert float(with_gp.critic_loss(d_real, d_fake, 0.2)) == pytest.approx(plain + 2.0, rel=1e-5)
    with pytest.raises(ValueError, match="penalty"):
        with_gp.critic_loss(d_real, d_fake, None)
    with pytest.raises(ValueError, match="get_loss"):
        Lo.get_loss("hinge")


# ------------------------------------------------------ optimisation sanity

@pytest.mark.parametrize("name", ["wgan-gp", "report"])
def test_critic_loss_decreases_on_fixed_batch(name):
    keras.utils.set_random_seed(0)
    spec = M.ModelSpec(num_scales=2, clip_samples=32, latent_dim=8, channels=(8, 8),
                       kernel_size=3, phase_shuffle=0)
    critic = M.build_critic(spec, scale=1)
    loss_fns = Lo.get_loss(name)
    real = np.sin(np.linspace(0, 12, 32 * 8)).reshape(8, 32, 1).astype("float32")
    fake = RNG.standard_normal((8, 32, 1)).astype("float32") * 0.5
    variables = critic.variables_for_scale(1)
    optimizer = keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.99)
    seed = keras.random.SeedGenerator(0)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            penalty = (Lo.gradient_penalty(critic, real, fake, seed) if loss_fns.uses_penalty
                       else None)
            loss = loss_fns.critic_loss(critic(real), critic(fake), penalty)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    def evaluate():
        penalty = Lo.gradient_penalty(critic, real, fake, 123) if loss_fns.uses_penalty else None
        return float(loss_fns.critic_loss(critic(real), critic(fake), penalty))

    before = evaluate()
    for _ in range(10):
        step()
    assert evaluate() < before
