"""Training a progressive GAN: the GAN as a ``keras.Model``, phases, EMA,
NaN guard, atomic checkpoints, exact resume, TensorBoard and the run folder.

The pieces, from small to large:

* :func:`make_schedule` / :func:`fade_alpha`: scale 0 trains in one stable
  phase; every later scale first *fades in* (alpha 0 -> 1, linear) and then
  trains *stable* (alpha = 1).
* :class:`ProgressiveGAN`: the Keras 3 GAN idiom (``compile(d_optimizer=...,
  g_optimizer=...)``, ``train_step``, trackers listed by ``metrics``,
  ``keras.random.SeedGenerator``, ``optimizer.apply``) plus n_critic, the
  generator's exponential moving average (EMA) and per-step measurements
  D(x), D(G(z)), Delta = |D(G(z)) - D(x)|, the penalty and gradient norms.
* :func:`train` = :func:`prepare_run` (checks, GAN, new or restored run folder)
  + :func:`run_phases` (the loop: steps only) + :class:`TrainingHook` objects
  for the side work (history and TensorBoard, samples, checkpoints, step and
  time limits, callbacks), as keras-io's GANs keep side work in callbacks.
  One compiled step per phase, checkpoints written
  atomically with a checksum, ``resume=True`` continues where the newest intact
  checkpoint left off (weights, both optimisers, EMA, RNG state and data
  position): the same steps on the same data, equal to an uninterrupted run
  within floating-point rounding (bit for bit under op determinism).

A run folder holds ``config.json``, ``history.csv`` (one row per step,
continuous across resumes), ``checkpoints/``, ``samples/`` (WAV at each phase
end), ``tb/`` (TensorBoard), ``generator.keras`` (the EMA generator at the last
finished phase, for fast generation) and ``run_state.json``.

Notebook: chapters/03_progressive_model.ipynb
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import sys
import time
import types
import zipfile
import zlib
from pathlib import Path
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from pggan_lib import audio, data, files, layers, losses, models, representations, runs
from pggan_lib.config import (ARCHITECTURES, PENALTIES, SCALE_GAINS, UPSAMPLERS,
                              WAVEFORM_PLAYER_FIELDS, Preset, for_players, get_preset,
                              is_fft_length, scale_sample_rate, spectrum_frame)

__all__ = [
    "METRIC_NAMES",
    "HISTORY_COLUMNS",
    "RunError",
    "TrainingDiverged",
    "Phase",
    "make_schedule",
    "fade_alpha",
    "model_spec_for",
    "ProgressiveGAN",
    "build_gan",
    "make_step_function",
    "choose_strategy",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "read_checkpoint_meta",
    "verify_checkpoint",
    "CheckpointDamaged",
    "read_history",
    "TrainingRun",
    "prepare_run",
    "StepRecord",
    "TrainingHook",
    "LogHook",
    "SamplesHook",
    "CheckpointHook",
    "PhaseEndHook",
    "StepLimitHook",
    "DeadlineHook",
    "StepCallbackHook",
    "ProgressHook",
    "default_hooks",
    "run_phases",
    "train",
    "load_generator",
    "generate_audio",
    "write_generated",
]

#: Per-step measurements returned by :meth:`ProgressiveGAN.train_step`.
METRIC_NAMES = runs.METRIC_NAMES
#: Columns of ``history.csv``: one row per optimiser step (``runs.HISTORY_COLUMNS``).
HISTORY_COLUMNS = runs.HISTORY_COLUMNS

_CHECKPOINT_PATTERN = re.compile(r"^ckpt-(\d{8})\.npz$")
_KEEP_CHECKPOINTS = 3


class RunError(ValueError):
    """A run folder, dataset or option that cannot be used, with the reason."""


class TrainingDiverged(RuntimeError):
    """Raised when a step produced NaN or Inf; nothing after it was saved.

    Attributes:
        step: Global step (1-based count of optimiser steps) that diverged.
        scale: Scale being trained.
        phase: Phase index.
        values: The step's measurements (dict of floats).
        history: The run's history up to and including that step (dict of lists).
    """

    def __init__(self, step, scale, phase, values, history):
        bad = ", ".join(k for k, v in values.items() if not math.isfinite(v))
        super().__init__(
            f"training diverged at step {step} (scale {scale}, phase {phase}): non-finite "
            f"{bad}. The last good checkpoint is untouched; lower the learning rate or "
            f"try another loss/activation, then resume or restart.")
        self.step, self.scale, self.phase = step, scale, phase
        self.values, self.history = values, history


# ---------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase of progressive training.

    Attributes:
        index: Position in the schedule (0-based).
        scale: Scale trained (0 = coarsest).
        kind: ``"fade"`` (alpha 0 -> 1) or ``"stable"`` (alpha = 1).
        steps: Number of optimiser steps (generator updates).
        start_step: Global step count before the phase's first step.
        batch_size: Global batch size.
    """

    index: int
    scale: int
    kind: str
    steps: int
    start_step: int
    batch_size: int

    @property
    def end_step(self) -> int:
        """Global step count after the phase's last step."""
        return self.start_step + self.steps


def make_schedule(preset: Preset, num_scales: int) -> list:
    """Phases of a progressive run: stable(0), then fade(k), stable(k) for k >= 1.

    Args:
        preset: Supplies per-scale ``stable_steps``, ``fade_steps``, ``batch_sizes``.
        num_scales: Scales in the dataset (K).

    Returns:
        List of :class:`Phase`; phases with 0 steps are left out.

    Notebook: chapters/03_progressive_model.ipynb
    """
    stable = preset.per_scale("stable_steps", num_scales)
    fade = preset.per_scale("fade_steps", num_scales)
    batch = preset.per_scale("batch_sizes", num_scales)
    phases, step = [], 0
    for scale in range(num_scales):
        kinds = [("stable", stable[scale])] if scale == 0 else [("fade", fade[scale]),
                                                                 ("stable", stable[scale])]
        for kind, steps in kinds:
            if int(steps) <= 0:
                continue
            phases.append(Phase(len(phases), scale, kind, int(steps), step, int(batch[scale])))
            step += int(steps)
    return phases


def fade_alpha(phase: Phase, step_in_phase: int) -> float:
    """Fade-in weight of the new block at a step: linear 0 -> 1 over a fade phase.

    Args:
        phase: The phase.
        step_in_phase: 0-based index of the step within the phase.

    Returns:
        0.0 at a fade phase's first step, 1.0 at its last; 1.0 in stable phases.

    Notebook: chapters/03_progressive_model.ipynb
    """
    if phase.kind != "fade" or phase.steps <= 1:
        return 1.0
    return min(1.0, max(0.0, step_in_phase / (phase.steps - 1)))


def model_spec_for(preset: Preset, manifest: dict, activation=None, conditional=False,
                   critic_output=None):
    """The models' spec of a preset trained on a dataset.

    The data's shape (scales, clip length, classes) comes from the manifest;
    widths, latent size and kernel from the preset.

    Args:
        preset: The preset.
        manifest: ``data.read_manifest(dataset_dir)``.
        activation: Hidden activation name (None: the preset's).
        conditional: Condition both players on the class label.
        critic_output: The critic's output activation, ``"linear"`` or
            ``"report"`` (None: the report's with the report's hidden
            activation, else linear).

    Returns:
        A ``models.ModelSpec``, or for a spectrogram ``preset.representation``
        a ``spectral_models.SpectralModelSpec``
        (:func:`representations.spectral_model_spec`).

    Notebook: chapters/03_progressive_model.ipynb
    """
    activation = activation or preset.activation
    # "report" selects the report's scheme: f(x) = tanh(x) + x/alpha in the hidden
    # layers *and* at the critic's output; the others keep PGGAN's linear output.
    critic_output = critic_output or ("report" if activation == "report" else "linear")
    if preset.representation != "waveform":
        return representations.spectral_model_spec(preset, manifest, activation,
                                                   critic_output)
    num_scales = int(manifest["num_scales"])
    wanted = dict(
        num_scales=num_scales,
        clip_samples=int(manifest["clip_samples"]),
        latent_dim=preset.latent_dim,
        channels=preset.per_scale("channels", num_scales),
        kernel_size=preset.kernel_size,
        activation=activation,
        num_classes=len(manifest["class_names"]) if conditional else 0,
        minibatch_group_size=preset.minibatch_group_size,
        phase_shuffle=preset.phase_shuffle,
        output_skips=preset.output_skips,
        silent_heads=preset.silent_heads,
        head_std=preset.head_std,
        critic_emphasis=preset.critic_emphasis,
        critic_spectrum=preset.critic_spectrum,
        upsample=preset.upsample,
        feature_pixel_norm=preset.feature_pixel_norm,
        critic_output_activation=critic_output,
        architecture=preset.architecture,
    )
    # Only pass what this ModelSpec knows; other fields keep the model's defaults.
    known = {f.name for f in dataclasses.fields(models.ModelSpec)}
    return models.ModelSpec(**{k: v for k, v in wanted.items() if k in known})


