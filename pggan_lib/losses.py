"""GAN losses: WGAN-GP with PGGAN's drift term, and the report's loss.

Conventions: ``d_real = D(x)`` and ``d_fake = D(G(z))`` are critic outputs of
shape ``(batch, 1)`` or ``(batch,)``; every loss returns a scalar (mean over
the batch). Both players *minimise* their loss.

The report's loss (see ``seed/SEED_BRIEF.md``), with the sign of the gap
``s = (D(G(z)) - D(x)) / |D(G(z)) - D(x)|``::

    d_loss = (s + 0.0001) * D(x) + (s + 0.000999) * D(G(z))
    g_loss = (s + 0.0001) * D(G(z)) + |D(G(z)) - D(x)|

Decisions where the report is silent, all documented in the functions:

* ``s`` is computed **per example** (the literal reading: each pair
  ``D(x_i), D(G(z_i))`` gives its own sign), then the batch mean is taken.
* ``s`` is a constant for differentiation (``stop_gradient``): the sign has
  zero derivative wherever it is defined.
* At a gap of exactly 0 the literal ``gap / |gap|`` is 0/0 = NaN; we use
  ``sign(0) = 0`` there, so the terms reduce to ``0.0001 * D(x) +
  0.000999 * D(G(z))``: the small constants keep the gradient non-zero, which
  is what the report says they are for.
* The report's formulas have no gradient penalty; ``get_loss("report",
  gradient_penalty=True)`` adds one for the ablation.

Notebook: chapters/02_wgan_gp.ipynb
Notebook: chapters/04_activation_and_loss.ipynb
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import keras
import tensorflow as tf
from keras import ops

from pggan_lib.layers import log_power_spectrogram

__all__ = [
    "sample_interpolation_coefficients",
    "gradient_penalty",
    "r1_penalty",
    "wgan_gp_critic_loss",
    "wgan_generator_loss",
    "gap_sign",
    "report_critic_loss",
    "report_generator_loss",
    "log_spectrum_gap",
    "SPECTRUM_MATCH_FRAME",
    "LossFunctions",
    "get_loss",
    "LOSS_NAMES",
]

#: Names accepted by :func:`get_loss`.
LOSS_NAMES = ("wgan-gp", "report")

#: The report's constants (``seed/SEED_BRIEF.md``, section "Loss function").
REPORT_REAL_OFFSET = 0.0001
REPORT_FAKE_OFFSET = 0.000999


def _flat(values):
    """Critic outputs ``(batch, 1)`` or ``(batch,)`` -> float32 ``(batch,)``."""
    return ops.reshape(ops.cast(values, "float32"), (-1,))


# ---------------------------------------------------------------------------
# WGAN-GP
# ---------------------------------------------------------------------------

def sample_interpolation_coefficients(batch_size, seed=None, dtype="float32"):
    """Draw WGAN-GP's interpolation coefficients, one per example, ~ U[0, 1].

    Gulrajani et al. (2017, Algorithm 1) draw epsilon ~ U[0, 1]. The widely
    copied keras-io ``wgan_gp.py`` example draws it from a *normal*
    distribution, which puts many "interpolates" outside the segment between
    the real and fake example; we do not follow it.

    Args:
        batch_size: Number of coefficients (int or scalar tensor).
        seed: ``keras.random.SeedGenerator`` (fresh draws on every call, also
            inside a compiled step), an int (same draws every call) or None.
        dtype: Dtype of the result.

    Returns:
        Tensor of shape ``(batch_size, 1, 1)``, broadcastable over
        ``(batch, samples, channels)`` audio.
    """
    return keras.random.uniform((batch_size, 1, 1), minval=0.0, maxval=1.0,
                                dtype=dtype, seed=seed)


def gradient_penalty(critic_fn: Callable, real, fake, seed=None, epsilon=None):
    """WGAN-GP's penalty ``mean_i (||grad_x D(x_hat_i)||_2 - 1)^2`` (without lambda).

    ``x_hat = real + eps * (fake - real)`` with ``eps ~ U[0, 1]`` per example
    (see :func:`sample_interpolation_coefficients`), or the coefficients given
    as ``epsilon`` (a training step that draws them once for a global batch
    shared by several replicas passes them in). The gradient norm is taken
    over all samples and channels of one example. The graph is kept
    differentiable (double backprop), so an outer ``tf.GradientTape`` over the
    critic's weights sees the penalty.

    Args:
        critic_fn: Callable ``x -> D(x)`` of shape ``(batch, 1)``; for a
            conditional critic wrap the labels in, e.g.
            ``lambda x: critic([x, labels], training=True)``.
        real: Real audio ``(batch, samples, channels)``.
        fake: Generated audio, same shape.
        seed: ``keras.random.SeedGenerator``, int or None (unused when
            ``epsilon`` is given).
        epsilon: Optional interpolation coefficients, shape ``(batch,)`` or
            broadcastable to ``real`` (e.g. ``(batch, 1, 1)``); None draws them.

    Returns:
        Scalar float32 tensor (multiply by ``gp_weight``, i.e. lambda).

    Notebook: chapters/02_wgan_gp.ipynb
    """
    real = ops.convert_to_tensor(real)
    fake = ops.cast(ops.convert_to_tensor(fake), real.dtype)
    if epsilon is None:
        epsilon = sample_interpolation_coefficients(ops.shape(real)[0], seed=seed,
                                                    dtype=real.dtype)
    else:
        epsilon = ops.cast(ops.convert_to_tensor(epsilon), real.dtype)
        if len(epsilon.shape) == 1:  # one coefficient per example -> (batch, 1, ..., 1)
            epsilon = ops.reshape(epsilon, (-1,) + (1,) * (len(real.shape) - 1))
    interpolated = real + epsilon * (fake - real)
    with tf.GradientTape() as tape:
        tape.watch(interpolated)
        scores = critic_fn(interpolated)
        total = ops.sum(ops.cast(scores, "float32"))
    grads = ops.cast(tape.gradient(total, interpolated), "float32")
    # Epsilon under the root keeps the norm's gradient finite at grad == 0.
    norms = ops.sqrt(ops.sum(ops.square(ops.reshape(grads, (ops.shape(grads)[0], -1))), axis=1)
                     + 1e-12)
    return ops.mean(ops.square(norms - 1.0))


def r1_penalty(critic_fn: Callable, real):
    """R1: ``0.5 * mean_i ||grad_x D(x_i)||_2^2`` on *real* examples (without gamma).

    Mescheder et al. (2018) penalise the critic's gradient on the data only,
    towards zero rather than towards norm 1; with weight gamma the critic
    loss gains ``gamma / 2 * E ||grad D(x)||^2`` (StyleGAN's form), which is
    this value times the loss's penalty weight. The graph stays
    differentiable (double backprop), as for :func:`gradient_penalty`.

    Args:
        critic_fn: Callable ``x -> D(x)`` of shape ``(batch, 1)``.
        real: Real examples ``(batch, ...)`` (audio or spectrograms).

    Returns:
        Scalar float32 tensor.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    real = ops.convert_to_tensor(real)
    with tf.GradientTape() as tape:
        tape.watch(real)
        total = ops.sum(ops.cast(critic_fn(real), "float32"))
    grads = ops.cast(tape.gradient(total, real), "float32")
    squared = ops.sum(ops.square(ops.reshape(grads, (ops.shape(grads)[0], -1))), axis=1)
    return 0.5 * ops.mean(squared)


def wgan_gp_critic_loss(d_real, d_fake, penalty=None, gp_weight=10.0, drift_weight=1e-3):
    """WGAN-GP critic loss with PGGAN's drift term.

    ``mean(D(G(z))) - mean(D(x)) + gp_weight * penalty + drift_weight * mean(D(x)^2)``.
    The drift term keeps the critic's outputs near 0 (Karras et al. 2017).

    Args:
        d_real: ``D(x)``, shape ``(batch, 1)`` or ``(batch,)``.
        d_fake: ``D(G(z))``, same shape.
        penalty: Scalar from :func:`gradient_penalty`, or None for no penalty.
        gp_weight: lambda (10 in WGAN-GP and PGGAN).
        drift_weight: epsilon_drift (0.001 in PGGAN).

    Returns:
        Scalar float32 tensor.

    Notebook: chapters/02_wgan_gp.ipynb
    """
    d_real, d_fake = _flat(d_real), _flat(d_fake)
    loss = ops.mean(d_fake) - ops.mean(d_real) + drift_weight * ops.mean(ops.square(d_real))
    if penalty is not None:
        loss = loss + gp_weight * ops.cast(penalty, "float32")
    return loss


def wgan_generator_loss(d_fake):
    """WGAN generator loss ``-mean(D(G(z)))``.

    Args:
        d_fake: ``D(G(z))``, shape ``(batch, 1)`` or ``(batch,)``.

    Returns:
        Scalar float32 tensor.

    Notebook: chapters/02_wgan_gp.ipynb
    """
    return -ops.mean(_flat(d_fake))


# ---------------------------------------------------------------------------
# The report's loss
# ---------------------------------------------------------------------------

def gap_sign(d_real, d_fake):
    """Per-example ``s = (D(G(z)) - D(x)) / |D(G(z)) - D(x)|``, 0 where the gap is 0.

    Computed as ``sign(gap)``, which equals the report's quotient wherever it
    is defined; the quotient is NaN at a zero gap, the sign is 0. Gradients do
    not flow through ``s`` (``stop_gradient``; its derivative is 0 anyway).

    Args:
        d_real: ``D(x)``, shape ``(batch, 1)`` or ``(batch,)``.
        d_fake: ``D(G(z))``, same shape.

    Returns:
        float32 tensor ``(batch,)`` with values in {-1, 0, +1}.
    """
    return ops.stop_gradient(ops.sign(_flat(d_fake) - _flat(d_real)))


def report_critic_loss(d_real, d_fake):
    """The report's critic loss, ``mean((s + 0.0001) D(x) + (s + 0.000999) D(G(z)))``.

    ``s`` is per example (see :func:`gap_sign`); no gradient penalty.

    Args:
        d_real: ``D(x)``, shape ``(batch, 1)`` or ``(batch,)``.
        d_fake: ``D(G(z))``, same shape.

    Returns:
        Scalar float32 tensor.
    """
    s = gap_sign(d_real, d_fake)
    d_real, d_fake = _flat(d_real), _flat(d_fake)
    return ops.mean((s + REPORT_REAL_OFFSET) * d_real + (s + REPORT_FAKE_OFFSET) * d_fake)


def report_generator_loss(d_real, d_fake):
    """The report's generator loss, ``mean((s + 0.0001) D(G(z)) + |D(G(z)) - D(x)|)``.

    ``s`` is per example (see :func:`gap_sign`). Its derivative with respect to
    ``D(G(z_i))`` is ``(2 s_i + 0.0001) / batch``.

    Args:
        d_real: ``D(x)``, shape ``(batch, 1)`` or ``(batch,)``.
        d_fake: ``D(G(z))``, same shape.

    Returns:
        Scalar float32 tensor.
    """
    s = gap_sign(d_real, d_fake)
    d_real, d_fake = _flat(d_real), _flat(d_fake)
    return ops.mean((s + REPORT_REAL_OFFSET) * d_fake + ops.abs(d_fake - d_real))


# ---------------------------------------------------------------------------
# Selection by name
# ---------------------------------------------------------------------------

#: Longest frame of the generator's log-spectrum term (``Preset.spectrum_match``),
#: halved on short clips by ``config.spectrum_frame``: 31 Hz bins at 16 kHz.
SPECTRUM_MATCH_FRAME = 512


def log_spectrum_gap(real, fake, fft_length, floor=1e-6):
    """Squared gap between the mean log power spectra of two batches of audio.

    ``mean_f (M_fake[f] - M_real[f])^2`` with ``M[f]`` the mean over clips and
    frames of ``log10(|STFT|^2 + floor)`` in bin ``f``. In the log domain the
    quiet bins between partials count as much as the partials, so the gap
    sees a noise floor that the waveform's L2 (and a critic penalised towards
    1-Lipschitz in it) barely feels: fake audio at gain ``g`` of the real
    gives ``(2 log10 g)^2`` where ``floor`` is negligible. A moment-matching
    term for the generator (feature matching, Salimans et al. 2016, on log
    spectra); ``Preset.spectrum_match`` weighs it.

    Args:
        real: Real audio ``(batch, samples, 1)``.
        fake: Generated audio ``(batch', samples, 1)``.
        fft_length: Frame length (``config.spectrum_frame``).
        floor: Power added before the log: about -60 dB under a 0.1-RMS
            tone's peak at 64-sample frames.

    Returns:
        Scalar, in squared log10 units (bels^2).

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    def mean_spectrum(x):
        return ops.mean(log_power_spectrogram(ops.cast(x, "float32"), fft_length, floor),
                        axis=(0, 1))
    return ops.mean(ops.square(mean_spectrum(fake) - mean_spectrum(real)))


class LossFunctions(NamedTuple):
    """A pair of losses chosen by name, as returned by :func:`get_loss`.

    Attributes:
        name: ``"wgan-gp"`` or ``"report"``.
        critic_loss: ``(d_real, d_fake, penalty) -> scalar``; ``penalty`` is
            ignored (may be None) when ``uses_penalty`` is False.
        generator_loss: ``(d_real, d_fake) -> scalar``.
        uses_penalty: Whether the training step must compute
            :func:`gradient_penalty`.
        gp_weight: lambda applied to the penalty.
        drift_weight: PGGAN's drift weight (wgan-gp only, else 0).
    """

    name: str
    critic_loss: Callable
    generator_loss: Callable
    uses_penalty: bool
    gp_weight: float
    drift_weight: float


def get_loss(name, gradient_penalty: Optional[bool] = None, gp_weight=10.0,
             drift_weight=1e-3) -> LossFunctions:
    """Look up a loss pair by name.

    Args:
        name: ``"wgan-gp"`` (penalty on by default) or ``"report"`` (the
            report's formulas; penalty off by default, as written there).
        gradient_penalty: Force the penalty on/off; None = the loss's default.
        gp_weight: lambda.
        drift_weight: Drift weight for ``"wgan-gp"`` (ignored by ``"report"``).

    Returns:
        A :class:`LossFunctions`.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    if name == "wgan-gp":
        uses_penalty = True if gradient_penalty is None else bool(gradient_penalty)

        def critic_loss(d_real, d_fake, penalty=None):
            return wgan_gp_critic_loss(d_real, d_fake, penalty if uses_penalty else None,
                                       gp_weight=gp_weight, drift_weight=drift_weight)

        def generator_loss(d_real, d_fake):
            return wgan_generator_loss(d_fake)

        return LossFunctions(name, critic_loss, generator_loss, uses_penalty,
                             float(gp_weight), float(drift_weight))
    if name == "report":
        uses_penalty = False if gradient_penalty is None else bool(gradient_penalty)

        def critic_loss(d_real, d_fake, penalty=None):
            loss = report_critic_loss(d_real, d_fake)
            if uses_penalty:
                if penalty is None:
                    raise ValueError("report critic_loss: penalty is None but the loss was "
                                     "built with gradient_penalty=True")
                loss = loss + gp_weight * ops.cast(penalty, "float32")
            return loss

        return LossFunctions(name, critic_loss, report_generator_loss, uses_penalty,
                             float(gp_weight), 0.0)
    raise ValueError(f"get_loss name must be one of {LOSS_NAMES}, got {name!r}")