# ---------------------------------------------------------------------------
# The GAN as a keras.Model
# ---------------------------------------------------------------------------

class ProgressiveGAN(keras.Model):
    """A progressive generator and critic trained as one ``keras.Model``.

    ``train_step`` does ``n_critic`` critic updates and one generator update
    on a batch of real audio of the current scale, then moves the EMA
    generator towards the generator. Its randomness (latent vectors and the
    penalty's interpolation coefficients) is drawn for the *global* batch from
    one ``keras.random.SeedGenerator``; under a ``tf.distribute`` strategy each
    replica takes its strided share (see :func:`train`), so a run on N devices
    computes what one device would (up to reduction order).

    Args:
        generator: ``models.build_generator(spec)``.
        critic: ``models.build_critic(spec)``.
        ema_generator: A second generator of the same spec; its weights track
            ``generator``'s (copied at construction).
        latent_dim: Size of z.
        loss: ``"wgan-gp"`` or ``"report"`` (see ``losses.get_loss``).
        n_critic: Critic updates per generator update.
        gp_weight: Weight of the critic's penalty (lambda of WGAN-GP, gamma of R1).
        drift_weight: Drift weight (WGAN-GP only).
        penalty: ``"gp"`` (WGAN-GP's, on interpolates) or ``"r1"`` (on real
            clips); see ``config.PENALTIES``.
        ema_decay: EMA decay: ``ema = decay * ema + (1 - decay) * w`` per step.
        conditional: Feed class labels to both players.
        seed: Seed of the GAN's ``SeedGenerator``.
        augment: DiffAugment's augmentations (``layers.AUGMENT_NAMES``).
        spectrum_match: Weight of ``losses.log_spectrum_gap`` between the real
            batch and the generator's, added to the generator's loss (0 = none).

    Notebook: chapters/03_progressive_model.ipynb
    """

    def __init__(self, generator, critic, ema_generator, *, latent_dim, loss="wgan-gp",
                 n_critic=1, gp_weight=10.0, drift_weight=1e-3, penalty="gp",
                 ema_decay=0.999, conditional=False, seed=0, augment=(), spectrum_match=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        if penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
        self.penalty = penalty
        self.augment = layers.check_augment(augment)
        self.generator = generator
        self.critic = critic
        self.ema_generator = ema_generator
        self.latent_dim = int(latent_dim)
        self.loss_name = loss
        self.loss_fns = losses.get_loss(loss, gp_weight=gp_weight, drift_weight=drift_weight)
        self.n_critic = int(n_critic)
        self.spectrum_match = float(spectrum_match)
        self.ema_decay = float(ema_decay)
        self.conditional = bool(conditional)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = [keras.metrics.Mean(name=name) for name in METRIC_NAMES]
        self.current_scale = None
        self.copy_to_ema()

    @property
    def metrics(self):
        """Running means of :data:`METRIC_NAMES` (reset with ``reset_metrics``)."""
        return self.trackers

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        """Attach one optimiser per player (and build them over *all* scales'
        variables, so that their state, and a checkpoint of it, never changes
        shape when the model grows)."""
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.d_optimizer.build(self.critic.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    # -- growing --------------------------------------------------------
    def set_scale(self, scale):
        """Train/generate at ``scale`` (retraces compiled functions)."""
        for model in (self.generator, self.critic, self.ema_generator):
            model.set_scale(int(scale))
        self.current_scale = int(scale)
        # A plain namespace: Keras would track a list attribute as the GAN's own variables.
        self._scale_vars = types.SimpleNamespace(
            critic=list(self.critic.variables_for_scale(self.current_scale)),
            generator=list(self.generator.variables_for_scale(self.current_scale)))

    def set_learning_rate(self, rate):
        """Both players' learning rate (a variable: compiled steps read it, no retrace)."""
        for optimizer in (self.d_optimizer, self.g_optimizer):
            optimizer.learning_rate = float(rate)

    def set_alpha(self, alpha):
        """Fade-in weight of the newest block in all three networks."""
        for model in (self.generator, self.critic, self.ema_generator):
            model.set_alpha(float(alpha))

    # -- EMA --------------------------------------------------------------
    def copy_to_ema(self):
        """Make the EMA generator an exact copy of the generator."""
        for ema, weight in zip(self.ema_generator.trainable_variables,
                               self.generator.trainable_variables):
            ema.assign(weight)

    def update_ema(self):
        """``ema = decay * ema + (1 - decay) * w`` for every trainable weight."""
        decay = self.ema_decay
        for ema, weight in zip(self.ema_generator.trainable_variables,
                               self.generator.trainable_variables):
            ema.assign(decay * ema + (1.0 - decay) * ops.cast(weight, ema.dtype))

    # -- randomness -------------------------------------------------------
    def draw_noise(self, batch_size, samples=None):
        """Latents, interpolation and augmentation randomness for one step of a global batch.

        Args:
            batch_size: Global batch size B.
            samples: Clip length T at the current scale (needed for noise augmentation).

        Returns:
            Dict with ``z_critic`` ``(n_critic, B, latent_dim)``, ``z_generator``
            ``(B, latent_dim)``, ``epsilon`` ``(n_critic, B)`` ~ U[0, 1] (one
            coefficient per example, whatever the rank of the inputs);
            with augmentation also ``aug_uniform`` ``(2 n_critic + 1, B, 4)`` and,
            for noise, ``aug_noise`` ``(2 n_critic + 1, B, T, 1)`` (rows 2i and
            2i + 1: real and fake of critic update i; the last: the generator's).
        """
        noise = self._augment_noise(batch_size, samples) if self.augment else {}
        return {**noise,
            "z_critic": keras.random.normal((self.n_critic, batch_size, self.latent_dim),
                                            seed=self.seed_generator),
            "z_generator": keras.random.normal((batch_size, self.latent_dim),
                                               seed=self.seed_generator),
            "epsilon": ops.reshape(
                losses.sample_interpolation_coefficients(self.n_critic * batch_size,
                                                         seed=self.seed_generator),
                (self.n_critic, batch_size)),
        }

    def _augment_noise(self, batch_size, samples):
        draws = 2 * self.n_critic + 1
        noise = {"aug_uniform": keras.random.uniform(
            (draws, batch_size, layers.AUGMENT_UNIFORMS), seed=self.seed_generator)}
        if "noise" in self.augment:
            noise["aug_noise"] = keras.random.normal((draws, batch_size, samples, 1),
                                                     seed=self.seed_generator)
        return noise

    def _augmented(self, x, noise, row):
        """``x`` through this step's augmentation number ``row`` (identity without one)."""
        if not self.augment:
            return x
        extra = noise["aug_noise"][row] if "aug_noise" in noise else None
        return layers.augment_audio(x, noise["aug_uniform"][row], extra, self.augment)

    # -- forward helpers ------------------------------------------------
    def _generate(self, generator, z, labels, training):
        inputs = [z, labels] if self.conditional else z
        return generator(inputs, training=training)

    def _criticize(self, x, labels):
        inputs = [x, labels] if self.conditional else x
        return self.critic(inputs, training=True)

    def call(self, inputs, training=False):
        """Generate with the EMA generator: ``z`` or ``[z, labels]`` -> audio."""
        return self.ema_generator(inputs, training=training)

    # -- one step -------------------------------------------------------
    def train_step(self, data, noise=None):
        """n_critic critic updates, one generator update, one EMA update.

        Args:
            data: ``(real, labels)``: audio ``(B, samples_at_scale, 1)`` and
                int labels ``(B,)`` (ignored unless conditional).
            noise: ``draw_noise(B)`` output for this batch; None draws it here.

        Returns:
            Dict of this step's scalars, :data:`METRIC_NAMES` (per replica
            under a distribution strategy; :func:`train` averages them).
        """
        real, labels = data
        real = ops.cast(real, "float32")
        if noise is None:
            noise = self.draw_noise(ops.shape(real)[0], ops.shape(real)[1])
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        # Gradients are summed over replicas by the optimiser: scale so they average.
        per_replica = 1.0 / replicas

        for i in range(self.n_critic):
            fake = ops.cast(self._generate(self.generator, noise["z_critic"][i], labels, True),
                            "float32")
            real_seen = self._augmented(real, noise, 2 * i)
            fake = self._augmented(fake, noise, 2 * i + 1)
            with tf.GradientTape() as tape:
                d_real = self._criticize(real_seen, labels)
                d_fake = self._criticize(fake, labels)
                penalty = ops.zeros((), "float32")
                if self.loss_fns.uses_penalty:
                    penalty = self._penalty(real_seen, fake, labels, noise["epsilon"][i])
                d_loss = self.loss_fns.critic_loss(d_real, d_fake, penalty)
                scaled = self.d_optimizer.scale_loss(d_loss * per_replica)
            d_grads = tape.gradient(scaled, self._scale_vars.critic)
            d_norm = self._grad_norm(d_grads, self.d_optimizer, replicas)
            self.d_optimizer.apply(d_grads, self._scale_vars.critic)

        with tf.GradientTape() as tape:
            fake = self._generate(self.generator, noise["z_generator"], labels, True)
            d_fake_g = self._criticize(self._augmented(fake, noise, 2 * self.n_critic), labels)
            g_loss = self.loss_fns.generator_loss(d_real, d_fake_g)
            if self.spectrum_match:
                g_loss += self.spectrum_match * self.spectrum_gap(real, fake)
            scaled = self.g_optimizer.scale_loss(g_loss * per_replica)
        g_grads = tape.gradient(scaled, self._scale_vars.generator)
        g_norm = self._grad_norm(g_grads, self.g_optimizer, replicas)
        self.g_optimizer.apply(g_grads, self._scale_vars.generator)
        if replicas == 1:  # else train()'s step updates the EMA in cross-replica context
            self.update_ema()

        d_real_mean = ops.mean(ops.cast(d_real, "float32"))
        d_fake_mean = ops.mean(ops.cast(d_fake, "float32"))
        values = {
            "d_loss": ops.cast(d_loss, "float32"),
            "g_loss": ops.cast(g_loss, "float32"),
            "d_real": d_real_mean,
            "d_fake": d_fake_mean,
            "delta": ops.abs(d_fake_mean - d_real_mean),
            "gp": ops.cast(penalty, "float32"),
            "d_grad_norm": d_norm,
            "g_grad_norm": g_norm,
        }
        for tracker in self.trackers:
            tracker.update_state(values[tracker.name])
        return values

    def spectrum_gap(self, real, fake):
        """``losses.log_spectrum_gap`` of two batches of this scale (``config.spectrum_frame``)."""
        frame = spectrum_frame(losses.SPECTRUM_MATCH_FRAME, int(real.shape[1]))
        return losses.log_spectrum_gap(real, fake, frame)

    def _penalty(self, real, fake, labels, epsilon):
        """The critic's penalty of one update (without its weight)."""
        critic = lambda x: self._criticize(x, labels)  # noqa: E731
        if self.penalty == "r1":
            return losses.r1_penalty(critic, real)
        # The global batch's coefficients: same penalty on 1 or N devices.
        return losses.gradient_penalty(critic, real, fake, epsilon=epsilon)

    @staticmethod
    def _grad_norm(grads, optimizer, replicas):
        """Global L2 norm of this replica's unscaled gradient."""
        total = ops.sqrt(sum(ops.sum(ops.square(ops.cast(g, "float32")))
                             for g in grads if g is not None))
        loss_scale = ops.cast(optimizer.scale_loss(1.0), "float32")
        return total * replicas / loss_scale

    # -- checkpoint state ------------------------------------------------
    def state_groups(self):
        """Every variable a checkpoint must hold, by group, in a fixed order."""
        return {
            "generator": list(self.generator.variables),
            "critic": list(self.critic.variables),
            "ema_generator": list(self.ema_generator.variables),
            "d_optimizer": list(self.d_optimizer.variables),
            "g_optimizer": list(self.g_optimizer.variables),
            "rng": [self.seed_generator.state],
        }


def build_gan(spec, preset: Preset, loss="wgan-gp", seed=0, strategy=None):
    """Build and compile the :class:`ProgressiveGAN` of a spec and preset.

    Networks and optimisers are created under ``strategy.scope()`` and under
    the preset's mixed-precision policy (restored afterwards). Adam with the
    preset's ``learning_rate, beta_1, beta_2`` for both players (PGGAN:
    0.001, 0, 0.99; a per-scale learning rate starts at scale 0's, and
    :func:`run_phases` sets each phase's); wrapped in a ``LossScaleOptimizer``
    for ``mixed_float16``.

    Args:
        spec: ``models.ModelSpec`` or ``spectral_models.SpectralModelSpec``.
        preset: The preset (optimiser, EMA, n_critic, precision).
        loss: ``"wgan-gp"`` or ``"report"``.
        seed: Seed of the GAN's RNG (latents, interpolation coefficients).
        strategy: A ``tf.distribute.Strategy`` (default: the current one).

    Returns:
        A compiled :class:`ProgressiveGAN` at scale 0.
    """
    strategy = strategy or tf.distribute.get_strategy()
    previous_policy = keras.config.dtype_policy()
    # Seeds Python, NumPy and TF (weight initialisers): same seed, same initial weights.
    keras.utils.set_random_seed(seed)
    try:
        if preset.mixed_precision:
            keras.config.set_dtype_policy(preset.mixed_precision)
        build_generator, build_critic = representations.network_builders(spec)
        with strategy.scope():
            gan = ProgressiveGAN(
                build_generator(spec), build_critic(spec),
                build_generator(spec), latent_dim=spec.latent_dim, loss=loss,
                n_critic=preset.n_critic, gp_weight=preset.gp_weight,
                drift_weight=preset.drift_weight, penalty=preset.penalty,
                ema_decay=preset.ema_decay,
                conditional=spec.num_classes > 0, seed=seed, augment=preset.augment,
                spectrum_match=preset.spectrum_match)

            first_rate = preset.per_scale("learning_rate", spec.num_scales)[0]

            def adam():
                optimizer = keras.optimizers.Adam(first_rate, beta_1=preset.beta_1,
                                                  beta_2=preset.beta_2, epsilon=1e-8)
                if preset.mixed_precision == "mixed_float16":
                    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
                return optimizer

            gan.compile(d_optimizer=adam(), g_optimizer=adam())
            gan.set_scale(gan.generator.first_scale)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return gan


def choose_strategy() -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy for the accelerators this process can see.

    A TPU if one answers (Colab's TPU runtime, a Cloud TPU VM), else all local
    GPUs with ``MirroredStrategy`` when there are several, else the default
    strategy (one GPU, or the CPU). This is the only line that changes between
    one GPU, several GPUs and a TPU::

        training.train(data_dir, run_dir, preset="colab", strategy=choose_strategy())

    The global batch size stays the preset's; each replica trains on its share.

    Returns:
        A ``tf.distribute.Strategy``; ``num_replicas_in_sync`` is the number
        of devices a step runs on.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    try:
        # Raises ValueError (RuntimeError on Google Cloud) when no TPU is attached.
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    except (ValueError, RuntimeError):
        resolver = None
    if resolver is not None:
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


# ---------------------------------------------------------------------------
# Atomic files, checkpoints, history
# ---------------------------------------------------------------------------

def save_checkpoint(gan: ProgressiveGAN, path, meta: dict) -> Path:
    """Save every variable of the GAN (3 networks, 2 optimisers, RNG) atomically.

    One ``.npz`` file: arrays ``"<group>/<index>"`` (groups from
    :meth:`ProgressiveGAN.state_groups`) and ``"__meta__"`` (JSON: step,
    scale, alpha, ..., and ``checksum``, the SHA-256 of the arrays that
    :func:`verify_checkpoint` recomputes).

    Args:
        gan: The GAN.
        path: Target file (``.npz``).
        meta: JSON-serialisable counters stored beside the weights.

    Returns:
        ``path``.
    """
    arrays = {f"{group}/{i}": np.asarray(ops.convert_to_numpy(v))
              for group, variables in gan.state_groups().items()
              for i, v in enumerate(variables)}
    meta = dict(meta, groups={g: len(v) for g, v in gan.state_groups().items()},
                checksum=_arrays_checksum(arrays))
    arrays[runs.CHECKPOINT_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    def write(tmp):
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    files.atomic_write(path, write, suffix=".npz.tmp")
    return Path(path)


class CheckpointDamaged(RunError):
    """A checkpoint file that cannot be read back whole (truncated, empty, corrupted)."""


def _arrays_checksum(arrays) -> str:
    """SHA-256 over the arrays' names, shapes, dtypes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(k for k in arrays if k != runs.CHECKPOINT_META):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def verify_checkpoint(path) -> dict:
    """Read a whole checkpoint and check its checksum; return its meta dict.

    Args:
        path: A ``ckpt-*.npz`` file.

    Returns:
        The ``__meta__`` dict.

    Raises:
        CheckpointDamaged: The file is empty, truncated, not a zip archive, has a
            bad CRC or its arrays do not match the stored checksum (the message
            names the file and the reason, in one line).
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ValueError("the file is empty")
        with np.load(path) as stored:
            meta = runs.checkpoint_meta(stored)
            arrays = {name: stored[name] for name in stored.files
                      if name != runs.CHECKPOINT_META}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise CheckpointDamaged(f"{path}: damaged checkpoint ({reason})") from None
    # Checkpoints written before checksums existed rely on the zip CRCs checked above.
    if "checksum" in meta and _arrays_checksum(arrays) != meta["checksum"]:
        raise CheckpointDamaged(f"{path}: damaged checkpoint (its arrays do not match the "
                                f"checksum stored in it)")
    return meta


def read_checkpoint_meta(path) -> dict:
    """The ``__meta__`` dict of a checkpoint file, checked whole (:func:`verify_checkpoint`)."""
    return verify_checkpoint(path)


def load_checkpoint(gan: ProgressiveGAN, path, groups=None) -> dict:
    """Assign a checkpoint's arrays to the GAN's variables.

    Args:
        gan: A GAN built with the same spec and preset.
        path: File written by :func:`save_checkpoint`.
        groups: Only these groups (default: all).

    Returns:
        The checkpoint's meta dict.

    Raises:
        RunError: The file does not match this GAN (different spec/preset).
    """
    with np.load(path) as arrays:
        meta = runs.checkpoint_meta(arrays)
        for group, variables in gan.state_groups().items():
            if groups is not None and group not in groups:
                continue
            stored = meta["groups"].get(group)
            if stored != len(variables):
                raise RunError(f"{path}: checkpoint group {group!r} has {stored} variables, "
                               f"the model has {len(variables)} (built from another spec?)")
            for i, variable in enumerate(variables):
                value = arrays[f"{group}/{i}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise RunError(f"{path}: {group}/{i} ({variable.path}) has shape "
                                   f"{value.shape} in the checkpoint, {variable.shape} in "
                                   f"the model")
                variable.assign(value)
    return meta


def latest_checkpoint(run_dir, warn=True):
    """Newest *intact* ``checkpoints/ckpt-<step>.npz`` of a run, or None when there is none.

    Damaged files (a full disk, a copy cut short) are skipped with a one-line
    warning on stderr naming the file and the reason, so that a run falls back
    to the newest checkpoint it can trust.

    Args:
        run_dir: A run folder.
        warn: Print the warnings.

    Returns:
        The path, or None when the folder holds no checkpoint at all.

    Raises:
        CheckpointDamaged: There are checkpoints, and every one is damaged.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    found = sorted(((int(m.group(1)), folder / name) for name in os.listdir(folder)
                    if (m := _CHECKPOINT_PATTERN.match(name))), reverse=True)
    for _, path in found:
        try:
            verify_checkpoint(path)
            return path
        except CheckpointDamaged as error:
            if warn:
                print(f"warning: {error}; skipping it", file=sys.stderr, flush=True)
    if found:
        raise CheckpointDamaged(
            f"{folder}: all {len(found)} checkpoints are damaged; restore a copy of the "
            f"folder or start a new run in a new folder")
    return None


def _prune_checkpoints(run_dir, keep=_KEEP_CHECKPOINTS):
    folder = Path(run_dir) / "checkpoints"
    found = sorted(name for name in os.listdir(folder) if _CHECKPOINT_PATTERN.match(name))
    for name in found[:-keep]:
        os.unlink(folder / name)


def _append_history(path, rows):
    if not rows:
        return
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS)
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())


def _truncate_history(path, last_step):
    """Keep the rows with ``step <= last_step`` (those the checkpoint includes)."""
    with open(path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= last_step]

    def write(tmp):
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    files.atomic_write(path, write)


#: ``history.csv`` as columns (defined with the folder's layout in :mod:`pggan_lib.runs`).
read_history = runs.read_history


# ---------------------------------------------------------------------------
# The training driver
# ---------------------------------------------------------------------------

def _read_dataset_manifest(data_dir) -> dict:
    data_dir = Path(data_dir)
    if not (data_dir / "manifest.json").is_file():
        raise RunError(f"{data_dir}: not a built dataset (no {data_dir / 'manifest.json'}); "
                       f"build one with `pggan dataset SOURCE {data_dir}`")
    return data.read_manifest(data_dir)


def _strided_share(x, replicas, replica_id, axis=0):
    """Replica ``r``'s share of a global batch: items ``r, r + n, r + 2n, ...``.

    Strided (not contiguous) so that minibatch-stddev groups, which are also
    strided, are the same as on one device when each replica holds one group.
    Reshape + gather keeps shapes static for XLA.
    """
    shape = ops.shape(x)
    grouped = ops.reshape(x, tuple(shape[:axis]) + (shape[axis] // replicas, replicas)
                          + tuple(shape[axis + 1:]))
    return ops.take(grouped, replica_id, axis=axis + 1)


def make_step_function(gan: ProgressiveGAN, strategy, global_batch, jit_compile):
    """One compiled training step for the GAN's current scale.

    Randomness for the global batch is drawn in cross-replica context (one RNG
    state, one stream, whatever the device count); each replica trains on its
    strided share; measurements are averaged over replicas. :func:`train` and
    the benchmarks (``profiling.benchmark_scales``) time the same function.

    Args:
        gan: A compiled :class:`ProgressiveGAN`, already at its scale.
        strategy: The ``tf.distribute.Strategy`` the GAN was built under.
        global_batch: Batch size summed over replicas.
        jit_compile: Compile with XLA.

    Returns:
        ``step(real, labels) -> dict`` of the step's scalars (:data:`METRIC_NAMES`).
    """
    replicas = strategy.num_replicas_in_sync

    def replica_step(real, labels, noise):
        if replicas > 1:
            rid = tf.distribute.get_replica_context().replica_id_in_sync_group
            real = _strided_share(real, replicas, rid)
            labels = _strided_share(labels, replicas, rid)
            # Every entry but z_generator has the batch on axis 1.
            noise = {k: _strided_share(v, replicas, rid, axis=0 if k == "z_generator" else 1)
                     for k, v in noise.items()}
        return gan.train_step((real, labels), noise)

    # autograph off: the step has no tensor-dependent Python control flow, and
    # converting Keras internals costs seconds of tracing per phase.
    if jit_compile:
        replica_step = tf.function(replica_step, jit_compile=True, autograph=False)

    @tf.function(autograph=False)
    def step(real, labels):
        noise = gan.draw_noise(global_batch, real.shape[1])
        values = strategy.run(replica_step, args=(real, labels, noise))
        values = {k: strategy.reduce("MEAN", v, axis=None) for k, v in values.items()}
        if replicas > 1:
            gan.update_ema()
        return values

    return step


#: Values of ``Preset.data``.
DATA_MODES = ("clips", "windows")


def _phase_batches(data_dir, preset, phase, seed, first, spec):
    """The phase's seeded batches of real data, from batch ``first`` on (resume).

    A spectrogram run reads finest-scale windows and maps them to the phase's
    spectrogram size (:func:`representations.real_batch`).
    """
    phase_seed = seed * 1009 + phase.index
    spectral = preset.representation != "waveform"
    scale = spec.num_scales - 1 if spectral else phase.scale
    if preset.data == "windows":
        gain_scale = spec.num_scales - 1 if preset.scale_gains == "finest" else None
        dataset = data.make_window_dataset(data_dir, "train", scale, phase.batch_size,
                                           seed=phase_seed, start_batch=first,
                                           gain_scale=gain_scale)
    else:
        dataset = data.make_tf_dataset(data_dir, split="train", scale=scale,
                                       batch_size=phase.batch_size, shuffle=True, repeat=True,
                                       seed=phase_seed)
        dataset = dataset.skip(first) if first else dataset
    if spectral:
        # Plain graph ops: nothing for autograph to convert (it would re-read the source).
        @tf.autograph.experimental.do_not_convert
        def to_spectrograms(clips, labels):
            return representations.real_batch(clips, spec, phase.scale), labels

        dataset = dataset.map(to_spectrograms, num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)
    return dataset


def _resolve_options(run_dir, resume, preset, loss, activation, conditional, seed,
                     critic_output=None):
    """Options of a fresh run, or those stored in a resumed run's config.json."""
    if not resume:
        preset = get_preset("quick" if preset is None else preset)
        return dict(preset=preset, loss=loss or preset.loss,
                    activation=activation or preset.activation,
                    conditional=bool(conditional), seed=0 if seed is None else int(seed),
                    critic_output=critic_output)
    stored = runs.read_config(run_dir, RunError)
    options = dict(preset=Preset(**stored["preset"]), loss=stored["loss"],
                   activation=stored["activation"], conditional=stored["conditional"],
                   seed=stored["seed"], critic_output=stored.get("critic_output"))
    asked = dict(preset=None if preset is None else get_preset(preset).name, loss=loss,
                 activation=activation, conditional=conditional, seed=seed,
                 critic_output=critic_output)
    for name, value in asked.items():
        have = options[name].name if name == "preset" else options[name]
        if value is not None and value != have and not (name == "conditional" and not value):
            raise RunError(f"{run_dir} was started with {name}={have!r}; resuming continues "
                           f"with the run's own settings (asked: {value!r}). Drop the option "
                           f"or start a new run folder.")
    return options


def _write_samples(gan, run_dir, writer, phase, global_step, sample_rate, num_scales,
                   fixed_z, num_classes):
    """WAVs (and TensorBoard audio) from the EMA generator at a phase end."""
    labels = np.arange(len(fixed_z), dtype=np.int32) % max(num_classes, 1)
    outputs = ops.convert_to_numpy(gan._generate(gan.ema_generator, fixed_z, labels, False))
    clips = representations.to_audio(gan.ema_generator.spec, outputs, phase.scale)[..., None]
    rate = scale_sample_rate(phase.scale, num_scales, sample_rate)
    folder = Path(run_dir) / "samples"
    for i, clip in enumerate(clips):
        audio.save_audio(folder / f"step{global_step:07d}_scale{phase.scale}_{phase.kind}_{i}.wav",
                         clip[:, 0], rate)
    with writer.as_default():
        tf.summary.audio(f"samples/scale{phase.scale}", np.clip(clips, -1, 1).astype(np.float32),
                         rate, step=global_step, max_outputs=len(clips))


#: Records the last phase whose ``on_phase_end`` hook returned (a resume finishes
#: a hook that a crash interrupted).
_HOOK_STATE = "phase_hooks.json"


def _finish_phase_hook(run_dir, schedule, global_step, on_phase_end):
    """On resume at a phase's last step, run that phase's hook if it never returned.

    The checkpoint and ``generator.keras`` of a phase end are written before the
    hook runs, so right after loading that checkpoint the model is exactly as
    the hook would have seen it.
    """
    ended = [p for p in schedule if p.end_step == global_step]
    if on_phase_end is None or not ended:
        return
    path = Path(run_dir) / _HOOK_STATE
    done = json.loads(path.read_text())["phase_end_done"] if path.is_file() else -1
    if done < ended[0].index:
        on_phase_end(run_dir, ended[0])
        files.write_json(path, {"phase_end_done": ended[0].index})


def _save_generator(gan, run_dir, phase, global_step):
    """The EMA generator as ``generator.keras`` + ``run_state.json`` (for generate)."""
    run_dir = Path(run_dir)
    files.atomic_write(run_dir / runs.GENERATOR_FILE, lambda tmp: gan.ema_generator.save(tmp),
                  suffix=".tmp.keras")
    files.write_json(run_dir / runs.STATE_FILE,
                {"trained_scale": phase.scale, "phase": phase.index, "phase_kind": phase.kind,
                 "global_step": global_step})


# ---------------------------------------------------------------------------
# Preparing a run
# ---------------------------------------------------------------------------

def _check_run_folder(run_dir: Path, resume: bool):
    """The newest intact checkpoint of a run to resume (None for a new run), or a RunError."""
    if not resume:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RunError(f"{run_dir} already exists; pass resume=True (--resume) to continue "
                           f"that run, or give a new folder")
        return None
    runs.require_run_folder(run_dir, RunError, "start a new run without resume=True (--resume)")
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise RunError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'} to resume "
                       f"from; start a new run without resume=True (--resume) in a new "
                       f"folder")
    return checkpoint


def _check_preset(preset: Preset, options: dict, manifest: dict, data_dir: Path) -> None:
    """One RunError naming the preset field or dataset property that cannot work."""
    if preset.data not in DATA_MODES:
        raise RunError(f"preset field data={preset.data!r}: choose one of {DATA_MODES}")
    if preset.scale_gains not in SCALE_GAINS:
        raise RunError(f"preset field scale_gains={preset.scale_gains!r}: choose one of "
                       f"{SCALE_GAINS}")
    if preset.scale_gains != "per_scale" and preset.data != "windows":
        raise RunError(f"preset field scale_gains={preset.scale_gains!r} needs "
                       f"data='windows' (fixed clips are normalised per clip and scale)")
    try:
        layers.check_augment(preset.augment)
    except ValueError as error:
        raise RunError(f"preset field augment: {error}") from None
    if options["loss"] not in losses.LOSS_NAMES:
        raise RunError(f"unknown loss {options['loss']!r}; choose one of {losses.LOSS_NAMES}")
    clip_samples = int(manifest["clip_samples"])
    if preset.min_clip_samples > clip_samples:
        raise RunError(
            f"preset {preset.name!r} needs clips of at least {preset.min_clip_samples} samples "
            f"at the finest scale; {data_dir} has {clip_samples}. Rebuild it with "
            f"`pggan dataset SOURCE OUT --clip-samples {preset.min_clip_samples}`")
    if preset.representation not in representations.REPRESENTATIONS:
        raise RunError(f"preset field representation={preset.representation!r}: choose one "
                       f"of {representations.REPRESENTATIONS}")
    if preset.representation != "waveform" and options["conditional"]:
        raise RunError(f"representation={preset.representation!r}: the spectrogram models "
                       f"are unconditional; drop --conditional")
    if preset.penalty not in PENALTIES:
        raise RunError(f"preset field penalty={preset.penalty!r}: choose one of "
                       f"{PENALTIES}")
    rates = preset.per_scale("learning_rate", int(manifest["num_scales"]))
    if not all(math.isfinite(rate) and rate > 0 for rate in rates):
        raise RunError(f"preset field learning_rate={preset.learning_rate}: every rate "
                       f"must be a finite number > 0")
    _check_waveform_options(preset)
    _check_architecture(preset, int(manifest["num_scales"]))
    if options["conditional"] and len(manifest["class_names"]) < 2:
        raise RunError(f"{data_dir}: conditional training needs at least 2 classes, the "
                       f"dataset has {manifest['class_names']}")


def _check_waveform_options(preset: Preset) -> None:
    """The fields that only the progressive waveform players have, and their ranges."""
    for field, off in WAVEFORM_PLAYER_FIELDS.items():
        if getattr(preset, field) != off and (preset.representation != "waveform"
                                              or preset.architecture != "progressive"):
            raise RunError(f"preset field {field}={getattr(preset, field)}: the progressive "
                           f"waveform players only (representation="
                           f"{preset.representation!r}, architecture={preset.architecture!r})")
    if not 0.0 <= preset.critic_emphasis < 1.0:
        raise RunError(f"preset field critic_emphasis={preset.critic_emphasis}: must be "
                       f"in [0, 1)")
    if preset.upsample not in UPSAMPLERS:
        raise RunError(f"preset field upsample={preset.upsample!r}: must be one of "
                       f"{UPSAMPLERS}")
    if not preset.spectrum_match >= 0.0:
        raise RunError(f"preset field spectrum_match={preset.spectrum_match}: must be >= 0 "
                       f"(a loss weight; 0 = none)")
    spectrum = preset.critic_spectrum
    if spectrum and not is_fft_length(spectrum):
        raise RunError(f"preset field critic_spectrum={spectrum}: must be 0 (none) or a "
                       f"power of 2 >= 4 (an FFT length in samples)")


def _check_architecture(preset: Preset, num_scales: int) -> None:
    """A WaveGAN run trains the finest scale alone, on waveforms."""
    if preset.architecture not in ARCHITECTURES:
        raise RunError(f"preset field architecture={preset.architecture!r}: choose one of "
                       f"{ARCHITECTURES}")
    if preset.architecture != "wavegan":
        return
    if preset.representation != "waveform":
        raise RunError(f"architecture='wavegan' makes waveforms; representation="
                       f"{preset.representation!r} needs architecture='progressive'")
    below = [k for k in range(num_scales - 1)
             if preset.per_scale("stable_steps", num_scales)[k]
             or (k and preset.per_scale("fade_steps", num_scales)[k])]
    last_fade = preset.per_scale("fade_steps", num_scales)[-1]
    if below or last_fade:
        raise RunError(f"architecture='wavegan' has only the finest scale ({num_scales - 1}): "
                       f"set stable_steps and fade_steps to 0 below it and fade_steps to 0 "
                       f"there (scales with steps: {below or [num_scales - 1]})")


def _check_batches(schedule, manifest: dict, data_dir: Path, replicas: int) -> None:
    train_clips = int(manifest["splits"]["train"]["num_clips"])
    for phase in schedule:
        if phase.batch_size > train_clips:
            raise RunError(f"{data_dir}: batch size {phase.batch_size} (scale {phase.scale}) is "
                           f"larger than the {train_clips} training clips")
        if phase.batch_size % replicas:
            raise RunError(f"batch size {phase.batch_size} (scale {phase.scale}) is not "
                           f"divisible by the {replicas} replicas of the strategy")


@dataclasses.dataclass
class TrainingRun:
    """Everything the loop and its hooks share about one run (made by :func:`prepare_run`).

    Attributes:
        run_dir, data_dir: The run folder and the dataset.
        manifest: The dataset's manifest.
        preset: The preset, overrides applied.
        options: ``loss``, ``activation``, ``conditional``, ``seed``, ``critic_output``.
        spec: The models' :class:`~pggan_lib.models.ModelSpec`.
        gan: The :class:`ProgressiveGAN` (restored from the checkpoint on resume).
        strategy: Its ``tf.distribute.Strategy``.
        schedule: The phases (:func:`make_schedule`).
        global_step: Steps taken so far (the loop advances it).
        start: ``time.monotonic()`` of step 0 (elapsed time survives resumes).
        pending: History rows not yet appended to ``history.csv``.
    """

    run_dir: Path
    data_dir: Path
    manifest: dict
    preset: Preset
    options: dict
    spec: models.ModelSpec
    gan: ProgressiveGAN
    strategy: tf.distribute.Strategy
    schedule: list
    global_step: int
    start: float
    pending: list = dataclasses.field(default_factory=list)

    @property
    def history_path(self) -> Path:
        return self.run_dir / runs.HISTORY_FILE

    @property
    def total_steps(self) -> int:
        return self.schedule[-1].end_step

    def flush_history(self) -> None:
        """Append the pending rows to ``history.csv`` (fsynced)."""
        _append_history(self.history_path, self.pending)
        self.pending.clear()


def _write_run_config(run: TrainingRun) -> None:
    options, manifest = run.options, run.manifest
    files.write_json(run.run_dir / runs.CONFIG_FILE, {
        "preset": dataclasses.asdict(run.preset), "model_spec": run.spec.to_dict(),
        "loss": options["loss"], "activation": options["activation"],
        "conditional": options["conditional"], "seed": options["seed"],
        "critic_output": options["critic_output"], "data_dir": str(run.data_dir),
        "strategy_replicas": run.strategy.num_replicas_in_sync,
        "dataset": {k: manifest.get(k) for k in ("sample_rate", "clip_samples",
                                                 "num_scales", "class_names", "splits")},
        "schedule": [dataclasses.asdict(p) for p in run.schedule],
    })


def prepare_run(data_dir, run_dir, preset=None, resume=False, loss=None, activation=None,
                conditional=None, seed=None, strategy=None, overrides=None,
                critic_output=None) -> TrainingRun:
    """Check the options, build the GAN, and start a run folder or restore one.

    A new run gets ``config.json``, an empty ``history.csv`` and a step-0
    checkpoint; a resumed run is restored from its newest intact checkpoint
    (temporary files of writes cut short by a kill removed, history cut back
    to the checkpoint's step). Arguments as :func:`train`.

    Returns:
        The :class:`TrainingRun` that :func:`run_phases` continues.

    Raises:
        RunError: Bad data folder, run folder, options or preset.
    """
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    manifest = _read_dataset_manifest(data_dir)
    checkpoint = _check_run_folder(run_dir, resume)
    options = _resolve_options(run_dir, resume, preset, loss, activation, conditional, seed,
                               critic_output)
    preset = options.pop("preset")
    if overrides:
        if resume:
            raise RunError("overrides apply to new runs only; a resumed run keeps its preset")
        preset = preset.replace(**overrides)
    preset = for_players(preset, keep=overrides or ())
    if preset.representation != "waveform" and preset.augment:
        preset = preset.replace(augment=())  # waveform transforms; config.json records none
    _check_preset(preset, options, manifest, data_dir)
    strategy = strategy or tf.distribute.get_strategy()
    schedule = make_schedule(preset, int(manifest["num_scales"]))
    _check_batches(schedule, manifest, data_dir, strategy.num_replicas_in_sync)
    spec = model_spec_for(preset, manifest, options["activation"], options["conditional"],
                          options["critic_output"])
    gan = build_gan(spec, preset, options["loss"], options["seed"], strategy)
    run = TrainingRun(run_dir, data_dir, manifest, preset, options, spec, gan, strategy,
                      schedule, global_step=0, start=time.monotonic())
    if resume:
        # Temporary files of writes cut short by a kill: never the real thing.
        for folder in (run_dir, run_dir / "checkpoints"):
            for stale in [*folder.glob(".*.tmp"), *folder.glob(".*.tmp.keras")]:
                stale.unlink()
        meta = load_checkpoint(gan, checkpoint)
        run.global_step = int(meta["global_step"])
        run.start = time.monotonic() - float(meta["elapsed_s"])
        _truncate_history(run.history_path, run.global_step)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_run_config(run)
        _start_history(run.history_path)
        save_checkpoint(gan, run_dir / "checkpoints" / f"ckpt-{0:08d}.npz",
                        {"global_step": 0, "elapsed_s": 0.0, "scale": 0, "alpha": 1.0})
    return run


# ---------------------------------------------------------------------------
# Hooks: the side work of a run
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class StepRecord:
    """What one optimiser step did (what :meth:`TrainingHook.after_step` receives).

    Attributes:
        phase: Its :class:`Phase`.
        index: Step index within the phase (0-based).
        alpha: Fade-in weight used.
        values: The step's scalars (:data:`METRIC_NAMES`) as floats.
        phase_end: True for the phase's last step.
        stopping: True when a hook asked the run to stop after this step.
    """

    phase: Phase
    index: int
    alpha: float
    values: dict
    phase_end: bool
    stopping: bool = False


class TrainingHook:
    """Side work of a run, called by :func:`run_phases` (``keras.callbacks.Callback``'s role).

    After every step the loop first asks every hook's :meth:`stop_reason`, then
    calls every hook's :meth:`after_step` in order (with ``step.stopping`` set),
    then stops if any hook asked. Subclass and override what you need.
    """

    def stop_reason(self, run: TrainingRun, step: Optional[StepRecord]) -> Optional[str]:
        """None to go on; else a message ("" for none) and the run stops after this step.

        Called with ``step=None`` before each phase's first step (a resumed run
        may already be at its limit).
        """
        return None

    def after_step(self, run: TrainingRun, step: StepRecord) -> None:
        """Side work after a step (logs, samples, checkpoints)."""

    def close(self, run: TrainingRun) -> None:
        """Called once when the loop ends, normally or by an exception."""


class LogHook(TrainingHook):
    """Running means to TensorBoard (``tb/``) and history rows to disk every ``log_every`` steps."""

    def __init__(self, run: TrainingRun, bar=None):
        self.writer = tf.summary.create_file_writer(str(run.run_dir / "tb"))
        self.bar = bar
        self.tick, self.tick_step = time.monotonic(), run.global_step

    def after_step(self, run, step):
        if run.global_step % run.preset.log_every and not step.phase_end:
            return
        now = time.monotonic()
        with self.writer.as_default():
            for metric in run.gan.metrics:
                tf.summary.scalar(f"train/{metric.name}", metric.result(), step=run.global_step)
            tf.summary.scalar("train/alpha", step.alpha, step=run.global_step)
            tf.summary.scalar("train/scale", step.phase.scale, step=run.global_step)
            tf.summary.scalar("train/steps_per_s", (run.global_step - self.tick_step)
                              / max(now - self.tick, 1e-9), step=run.global_step)
        self.tick, self.tick_step = now, run.global_step
        if self.bar is not None:
            values = step.values
            self.bar.set_postfix(scale=step.phase.scale, alpha=f"{step.alpha:.2f}",
                                 d=f"{values['d_loss']:.3g}", g=f"{values['g_loss']:.3g}",
                                 delta=f"{values['delta']:.3g}")
        run.gan.reset_metrics()
        run.flush_history()

    def close(self, run):
        self.writer.flush()


class SamplesHook(TrainingHook):
    """WAV samples and TensorBoard audio of fixed latents at each phase end (and every
    ``sample_every`` steps); ``generator.keras`` and ``run_state.json`` at each phase end."""

    def __init__(self, run: TrainingRun, writer):
        self.writer = writer
        self.fixed_z = np.random.default_rng(run.options["seed"] + 7).standard_normal(
            (run.preset.num_samples, run.spec.latent_dim)).astype(np.float32)

    def after_step(self, run, step):
        every = run.preset.sample_every
        if step.phase_end or (every and run.global_step % every == 0):
            _write_samples(run.gan, run.run_dir, self.writer, step.phase, run.global_step,
                           int(run.manifest["sample_rate"]), run.spec.num_scales,
                           self.fixed_z, run.spec.num_classes)
        if step.phase_end:
            _save_generator(run.gan, run.run_dir, step.phase, run.global_step)


class CheckpointHook(TrainingHook):
    """A checkpoint every ``checkpoint_every`` steps, at each phase end and when stopping."""

    def __init__(self, keep: Optional[int] = _KEEP_CHECKPOINTS):
        self.keep = keep

    def after_step(self, run, step):
        if not (step.phase_end or step.stopping
                or run.global_step % run.preset.checkpoint_every == 0):
            return
        run.flush_history()
        save_checkpoint(run.gan, run.run_dir / "checkpoints" / f"ckpt-{run.global_step:08d}.npz",
                        {"global_step": run.global_step, "elapsed_s": time.monotonic() - run.start,
                         "scale": step.phase.scale, "phase": step.phase.index,
                         "alpha": step.alpha})
        if self.keep is not None:
            _prune_checkpoints(run.run_dir, self.keep)


class PhaseEndHook(TrainingHook):
    """``callback(run_dir, phase)`` after each phase's checkpoint (``train(on_phase_end=...)``);
    the phase is recorded as done so that a resume redoes only a call that a kill cut short."""

    def __init__(self, callback):
        self.callback = callback

    def after_step(self, run, step):
        if step.phase_end:
            self.callback(run.run_dir, step.phase)
            files.write_json(run.run_dir / _HOOK_STATE, {"phase_end_done": step.phase.index})


class StepLimitHook(TrainingHook):
    """Stop (silently, with a checkpoint) once the global step reaches ``max_steps``."""

    def __init__(self, max_steps: int):
        self.max_steps = int(max_steps)

    def stop_reason(self, run, step):
        return "" if run.global_step >= self.max_steps else None


class DeadlineHook(TrainingHook):
    """Stop (with a checkpoint and one line) after ``max_minutes`` of this process's training."""

    def __init__(self, max_minutes: float):
        self.max_minutes = float(max_minutes)
        self.deadline = time.monotonic() + 60.0 * self.max_minutes

    def stop_reason(self, run, step):
        if step is None or time.monotonic() <= self.deadline:
            return None
        return (f"stopped after {self.max_minutes:g} minutes at step {run.global_step} of "
                f"{run.total_steps}; continue with resume=True (--resume)")


class StepCallbackHook(TrainingHook):
    """``callback(gan, phase, global_step)`` after every step; True stops the run
    (``train(on_step=...)``, e.g. ``pggan study``'s quality measurements)."""

    def __init__(self, callback):
        self.callback = callback

    def stop_reason(self, run, step):
        if step is None:
            return None
        return "" if self.callback(run.gan, step.phase, run.global_step) else None


class ProgressHook(TrainingHook):
    """A tqdm bar over the run's steps."""

    def __init__(self, run: TrainingRun, enabled: bool = True):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=run.total_steps, initial=run.global_step, unit="step",
                        disable=not enabled, dynamic_ncols=True)

    def after_step(self, run, step):
        self.bar.update(1)

    def close(self, run):
        self.bar.close()


def default_hooks(run: TrainingRun, progress=True, max_minutes=None, max_steps=None,
                  keep_checkpoints=_KEEP_CHECKPOINTS, on_step=None,
                  on_phase_end=None) -> list[TrainingHook]:
    """The hooks of :func:`train`, in the order they run after a step.

    Returns:
        Limits first (asked before the side work), then progress, logs,
        samples, checkpoint, and the phase-end callback (after the checkpoint,
        so that it sees the phase's saved generator).
    """
    hooks = []
    if max_steps is not None:
        hooks.append(StepLimitHook(max_steps))
    if max_minutes is not None:
        hooks.append(DeadlineHook(max_minutes))
    if on_step is not None:
        hooks.append(StepCallbackHook(on_step))
    bar = ProgressHook(run, progress)
    log = LogHook(run, bar.bar)
    hooks += [bar, log, SamplesHook(run, log.writer), CheckpointHook(keep_checkpoints)]
    if on_phase_end is not None:
        hooks.append(PhaseEndHook(on_phase_end))
    return hooks


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------

def _stop_messages(hooks, run, step):
    reasons = [hook.stop_reason(run, step) for hook in hooks]
    return [reason for reason in reasons if reason is not None]


def _guarded_metrics(preset: Preset) -> list:
    # Under float16 loss scaling, an infinite gradient is expected now and then:
    # the LossScaleOptimizer skips that update and lowers the scale.
    return [k for k in METRIC_NAMES
            if preset.mixed_precision != "mixed_float16" or not k.endswith("grad_norm")]


def _take_step(run: TrainingRun, phase: Phase, index: int, step_fn, batches, guarded):
    alpha = fade_alpha(phase, index)
    run.gan.set_alpha(alpha)
    real, labels = next(batches)
    values = {k: float(v) for k, v in step_fn(real, labels).items()}
    run.global_step += 1
    run.pending.append(dict(step=run.global_step, phase=phase.index, scale=phase.scale,
                            alpha=alpha, **values,
                            elapsed_s=round(time.monotonic() - run.start, 3)))
    if not all(math.isfinite(values[k]) for k in guarded):
        run.flush_history()
        raise TrainingDiverged(run.global_step, phase.scale, phase.index, values,
                               read_history(run.run_dir))
    return StepRecord(phase, index, alpha, values, phase_end=index == phase.steps - 1)


def run_phases(run: TrainingRun, hooks: Sequence[TrainingHook]) -> bool:
    """Train the remaining steps of ``run``'s schedule, calling ``hooks`` after each step.

    Args:
        run: From :func:`prepare_run`.
        hooks: :class:`TrainingHook` objects (:func:`default_hooks`).

    Returns:
        True when the schedule is finished, False when a hook stopped the run.
    """
    step_functions = {}  # (scale, batch): a fade and a stable phase share one trace
    guarded = _guarded_metrics(run.preset)
    try:
        for phase in run.schedule:
            if phase.end_step <= run.global_step:
                continue
            if _stop_messages(hooks, run, None):
                return False
            run.gan.set_scale(phase.scale)
            run.gan.set_learning_rate(run.preset.per_scale(
                "learning_rate", run.spec.num_scales)[phase.scale])
            key = (phase.scale, phase.batch_size)
            if key not in step_functions:
                step_functions[key] = make_step_function(run.gan, run.strategy,
                                                         phase.batch_size, run.preset.jit_compile)
            first = run.global_step - phase.start_step
            batches = iter(_phase_batches(run.data_dir, run.preset, phase,
                                          run.options["seed"], first, run.spec))
            for index in range(first, phase.steps):
                step = _take_step(run, phase, index, step_functions[key], batches, guarded)
                messages = _stop_messages(hooks, run, step)
                step.stopping = bool(messages)
                for hook in hooks:
                    hook.after_step(run, step)
                if messages:
                    for message in filter(None, messages):
                        # A planned stop, not a problem: one plain line, no warning machinery.
                        print(message, file=sys.stderr, flush=True)
                    return False
        return True
    finally:
        for hook in hooks:
            hook.close(run)


def train(data_dir, run_dir, preset=None, resume=False, loss=None, activation=None,
          conditional=None, seed=None, max_minutes=None, max_steps=None, strategy=None,
          overrides=None, progress=True, critic_output=None,
          keep_checkpoints=_KEEP_CHECKPOINTS, on_phase_end=None, on_step=None) -> dict:
    """Train a progressive GAN on a built dataset, scale by scale.

    Phases: scale 0 stable, then for each finer scale a fade-in (alpha 0 -> 1
    linearly) and a stable phase (:func:`make_schedule`). Each step: n_critic
    critic updates, one generator update, one EMA update; each phase's step is
    one ``tf.function`` (XLA if the preset says so). Every
    ``preset.checkpoint_every`` steps and at each phase end a checkpoint is
    written atomically; at each phase end also WAV samples, TensorBoard audio,
    ``generator.keras`` (the EMA generator) and ``run_state.json``.

    ``resume=True`` loads the newest intact checkpoint (a damaged one is
    skipped with a warning, :func:`latest_checkpoint`) and continues at the same
    global step, phase, alpha, optimiser state, EMA weights and RNG state; the
    data position is restored by re-creating the phase's seeded dataset and
    skipping the steps already taken. A run killed at any moment resumes from
    its last checkpoint and then equals an uninterrupted run within rounding.

    Args:
        data_dir: Dataset folder (``pggan dataset`` / ``data.build_dataset``).
        run_dir: Run folder; must not exist (or be empty) unless ``resume``.
        preset: Name or :class:`Preset` (default ``"quick"``; on resume the run's own).
        resume: Continue the run in ``run_dir``.
        loss: ``"wgan-gp"`` or ``"report"`` (default: the preset's).
        activation: ``"report"``, ``"leaky"``, ``"linear"`` or ``"tanh"`` (default:
            the preset's). ``"report"`` also puts the report's activation on the
            critic's output; the others leave it linear.
        conditional: Train on class labels (both players conditioned).
        seed: Seed of weights, latents and data order (default 0).
        max_minutes: Stop cleanly (with a checkpoint) after this many minutes.
        max_steps: Stop cleanly (with a checkpoint) once the global step reaches
            this count (for tests and notebooks; resume continues from there).
        strategy: A ``tf.distribute.Strategy`` (default: the current one).
        overrides: Dict of :class:`Preset` fields to change (fresh runs only).
        progress: Show a tqdm progress bar.
        critic_output: The critic's output activation, ``"linear"`` or
            ``"report"`` (default: follows ``activation``, see :func:`model_spec_for`).
        keep_checkpoints: How many of the newest checkpoints to keep (None: all,
            e.g. to study a run's history afterwards).
        on_phase_end: Called as ``on_phase_end(run_dir, phase)`` after each
            phase's checkpoint, when ``generator.keras`` holds the EMA generator
            as that phase left it (e.g. to evaluate it; ``pggan train
            --evaluate``). A phase cut short by a kill is reported again on
            resume, so the callback should overwrite, not append.
        on_step: Called as ``on_step(gan, phase, global_step)`` after every step;
            when it returns True the run checkpoints and stops there (as with
            ``max_steps``; resume continues). For side work such as measuring
            quality during a run (``pggan study``).

    The loop (:func:`run_phases`) only steps; the side work is done by
    :class:`TrainingHook` objects (:func:`default_hooks`: history and
    TensorBoard, samples, checkpoints, step and time limits, the callbacks), so
    a new side task is a new hook, not an edit of the loop.

    Returns:
        The run's history (:func:`read_history`): dict of columns, one entry per
        step since the run began, across resumes.

    Raises:
        RunError: Bad data folder, run folder, options or preset.
        TrainingDiverged: A step produced NaN/Inf (nothing after it is saved).

    Notebook: chapters/03_progressive_model.ipynb
    """
    run = prepare_run(data_dir, run_dir, preset, resume, loss, activation, conditional, seed,
                      strategy, overrides, critic_output)
    if resume:
        _finish_phase_hook(run.run_dir, run.schedule, run.global_step, on_phase_end)
    hooks = default_hooks(run, progress=progress, max_minutes=max_minutes, max_steps=max_steps,
                          keep_checkpoints=keep_checkpoints, on_step=on_step,
                          on_phase_end=on_phase_end)
    run_phases(run, hooks)
    return read_history(run.run_dir)


def _start_history(path):
    """Start an empty ``history.csv`` (header only)."""
    def write(tmp):
        with open(tmp, "w", newline="") as handle:
            csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS).writeheader()
    files.atomic_write(path, write)


# ---------------------------------------------------------------------------
# Generation from a run folder
# ---------------------------------------------------------------------------

def _run_config(run_dir) -> dict:
    return runs.read_config(run_dir, RunError,
                            f"make one with `pggan train --data DATASET --out {run_dir}`")


def load_generator(run_dir, use_ema=True, scale=None):
    """Load a run's generator, ready to generate at its finest trained scale.

    Fast path: ``generator.keras`` (the EMA generator saved at the last
    finished phase). ``use_ema=False``, or a run that has not finished a phase
    yet, builds the generator from ``config.json`` and takes its weights from
    the newest checkpoint.

    Args:
        run_dir: A run folder made by :func:`train`.
        use_ema: The EMA generator (smoother, what PGGAN samples from) or the raw one.
        scale: Scale to generate at (default: the finest trained one).

    Returns:
        ``(generator, info)``: the ``ProgressiveGenerator`` set to ``scale`` with
        alpha 1, and a dict with ``scale``, ``sample_rate``, ``samples``,
        ``class_names``, ``conditional``, ``latent_dim``, ``source`` (file used).

    Raises:
        RunError: No run there, nothing trained yet, or ``scale`` not trained.

    Notebook: chapters/03_progressive_model.ipynb
    """
    run_dir = Path(run_dir)
    config = _run_config(run_dir)
    spec = representations.spec_from_dict(config["model_spec"])
    keras_path, state_path = run_dir / runs.GENERATOR_FILE, run_dir / runs.STATE_FILE
    if use_ema and keras_path.is_file() and state_path.is_file():
        trained = int(runs.read_optional_json(state_path)["trained_scale"])
        generator = keras.saving.load_model(keras_path, safe_mode=True)  # no code runs from the file
        source = keras_path
    else:
        source = latest_checkpoint(run_dir)
        if source is None:
            raise RunError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}; train first "
                           f"(`pggan train --data DATASET --out {run_dir}`)")
        generator = representations.network_builders(spec)[0](spec)
        group = "ema_generator" if use_ema else "generator"
        with np.load(source) as arrays:
            meta = runs.checkpoint_meta(arrays)
            for i, variable in enumerate(generator.variables):
                variable.assign(arrays[f"{group}/{i}"])
        # Mid fade-in the new scale is only partly there: use the one below.
        trained = int(meta["scale"]) - (1 if float(meta["alpha"]) < 1.0 else 0)
        trained = max(trained, 0)
    scale = trained if scale is None else int(scale)
    if not generator.first_scale <= scale <= trained:
        raise RunError(f"{run_dir}: scale {scale} is not trained; trained scales are "
                       f"{generator.first_scale}..{trained}")
    generator.set_scale(scale)
    generator.set_alpha(1.0)
    info = {"scale": scale, "trained_scale": trained,
            "sample_rate": scale_sample_rate(scale, spec.num_scales,
                                             int(config["dataset"]["sample_rate"])),
            "samples": spec.samples_at_scale(scale),
            "class_names": list(config["dataset"]["class_names"]),
            "conditional": spec.conditional, "latent_dim": spec.latent_dim,
            "representation": Preset(**config["preset"]).representation,
            "source": str(source)}
    return generator, info


def _labels_for(info, n, class_name):
    names = info["class_names"]
    if class_name is not None:
        if not info["conditional"]:
            raise RunError(f"class {class_name!r} given, but the model is unconditional; "
                           f"train with --conditional to choose classes")
        if class_name not in names:
            raise RunError(f"unknown class {class_name!r}; the model's classes are: "
                           f"{', '.join(names)}")
        return np.full((n,), names.index(class_name), np.int32)
    return np.arange(n, dtype=np.int32) % max(len(names), 1)


def _generated_batches(run_dir, n, class_name, seed, scale, use_ema, batch_size):
    """Yield ``(start, clips (b, samples), labels (b,), info)`` batch by batch."""
    if int(n) < 1:
        raise RunError(f"number of clips must be >= 1, got {n}")
    generator, info = load_generator(run_dir, use_ema=use_ema, scale=scale)
    labels = _labels_for(info, n, class_name)
    z = np.random.default_rng(seed).standard_normal((n, info["latent_dim"])).astype(np.float32)
    # One graph (traced per batch shape) runs about twice as fast as eager calls.
    generate = tf.function(lambda inputs: generator(inputs, training=False), autograph=False)
    for start in range(0, n, batch_size):
        stop = start + batch_size
        inputs = [z[start:stop], labels[start:stop]] if info["conditional"] else z[start:stop]
        clips = representations.to_audio(generator.spec, ops.convert_to_numpy(
            generate(inputs)), info["scale"])
        yield start, clips, labels[start:stop], info


def generate_audio(run_dir, n, class_name=None, seed=0, scale=None, use_ema=True,
                   batch_size=16):
    """Generate ``n`` clips from a run.

    Args:
        run_dir: Run folder.
        n: Number of clips.
        class_name: Class to generate (conditional runs only; default: classes in turn).
        seed: Seed of the latent vectors.
        scale: Scale (default: finest trained).
        use_ema: Use the EMA generator.
        batch_size: Clips per generator call.

    Returns:
        ``(clips, sample_rate, labels)``: float32 ``(n, samples)``, int, int32 ``(n,)``.

    Notebook: chapters/06_evaluation.ipynb
    """
    batches = list(_generated_batches(run_dir, n, class_name, seed, scale, use_ema, batch_size))
    clips = np.concatenate([b[1] for b in batches])
    labels = np.concatenate([b[2] for b in batches])
    return clips, batches[0][3]["sample_rate"], labels


def write_generated(run_dir, n, out_dir, class_name=None, seed=0, scale=None, use_ema=True,
                    batch_size=16, overwrite=False, progress=False):
    """Generate ``n`` clips and write them as WAV files ``out_dir/<name>_<i>.wav``.

    Clips are written batch by batch, so the first file appears after one
    generator call. Values outside [-1, 1] are clipped by ``audio.save_audio``.
    ``<name>`` is the class for a conditional model, else ``sample``.

    Args:
        run_dir, n, class_name, seed, scale, use_ema, batch_size: As in
            :func:`generate_audio`.
        out_dir: Output folder (created); refused when it already holds files,
            unless ``overwrite``.
        overwrite: Write into a non-empty folder (same names are replaced).
        progress: Show a tqdm bar (clips written).

    Returns:
        List of the paths written.

    Raises:
        FileExistsError: ``out_dir`` is a file, or a non-empty folder without ``overwrite``.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    from tqdm.auto import tqdm

    audio.check_output_folder(out_dir, overwrite)
    paths = []
    with tqdm(total=n, unit="clip", desc="generate", disable=not progress) as bar:
        for start, clips, labels, info in _generated_batches(run_dir, n, class_name, seed,
                                                             scale, use_ema, batch_size):
            for i, (clip, label) in enumerate(zip(clips, labels), start):
                prefix = info["class_names"][label] if info["conditional"] else "sample"
                paths.append(audio.save_audio(Path(out_dir) / f"{prefix}_{i:04d}.wav", clip,
                                              info["sample_rate"]))
            bar.update(len(clips))
    return paths
