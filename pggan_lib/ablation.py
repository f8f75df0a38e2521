"""The ablation grid of the report's activation and loss, its metrics and verdicts.

The source report makes five claims about its changes to PGGAN for audio
(``seed/SEED_BRIEF.md``): (a) its loss makes the critic widen the gap
``|D(G(z)) - D(x)|`` whatever its sign; (b) its constants avoid a dead point
at zero; (c) its activation ``tanh(x) + x/alpha`` removes the sign bias that
LeakyReLU gives generated audio; (d) it avoids the NaN that a linear activation
runs into; (e) ``Delta`` trending down means the generator improves; and it
reports a headline result (f): an Inception Score of up to 7.01. This
module trains a grid ``hidden activation x loss`` (plus arms that change the
critic's output activation) for several seeds with the same budget, measures
every run, and turns the measurements into verdicts, all in code.

One run (:func:`run_arm`) calls :func:`training.train` on the first
``scales`` scales only (the preset's later phases get 0 steps), keeps every
checkpoint (the run folder is scratch space), then *probes* each checkpoint:
generated audio of a fixed latent batch (sign bias, saturation, spectral
distance to real test clips of the same scale), activation magnitudes per
block of generator and critic, with a scored budget the evaluation metrics of
the EMA generator (FD, IS, NDB/K, flatness, and their ratios to the real
clips'), and, on the last checkpoint, the effect of one critic gradient step
on the gap (claim a). A run that diverges is recorded (step, scale) and the
grid goes on. Arms are compared with their seed spread and a permutation test
(:func:`compare_groups`); claim (f) is the report's Inception Score headline.

Notebook: chapters/04_activation_and_loss.ipynb
"""

from __future__ import annotations

import dataclasses
import json
import itertools
import math
import time
from pathlib import Path
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from pggan_lib import data, files, layers, losses, models, runs, training
from pggan_lib.profiling import machine_description
from pggan_lib.config import studied_preset

__all__ = [
    "Arm",
    "AblationBudget",
    "BUDGETS",
    "expand_grid",
    "default_arms",
    "sign_bias",
    "saturation_fraction",
    "audio_bias_metrics",
    "average_power_spectrum_db",
    "spectral_distance",
    "probe_generator",
    "probe_critic",
    "critic_step_effect",
    "loss_output_gradients",
    "run_arm",
    "run_grid",
    "load_results",
    "run_record",
    "summarize",
    "CLAIM_RULES",
    "compute_verdicts",
    "compare_groups",
    "quality_table",
    "format_quality_table",
    "steps_to_reach",
    "BASELINE_ARM",
    "REPORT_ARM",
    "save_figures",
    "figure_quality",
    "verdict_changes",
    "machine_description",
]

#: Samples with ``|x|`` above this count as saturated (stuck near +-1).
SATURATION_LEVEL = 0.99


# ---------------------------------------------------------------------------
# Arms and budgets
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Arm:
    """One cell of the grid.

    Attributes:
        activation: Hidden activation of both networks (``leaky|linear|report|tanh``).
        loss: ``"wgan-gp"`` or ``"report"``.
        critic_output: Critic output activation (``"linear"`` or ``"report"``);
            None keeps :func:`training.model_spec_for`'s choice (``report``
            with the report activation, else ``linear``).
    """

    activation: str
    loss: str
    critic_output: Optional[str] = None

    @property
    def name(self) -> str:
        """File-safe name, e.g. ``act-report_loss-wgan-gp`` (+ ``_out-linear``)."""
        name = f"act-{self.activation}_loss-{self.loss}"
        return name + (f"_out-{self.critic_output}" if self.critic_output else "")

    @property
    def effective_critic_output(self) -> str:
        """The critic output activation the run really uses."""
        if self.critic_output:
            return self.critic_output
        return "report" if self.activation == "report" else "linear"

    @property
    def label(self) -> str:
        """Short label for figures: ``report act / wgan-gp`` (+ ``, linear out``)."""
        text = f"{self.activation} act / {self.loss}"
        if self.critic_output and self.critic_output != (
                "report" if self.activation == "report" else "linear"):
            text += f", {self.critic_output} out"
        return text


def expand_grid(activations: Sequence[str] = ("leaky", "linear", "report"),
                loss_names: Sequence[str] = ("wgan-gp", "report"),
                extra: Sequence[Arm] = ()) -> list:
    """All ``activation x loss`` arms (activation-major order) plus ``extra`` arms.

    Args:
        activations: Hidden activations.
        loss_names: Losses.
        extra: Further arms appended as given (duplicates dropped).

    Returns:
        List of :class:`Arm`.
    """
    arms = [Arm(a, l) for a in activations for l in loss_names]
    for arm in extra:
        if arm.name not in {a.name for a in arms}:
            arms.append(arm)
    return arms


def default_arms() -> list:
    """The book's grid: {leaky, linear, report} x {wgan-gp, report}, plus the
    report's activation and loss with a *linear* critic output (does the
    report's output activation matter?)."""
    return expand_grid(extra=(Arm("report", "report", "linear"),))


@dataclasses.dataclass(frozen=True)
class AblationBudget:
    """How long each run trains and how much it measures (same for every arm).

    Attributes:
        name: Budget name.
        base_preset: Preset whose widths and optimiser are used, as the
            committed grid measured it (``config.studied_preset``).
        stable_steps: Stable-phase steps of scales 0, 1, 2, ... (as many as trained).
        fade_steps: Fade-in steps of scales 1, 2, ... (scale 0 has none).
        probe_every: Steps between checkpoints that are probed.
        num_probe_clips: Generated and real clips per probe.
        learning_rate: Adam learning rate (None: the preset's).
        changes: Further ``(field, value)`` pairs set on the base preset.
        score_quality: Also score every probed checkpoint's EMA generator with
            the evaluation metrics (FD, IS, NDB/K, flatness against the real
            test split; needs the dataset's classifiers, trained if missing).
    """

    name: str
    base_preset: str = "quick"
    stable_steps: tuple = (40, 30, 50)
    fade_steps: tuple = (20, 20)
    probe_every: int = 20
    num_probe_clips: int = 48
    learning_rate: Optional[float] = None
    changes: tuple = ()
    score_quality: bool = False

    def preset(self, scales: int, num_scales: int):
        """The :class:`config.Preset` that trains only the first ``scales`` scales."""
        if not 1 <= scales <= num_scales:
            raise ValueError(f"scales must be in [1, {num_scales}], got {scales}")
        stable = (tuple(self.stable_steps) + tuple(self.stable_steps[-1:]) * num_scales)[:scales]
        fade = (0,) + (tuple(self.fade_steps) + tuple(self.fade_steps[-1:]) * num_scales)[
            :scales - 1]
        pad = (0,) * (num_scales - scales)
        changes = dict(stable_steps=tuple(int(s) for s in stable) + pad,
                       fade_steps=tuple(int(s) for s in fade) + pad,
                       checkpoint_every=int(self.probe_every), num_samples=2,
                       sample_every=0, jit_compile=False)
        if self.learning_rate is not None:
            changes["learning_rate"] = float(self.learning_rate)
        changes.update(dict(self.changes))
        return studied_preset(self.base_preset).replace(**changes)


#: Named budgets: ``learn`` is the committed grid (the reference preset's recipe,
#: 1600 steps over scales 0-1, about 80 minutes on 2 CPU cores for 7 arms x 3
#: seeds), ``full`` the earlier smoke-scale grid (quick widths, 160 steps over
#: scales 0-2; ``results/ablation_short``), ``quick`` the chapter's live re-run.
BUDGETS = {
    # PGGAN's output head, not skip outputs: it led at scales 0-3 in
    # results/study/growth.json (FD at 500 Hz 27.8 +- 3.7 x floor against 37.5 +- 3.7).
    "learn": AblationBudget("learn", base_preset="reference", stable_steps=(800, 600),
                            fade_steps=(200,), probe_every=100, num_probe_clips=48,
                            changes=(("output_skips", False),), score_quality=True),
    "full": AblationBudget("full"),
    "quick": AblationBudget("quick", stable_steps=(20, 15), fade_steps=(10,), probe_every=15,
                            num_probe_clips=32),
    "tiny": AblationBudget("tiny", base_preset="tiny", stable_steps=(4, 4), fade_steps=(2,),
                           probe_every=3, num_probe_clips=8),
}


# ---------------------------------------------------------------------------
# Metrics of generated audio
# ---------------------------------------------------------------------------

def sign_bias(clips) -> dict:
    """How one-signed a set of waveforms is.

    Args:
        clips: Audio ``(n, samples)`` or ``(n, samples, 1)``.

    Returns:
        Dict: ``mean`` (of all samples), ``fraction_positive`` (share of samples
        > 0), ``mean_abs_clip_mean`` (average over clips of ``|mean of the
        clip|``: a per-clip offset toward -1 or +1 that averaging over clips
        would hide).
    """
    x = np.asarray(clips, dtype=np.float64).reshape(len(clips), -1)
    return {"mean": float(x.mean()), "fraction_positive": float((x > 0).mean()),
            "mean_abs_clip_mean": float(np.abs(x.mean(axis=1)).mean())}


def saturation_fraction(clips, level: float = SATURATION_LEVEL) -> float:
    """Share of samples with ``|x| > level`` (stuck near full scale).

    Args:
        clips: Audio of any shape.
        level: Threshold (0.99).

    Returns:
        Float in [0, 1].
    """
    return float((np.abs(np.asarray(clips, dtype=np.float64)) > level).mean())


def audio_bias_metrics(clips) -> dict:
    """:func:`sign_bias` plus ``saturated`` (:func:`saturation_fraction`),
    ``rms`` and ``finite`` (share of finite samples); non-finite samples are
    left out of the other numbers."""
    x = np.asarray(clips, dtype=np.float64).reshape(len(clips), -1)
    finite = np.isfinite(x)
    clean = np.where(finite, x, 0.0)
    out = sign_bias(clean)
    out.update(saturated=saturation_fraction(clean), rms=float(np.sqrt((clean ** 2).mean())),
               finite=float(finite.mean()))
    return out


def average_power_spectrum_db(clips, floor_db: float = -100.0) -> np.ndarray:
    """Average power spectrum of a *set* of clips, in dB re full scale (one curve).

    Not ``evaluation.mean_log_spectrum``, which gives each clip its own
    band-averaged log spectrum.

    Frames of ``samples // 8`` samples (Hann window, hop of half a frame), so
    every scale gets the same number of bins per clip length. A linear
    frequency axis: the grid's scales are at most 1 kHz (Nyquist 500 Hz), where
    the mel scale is close to linear anyway.

    Args:
        clips: Audio ``(n, samples)`` or ``(n, samples, 1)``.
        floor_db: Lowest value returned (silence).

    Returns:
        float64 ``(samples // 16 + 1,)``.
    """
    x = np.asarray(clips, dtype=np.float64).reshape(len(clips), -1)
    x = np.where(np.isfinite(x), x, 0.0)
    n_fft = max(8, x.shape[1] // 8)
    hop = n_fft // 2
    window = np.hanning(n_fft)
    starts = range(0, x.shape[1] - n_fft + 1, hop)
    frames = np.stack([x[:, s:s + n_fft] for s in starts], axis=1) * window
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2 / (window.sum() ** 2 / 4)
    return np.maximum(10 * np.log10(power.mean(axis=(0, 1)) + 1e-30), floor_db)


def spectral_distance(generated, real) -> float:
    """Mean absolute difference (dB) between the average spectra of two sets.

    0 for identical sets; grows as the generated spectrum's shape or level
    departs from the real one's.

    Args:
        generated: Audio ``(n, samples[, 1])``.
        real: Audio ``(m, samples[, 1])`` (same clip length).

    Returns:
        Float (dB).

    Notebook: chapters/04_activation_and_loss.ipynb
    """
    a, b = average_power_spectrum_db(generated), average_power_spectrum_db(real)
    if a.shape != b.shape:
        raise ValueError(f"spectral_distance: clip lengths differ ({a.shape} vs {b.shape} bins)")
    return float(np.mean(np.abs(a - b)))


# ---------------------------------------------------------------------------
# Activation probes
# ---------------------------------------------------------------------------

_ACTIVATION_TYPES = (layers.ReportActivation, keras.layers.LeakyReLU, keras.layers.Activation)


def _stats(values) -> dict:
    v = np.abs(ops.convert_to_numpy(values).astype(np.float64))
    finite = v[np.isfinite(v)]
    return {"mean_abs": float(finite.mean()) if finite.size else float("nan"),
            "max_abs": float(finite.max()) if finite.size else float("nan"),
            "finite": float(np.isfinite(v).mean())}


def _run_layers(layer_list, h, records, name):
    """Apply layers in order; record |activation| after each activation layer."""
    outputs = []
    for layer in layer_list:
        h = layer(h, training=False) if isinstance(layer, layers.PhaseShuffle) else layer(h)
        if isinstance(layer, _ACTIVATION_TYPES):
            outputs.append(ops.reshape(h, (-1,)))
    if outputs:
        records[name] = _stats(ops.concatenate(outputs, axis=0))
    return h


def probe_generator(generator: models.ProgressiveGenerator, z):
    """Activation magnitudes per block of an unconditional generator at alpha = 1.

    Walks the same layers as ``generator.call`` at its current scale with the
    fade-in weight at 1 (only the new path).

    Args:
        generator: A ``ProgressiveGenerator`` (unconditional).
        z: Latents ``(batch, latent_dim)``.

    Returns:
        ``(records, waveform)``: records maps ``"g0" .. "g<scale>"`` and
        ``"output"`` to ``{"mean_abs", "max_abs", "finite"}`` over the
        activation-layer outputs of that block; waveform is
        ``(batch, samples, 1)`` numpy.
    """
    if generator.spec.conditional:
        raise ValueError("probe_generator: only unconditional generators are probed")
    records = {}
    h = ops.convert_to_tensor(z)
    if generator.latent_norm is not None:
        h = generator.latent_norm(h)
    for k in range(generator.current_scale + 1):
        h = _run_layers(generator.blocks[k], h, records, f"g{k}")
    wave = generator._waveform(h, generator.current_scale)
    if generator.spec.output_skips:  # the clip is the sum of every scale's head
        wave = generator(ops.convert_to_tensor(z), training=False)
    records["output"] = _stats(wave)
    return records, ops.convert_to_numpy(wave)


def probe_critic(critic: models.ProgressiveCritic, x):
    """Activation magnitudes per block of an unconditional critic at alpha = 1.

    Args:
        critic: A ``ProgressiveCritic`` (unconditional), at its current scale.
        x: Audio ``(batch, samples_at_scale, 1)``.

    Returns:
        ``(records, scores)``: records maps ``"from_wave"``, ``"d<scale>" ..
        "d1"``, ``"final"`` and ``"score"`` to ``{"mean_abs", "max_abs",
        "finite"}``; scores ``(batch, 1)`` numpy (after the output activation).
    """
    if critic.spec.conditional:
        raise ValueError("probe_critic: only unconditional critics are probed")
    records = {}
    scale = critic.current_scale
    h = _run_layers(critic.from_wave[scale], ops.convert_to_tensor(x), records, "from_wave")
    for k in range(scale, 0, -1):
        h = _run_layers(critic.blocks[k], h, records, f"d{k}")
    h = _run_layers(critic.final_features, h, records, "final")
    score = critic.output_activation(critic.final_dense(h))
    records["score"] = _stats(score)
    return records, ops.convert_to_numpy(score)


# ---------------------------------------------------------------------------
# What the losses do to the critic's outputs
# ---------------------------------------------------------------------------

def loss_output_gradients(d_real, d_fake):
    """Gradients of both losses with respect to each critic output.

    Args:
        d_real: ``D(x)`` values ``(batch,)``.
        d_fake: ``D(G(z))`` values ``(batch,)``.

    Returns:
        Dict ``{"report": {...}, "wgan-gp": {...}}``, each with numpy arrays
        ``critic_d_real``, ``critic_d_fake``, ``generator_d_fake`` of shape
        ``(batch,)``, multiplied by the batch size (so per example).

    Notebook: chapters/04_activation_and_loss.ipynb
    """
    d_real = tf.constant(np.asarray(d_real, np.float32))
    d_fake = tf.constant(np.asarray(d_fake, np.float32))
    batch = float(d_real.shape[0])
    out = {}
    pairs = {"report": (losses.report_critic_loss,
                        lambda r, f: losses.report_generator_loss(r, f)),
             "wgan-gp": (lambda r, f: losses.wgan_gp_critic_loss(r, f, None, drift_weight=0.0),
                         lambda r, f: losses.wgan_generator_loss(f))}
    for name, (critic_loss, generator_loss) in pairs.items():
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([d_real, d_fake])
            lc = critic_loss(d_real, d_fake)
            lg = generator_loss(d_real, d_fake)
        out[name] = {"critic_d_real": tape.gradient(lc, d_real).numpy() * batch,
                     "critic_d_fake": tape.gradient(lc, d_fake).numpy() * batch,
                     "generator_d_fake": tape.gradient(lg, d_fake).numpy() * batch}
        del tape
    return out


def critic_step_effect(critic, real, fake, loss_name: str, learning_rate: float = 1e-3,
                       gp_weight: float = 10.0):
    """Take one plain gradient-descent step on the critic and see what moved.

    The weights are restored afterwards. The step uses the loss as the
    training loop does (``get_loss``; WGAN-GP with its penalty and drift).

    Args:
        critic: A ``ProgressiveCritic`` at its current scale (unconditional).
        real: Real audio ``(batch, samples, 1)``.
        fake: Generated audio, same shape.
        loss_name: ``"wgan-gp"`` or ``"report"``.
        learning_rate: SGD step size (small: first-order regime).
        gp_weight: lambda of the penalty (wgan-gp).

    Returns:
        Dict of per-example numpy arrays ``(batch,)``: ``gap_before``,
        ``gap_after`` (``D(G(z)) - D(x)``), ``level_before``, ``level_after``
        (``(D(x) + D(G(z))) / 2``).
    """
    fns = losses.get_loss(loss_name, gp_weight=gp_weight)
    variables = list(critic.variables_for_scale(critic.current_scale))
    saved = [v.numpy().copy() for v in variables]
    real = tf.constant(np.asarray(real, np.float32))
    fake = tf.constant(np.asarray(fake, np.float32))

    def outputs():
        return (ops.convert_to_numpy(critic(real, training=False))[:, 0].astype(np.float64),
                ops.convert_to_numpy(critic(fake, training=False))[:, 0].astype(np.float64))

    r0, f0 = outputs()
    with tf.GradientTape() as tape:
        d_real, d_fake = critic(real, training=False), critic(fake, training=False)
        penalty = (losses.gradient_penalty(lambda x: critic(x, training=False), real, fake,
                                           seed=0) if fns.uses_penalty else None)
        loss = fns.critic_loss(d_real, d_fake, penalty)
    grads = tape.gradient(loss, variables)
    for variable, grad in zip(variables, grads):
        if grad is not None:
            variable.assign_sub(learning_rate * grad)
    r1, f1 = outputs()
    for variable, value in zip(variables, saved):
        variable.assign(value)
    return {"gap_before": f0 - r0, "gap_after": f1 - r1,
            "level_before": (f0 + r0) / 2, "level_after": (f1 + r1) / 2}


def _summarize_step_effect(effect) -> dict:
    """Per sign of the gap: how |gap| and the level moved."""
    gap0, gap1 = effect["gap_before"], effect["gap_after"]
    widen = np.abs(gap1) - np.abs(gap0)
    level = effect["level_after"] - effect["level_before"]
    # A critic whose outputs are already huge can overflow float32 in one step.
    finite = np.isfinite(widen) & np.isfinite(level)
    out = {"ties": int(np.sum(gap0 == 0)), "non_finite": int(np.sum(~finite))}
    for name, mask in (("fake_above", (gap0 > 0) & finite), ("fake_below", (gap0 < 0) & finite)):
        n = int(mask.sum())
        out[name] = {"count": n,
                     "mean_abs_gap_change": float(widen[mask].mean()) if n else None,
                     "fraction_widened": float((widen[mask] > 0).mean()) if n else None,
                     "mean_level_change": float(level[mask].mean()) if n else None,
                     "mean_abs_level_change": float(np.abs(level[mask]).mean()) if n else None}
    return out


# ---------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------

def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(obj):
    """JSON-safe copy: numpy -> python, NaN/Inf -> None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return _finite_or_none(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    return obj


def _downsample_history(history: dict, points: int = 200) -> dict:
    """Block means of the history's curves (about ``points`` per curve)."""
    steps = np.asarray(history.get("step", []))
    if steps.size == 0:
        return {"step": [], "scale": [], "d_real": [], "d_fake": [], "delta": [], "gp": []}
    block = max(1, int(math.ceil(steps.size / points)))
    out = {"step": [int(steps[min(i + block, steps.size) - 1])
                    for i in range(0, steps.size, block)],
           "scale": [int(history["scale"][min(i + block, steps.size) - 1])
                     for i in range(0, steps.size, block)]}
    for key in ("d_real", "d_fake", "delta", "gp", "d_loss", "g_loss"):
        values = np.asarray(history[key], dtype=np.float64)
        out[key] = [float(np.mean(values[i:i + block])) for i in range(0, values.size, block)]
    return out


def _load_group(model, path, group):
    with np.load(path) as arrays:
        meta = runs.checkpoint_meta(arrays)
        for i, variable in enumerate(model.variables):
            variable.assign(arrays[f"{group}/{i}"])
    return meta


def _real_clips(data_dir, scale, n, cache):
    key = (str(data_dir), int(scale), int(n))
    if key not in cache:
        clips, _ = data.load_clips(data_dir, split="test", scale=scale, max_clips=n)
        cache[key] = clips.astype(np.float32)
    return cache[key]


def _scorer(data_dir, scale, seed, cache):
    """The :class:`study.Scorer` of a scale (the whole test split), kept in ``cache``."""
    from pggan_lib import study

    key = ("scorer", str(data_dir), int(scale))
    if key not in cache:
        cache[key] = study.Scorer(data_dir, scale, n=10 ** 9, seed=0)
    return cache[key]


def _quality(ema_generator, path, data_dir, scale, seed, cache):
    """Evaluation metrics (with ratios to the real test split) of a checkpoint's EMA generator."""
    _load_group(ema_generator, path, "ema_generator")
    ema_generator.set_scale(scale)
    ema_generator.set_alpha(1.0)
    scorer = _scorer(data_dir, scale, seed, cache)
    z = np.random.default_rng(20_000 + seed).standard_normal(
        (scorer.n, ema_generator.spec.latent_dim)).astype(np.float32)
    clips = ops.convert_to_numpy(ema_generator(z, training=False))
    return scorer.with_ratios(clips) if np.all(np.isfinite(clips)) else None


def _probe_run(run_dir, data_dir, num_clips, seed, real_cache, final_effect=True,
               score_quality=False):
    """Probe every checkpoint of a finished (or diverged) run."""
    config = runs.read_config(run_dir, training.RunError)
    spec = models.ModelSpec.from_dict(config["model_spec"])
    generator, critic = models.build_generator(spec), models.build_critic(spec)
    ema_generator = models.build_generator(spec) if score_quality else None
    z = np.random.default_rng(10_000 + seed).standard_normal(
        (num_clips, spec.latent_dim)).astype(np.float32)
    paths = sorted((Path(run_dir) / "checkpoints").glob("ckpt-*.npz"))
    probes = []
    for path in paths:
        meta = _load_group(generator, path, "generator")
        _load_group(critic, path, "critic")
        scale = int(meta["scale"])
        generator.set_scale(scale), critic.set_scale(scale)
        generator.set_alpha(1.0), critic.set_alpha(1.0)
        real = _real_clips(data_dir, scale, num_clips, real_cache)
        g_records, wave = probe_generator(generator, z)
        c_records, real_scores = probe_critic(critic, real)
        fake_scores = ops.convert_to_numpy(critic(wave, training=False))
        probe = {"step": int(meta["global_step"]), "scale": scale,
                 "alpha": float(meta.get("alpha", 1.0)),
                 "generator": g_records, "critic": c_records,
                 "audio": audio_bias_metrics(wave),
                 "spectral_distance": spectral_distance(wave, real),
                 "d_real": float(np.mean(real_scores)), "d_fake": float(np.mean(fake_scores))}
        if score_quality:
            probe["quality"] = _quality(ema_generator, path, data_dir, scale, seed, real_cache)
        probes.append(probe)
    final = {}
    if paths and final_effect:
        last = probes[-1]
        real = _real_clips(data_dir, last["scale"], num_clips, real_cache)
        _, wave = probe_generator(generator, z)
        if np.all(np.isfinite(wave)):
            for name in losses.LOSS_NAMES:
                effect = critic_step_effect(critic, real, np.clip(wave, -1e3, 1e3), name)
                final[name] = _summarize_step_effect(effect)
    return probes, final, {"num_scales": spec.num_scales,
                           "critic_output": spec.critic_output_activation}


def run_arm(data_dir, run_dir, arm: Arm, seed: int, budget: AblationBudget, scales: int = 3,
            progress: bool = False, real_cache: Optional[dict] = None) -> dict:
    """Train one arm for one seed, then probe its checkpoints.

    Args:
        data_dir: Built dataset.
        run_dir: Scratch run folder (must not exist or be empty).
        arm: The :class:`Arm`.
        seed: Training seed.
        budget: The :class:`AblationBudget`.
        scales: Number of scales trained (0 .. scales-1).
        progress: tqdm bar of the training.
        real_cache: Dict reused across runs for real test clips.

    Returns:
        JSON-ready dict: ``arm`` fields, ``seed``, ``diverged`` (bool),
        ``diverged_step``/``diverged_scale`` (or None), ``steps`` trained,
        ``wall_s``, ``history`` (block means of D(x), D(G(z)), Delta, ...),
        ``probes`` (one per checkpoint; with the budget's ``score_quality`` each
        has ``quality``: FD, IS, NDB/K, flatness and ``fd_ratio``/``is_ratio``/
        ``flatness_ratio`` of its EMA generator), ``final`` (last probe),
        ``step_effect`` (claim a: one critic step, both losses), ``metrics``
        (``{scale: quality}`` at the last probe of each scale; empty without scoring).
    """
    real_cache = {} if real_cache is None else real_cache
    manifest = data.read_manifest(data_dir)
    preset = budget.preset(scales, int(manifest["num_scales"]))
    start = time.monotonic()
    diverged, diverged_step, diverged_scale = False, None, None
    keras.backend.clear_session()
    try:
        # Every checkpoint is kept: the probes replay the run's history from them.
        history = training.train(data_dir, run_dir, preset=preset, loss=arm.loss,
                                 activation=arm.activation, seed=seed, progress=progress,
                                 critic_output=arm.critic_output, keep_checkpoints=None)
    except training.TrainingDiverged as error:
        diverged, diverged_step, diverged_scale = True, int(error.step), int(error.scale)
        history = error.history
    train_s = time.monotonic() - start
    probes, effect, info = _probe_run(run_dir, data_dir, budget.num_probe_clips, seed,
                                      real_cache, score_quality=budget.score_quality)
    keras.backend.clear_session()
    steps = list(history.get("step", []))
    return _clean({
        "arm": arm.name, "activation": arm.activation, "loss": arm.loss,
        "critic_output": info["critic_output"], "label": arm.label, "seed": int(seed),
        "scales": int(scales), "budget": budget.name,
        "diverged": diverged, "diverged_step": diverged_step, "diverged_scale": diverged_scale,
        "steps": int(steps[-1]) if steps else 0,
        "planned_steps": int(sum(sum(preset.per_scale(f, info["num_scales"]))
                                 for f in ("stable_steps", "fade_steps"))),
        "zero_gap_steps": int(np.sum(np.asarray(history.get("delta", [])) == 0)),
        "train_s": round(train_s, 2), "wall_s": round(time.monotonic() - start, 2),
        "history": _downsample_history(history),
        "probes": probes, "final": probes[-1] if probes else None, "step_effect": effect,
        "metrics": _metrics_by_scale(probes),
    })


def _metrics_by_scale(probes) -> dict:
    """``{scale: quality}`` of the last scored probe at each scale (where training left it)."""
    return {str(p["scale"]): p["quality"] for p in probes if p.get("quality")}


# ---------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------

def run_grid(data_dir, out_dir, runs_dir, arms: Optional[Sequence[Arm]] = None,
             seeds: Sequence[int] = (0, 1, 2), budget="full", scales: int = 3,
             command: str = "", progress: bool = True, figures: bool = True) -> dict:
    """Run every arm for every seed (skipping runs already in ``out_dir/runs``).

    Each finished run is written at once to ``out_dir/runs/<arm>_seed<k>.json``
    (small: block-mean curves and probe summaries, no weights), so a grid that
    is stopped resumes where it was. Training folders go to ``runs_dir``
    (scratch; delete it afterwards). At the end ``out_dir/results.json`` holds
    the machine, wall time, command, per-arm summary, verdicts and one line
    per run (:func:`run_record`), and the figures are written next to it.

    Args:
        data_dir: Built dataset (e.g. ``data.ensure_demo_dataset()``).
        out_dir: Results folder (e.g. ``results/ablation``).
        runs_dir: Scratch folder for training runs.
        arms: Arms (default :func:`default_arms`).
        seeds: Training seeds.
        budget: A name of :data:`BUDGETS` or an :class:`AblationBudget`.
        scales: Scales trained per run.
        command: The command line that made the results (stored).
        progress: Print one line per run.
        figures: Write the PNG figures.

    Returns:
        The results dict (as in ``results.json``, plus ``runs``).

    Notebook: chapters/04_activation_and_loss.ipynb
    """
    arms = list(default_arms() if arms is None else arms)
    budget = BUDGETS[budget] if isinstance(budget, str) else budget
    out_dir, runs_dir = Path(out_dir), Path(runs_dir)
    start = time.monotonic()
    real_cache = {}
    total = len(arms) * len(seeds)
    done = 0
    for arm in arms:
        for seed in seeds:
            done += 1
            record_path = out_dir / "runs" / f"{arm.name}_seed{seed}.json"
            if record_path.is_file():
                stored = json.loads(record_path.read_text())
                if stored.get("budget") == budget.name and stored.get("scales") == scales:
                    if progress:
                        print(f"[{done}/{total}] {arm.name} seed {seed}: done before, skipped",
                              flush=True)
                    continue
            run_dir = runs_dir / f"{arm.name}_seed{seed}"
            if run_dir.exists():
                import shutil
                shutil.rmtree(run_dir)
            result = run_arm(data_dir, run_dir, arm, seed, budget, scales,
                             real_cache=real_cache)
            files.write_json(record_path, result, allow_nan=False)
            if progress:
                status = (f"DIVERGED at step {result['diverged_step']}" if result["diverged"]
                          else "ok")
                distance = (result["final"] or {}).get("spectral_distance")
                distance_text = "n/a" if distance is None else f"{distance:.2f} dB"
                print(f"[{done}/{total}] {arm.name} seed {seed}: {status}, "
                      f"{result['steps']} steps, {result['wall_s']:.0f} s, spectral distance "
                      f"{distance_text}, total {time.monotonic() - start:.0f} s", flush=True)
    results = load_results(out_dir, arms=arms, seeds=seeds, budget=budget.name, scales=scales)
    previous = {}
    if (out_dir / "results.json").is_file():
        previous = json.loads((out_dir / "results.json").read_text()).get("meta", {})
    wall = time.monotonic() - start
    meta = {"command": command, "budget": dataclasses.asdict(budget), "scales": scales,
            "seeds": list(seeds), "arms": [a.name for a in arms],
            "machine": machine_description(),
            "grid_wall_s": round(wall + (previous.get("grid_wall_s", 0.0)
                                         if wall < 60 and previous else 0.0), 1),
            "sum_of_run_wall_s": round(sum(r["wall_s"] for r in results["runs"]), 1),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    results["meta"] = meta
    stored = {k: v for k, v in results.items() if k != "runs"}
    stored["runs"] = [run_record(run) for run in results["runs"]]
    files.write_json(out_dir / "results.json", stored, allow_nan=False)
    if figures:
        save_figures(results, out_dir)
    return results


def run_record(run) -> dict:
    """A run in a line of ``results.json``: its arm, seed, divergence and per-scale metrics.

    Returns:
        Dict ``arm``, ``activation``, ``loss``, ``critic_output``, ``seed``,
        ``diverged``, ``steps``, ``wall_s`` and ``metrics`` ``{scale: {fd_ratio,
        is_ratio, flatness_ratio, ndb_over_k, frechet_distance, inception_score}}``
        (empty for an unscored run). The curves stay in ``runs/ARM_seedS.json``.
    """
    keys = ("arm", "activation", "loss", "critic_output", "seed", "diverged", "steps", "wall_s")
    return {**{k: run[k] for k in keys},
            "metrics": {k: {m: q[m] for m in QUALITY_KEYS}
                        for k, q in (run.get("metrics") or {}).items() if q}}


def load_results(out_dir, arms=None, seeds=None, budget=None, scales=None) -> dict:
    """Read ``out_dir/runs/*.json`` (+ ``results.json`` meta) and summarise.

    Args:
        out_dir: A folder written by :func:`run_grid`.
        arms, seeds, budget, scales: Keep only matching runs (None: all).

    Returns:
        Dict ``runs`` (list), ``summary`` (:func:`summarize`), ``verdicts``
        (:func:`compute_verdicts`), ``meta`` (from ``results.json`` if present).

    Notebook: chapters/04_activation_and_loss.ipynb
    """
    out_dir = Path(out_dir)
    names = None if arms is None else [a.name if isinstance(a, Arm) else a for a in arms]
    runs = []
    for path in sorted((out_dir / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        if names is not None and run["arm"] not in names:
            continue
        if seeds is not None and run["seed"] not in seeds:
            continue
        if budget is not None and run.get("budget") != budget:
            continue
        if scales is not None and run.get("scales") != scales:
            continue
        runs.append(run)
    if names is not None:
        runs.sort(key=lambda r: (names.index(r["arm"]), r["seed"]))
    meta = {}
    if (out_dir / "results.json").is_file():
        meta = json.loads((out_dir / "results.json").read_text()).get("meta", {})
    summary = summarize(runs)
    return {"meta": meta, "summary": summary, "verdicts": compute_verdicts(runs),
            "runs": runs}


# ---------------------------------------------------------------------------
# Summaries and verdicts
# ---------------------------------------------------------------------------

def _mean_std(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"mean": None, "std": None, "n": 0, "values": []}
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values),
            "values": [float(v) for v in values]}


def _final_generator_max(run):
    final = run.get("final") or {}
    gen = final.get("generator") or {}
    values = [b["max_abs"] for k, b in gen.items() if k != "output" and b.get("max_abs")]
    return max(values) if values else None


def _tail(values, fraction=0.2):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return float(np.mean(values[-max(1, int(len(values) * fraction)):]))


def summarize(runs) -> dict:
    """Per arm: seed mean, std and values of the main measurements.

    Measurements: ``diverged`` (count), final ``spectral_distance``,
    ``mean_abs_clip_mean``, ``fraction_positive``, ``saturated``,
    ``abs_mean``, final ``delta`` (mean of the last 20 % of the curve),
    ``generator_max_activation`` (largest |activation| of any generator block
    at the last checkpoint).

    Args:
        runs: Run dicts from :func:`run_arm`.

    Returns:
        Dict arm name -> dict measurement -> ``{"mean", "std", "n", "values"}``
        (+ ``label``, ``activation``, ``loss``, ``critic_output``, ``diverged``,
        ``diverged_steps``).
    """
    by_arm = {}
    for run in runs:
        by_arm.setdefault(run["arm"], []).append(run)
    out = {}
    for name, group in by_arm.items():
        finals = [r.get("final") or {} for r in group]
        audio = [f.get("audio") or {} for f in finals]
        out[name] = {
            "label": group[0]["label"], "activation": group[0]["activation"],
            "loss": group[0]["loss"], "critic_output": group[0]["critic_output"],
            "seeds": [r["seed"] for r in group],
            "diverged": int(sum(r["diverged"] for r in group)),
            "diverged_steps": [r["diverged_step"] for r in group if r["diverged"]],
            "spectral_distance": _mean_std([f.get("spectral_distance") for f in finals]),
            "mean_abs_clip_mean": _mean_std([a.get("mean_abs_clip_mean") for a in audio]),
            "fraction_positive": _mean_std([a.get("fraction_positive") for a in audio]),
            "saturated": _mean_std([a.get("saturated") for a in audio]),
            "abs_mean": _mean_std([abs(a["mean"]) if a.get("mean") is not None else None
                                   for a in audio]),
            "delta": _mean_std([_tail(r["history"]["delta"]) for r in group]),
            "generator_max_activation": _mean_std([_final_generator_max(r) for r in group]),
            "quality": _quality_summary(group),
        }
    return out


#: Evaluation metrics summarised per arm and scale (``run["metrics"]``).
QUALITY_KEYS = ("fd_ratio", "is_ratio", "flatness_ratio", "ndb_over_k", "frechet_distance",
                "inception_score")


def _quality_summary(group) -> dict:
    """``{scale: {key: mean/std over seeds}}`` of the runs' evaluation metrics."""
    scales = sorted({k for r in group for k in (r.get("metrics") or {})}, key=int)
    return {k: {key: _mean_std([((r.get("metrics") or {}).get(k) or {}).get(key)
                                for r in group]) for key in QUALITY_KEYS} for k in scales}


def compare_groups(a, b, resamples: int = 10_000, seed: int = 0) -> dict:
    """How sure is ``mean(b) - mean(a)``? A bootstrap interval and a permutation test.

    The seeds of two arms are all there is, so both tests resample them: the
    95 % interval resamples each group with replacement; the two-sided
    permutation p-value is exact (every split of the pooled values) when there
    are at most ``resamples`` splits. With 3 seeds per arm the smallest possible
    p is 0.1 (2 of 20 splits are as extreme as complete separation).

    Args:
        a, b: Values of the two groups (None and non-finite values dropped).
        resamples: Bootstrap resamples (and the cap for exact permutations).
        seed: Seed of the resampling.

    Returns:
        ``{"difference", "ci95": [low, high], "p": p-value, "n": [len(a), len(b)]}``,
        or values None when a group is empty.
    """
    a = np.array([v for v in a if v is not None and math.isfinite(v)], float)
    b = np.array([v for v in b if v is not None and math.isfinite(v)], float)
    if a.size == 0 or b.size == 0:
        return {"difference": None, "ci95": None, "p": None, "n": [int(a.size), int(b.size)]}
    rng = np.random.default_rng(seed)
    boot = (rng.choice(b, (resamples, b.size)).mean(axis=1)
            - rng.choice(a, (resamples, a.size)).mean(axis=1))
    observed = b.mean() - a.mean()
    pooled = np.concatenate([a, b])
    if math.comb(pooled.size, a.size) <= resamples:
        splits = [np.array(c) for c in itertools.combinations(range(pooled.size), a.size)]
    else:
        splits = [rng.permutation(pooled.size)[:a.size] for _ in range(resamples)]
    diffs = []
    for idx in splits:
        mask = np.zeros(pooled.size, bool)
        mask[idx] = True
        diffs.append(pooled[~mask].mean() - pooled[mask].mean())
    p = float(np.mean(np.abs(diffs) >= abs(observed) - 1e-12))
    return {"difference": float(observed),
            "ci95": [float(q) for q in np.percentile(boot, [2.5, 97.5])],
            "p": p, "n": [int(a.size), int(b.size)]}


def _fmt_compare(c, digits=3) -> str:
    if c["difference"] is None:
        return "n/a"
    low, high = c["ci95"]
    return (f"{c['difference']:+.{digits}g} [95 % CI {low:+.{digits}g}, {high:+.{digits}g}], "
            f"permutation p = {c['p']:.2f}")


def _spearman(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return None
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def _delta_near(run, step, window=3):
    history = run["history"]
    steps = np.asarray(history["step"])
    if steps.size == 0:
        return None
    i = int(np.argmin(np.abs(steps - step)))
    values = [v for v in history["delta"][max(0, i - window):i + window + 1] if v is not None]
    return float(np.mean(values)) if values else None


def _fmt(stat, digits=3):
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.{digits}g} ± {stat['std']:.{digits}g} (n={stat['n']})"


def _verdict_loss_widens_gap(runs) -> dict:
    """Claim (a) The critic's step under the report's loss widens |gap| for both signs?"""
    effects = {loss: {"fake_above": [], "fake_below": [], "level_vs_gap": []}
               for loss in losses.LOSS_NAMES}
    non_finite = 0
    for run in runs:
        for loss, effect in (run.get("step_effect") or {}).items():
            non_finite += int(effect.get("non_finite", 0))
            for side in ("fake_above", "fake_below"):
                part = effect.get(side) or {}
                # No mean change beside a count: every change was inf/NaN (grids
                # summarised before non-finite changes were left out).
                if part.get("count") and part.get("mean_abs_gap_change") is None:
                    non_finite += part["count"]
                elif part.get("count"):
                    effects[loss][side].append(part["fraction_widened"])
                    if part.get("mean_abs_gap_change"):
                        effects[loss]["level_vs_gap"].append(
                            part["mean_abs_level_change"] / abs(part["mean_abs_gap_change"]))
    rep = {side: _mean_std(effects["report"][side]) for side in ("fake_above", "fake_below")}
    wg = {side: _mean_std(effects["wgan-gp"][side]) for side in ("fake_above", "fake_below")}
    ratio = _mean_std([float(np.median(effects["report"]["level_vs_gap"]))]
                      if effects["report"]["level_vs_gap"] else [])
    if rep["fake_above"]["n"] == 0 and rep["fake_below"]["n"] == 0:
        verdict = "not testable here"
    elif all(rep[s]["mean"] is not None and rep[s]["mean"] > 0.9 for s in rep):
        verdict = "reproduced"
    elif any(rep[s]["mean"] is not None and rep[s]["mean"] > 0.9 for s in rep):
        verdict = "partly"
    else:
        verdict = "not reproduced"
    return {
        "claim": "a", "statement": "the report's loss makes the critic widen |D(G(z)) - D(x)| "
                                   "whatever the sign of the gap",
        "verdict": verdict,
        "evidence": (f"one critic step with the report's loss widened |gap| for a share "
                     f"{_fmt(rep['fake_above'])} of examples with D(G(z)) > D(x) and "
                     f"{_fmt(rep['fake_below'])} with D(G(z)) < D(x) (over runs); it moved the "
                     f"common level {ratio['mean']:.3g}x more than the gap (median). "
                     f"WGAN-GP's step: {_fmt(wg['fake_above'])} and {_fmt(wg['fake_below'])}"
                     + (f"; {non_finite} examples whose critic outputs overflowed in the step "
                        f"are left out" if non_finite else "") + "."
                     if ratio["mean"] is not None else "no step effects measured"),
        "numbers": {"report": rep, "wgan-gp": wg, "report_level_over_gap": ratio,
                    "non_finite_examples": non_finite}}


def _verdict_no_dead_point(runs) -> dict:
    """Claim (b) Dead point at zero: how often is the gap exactly 0?"""
    ties = int(sum(r.get("zero_gap_steps", 0) for r in runs))
    steps = int(sum(r.get("steps", 0) for r in runs))
    example_ties = int(sum(e.get("ties", 0) for r in runs
                           for e in (r.get("step_effect") or {}).values()))
    grads = loss_output_gradients([0.0], [0.0])
    return {
        "claim": "b", "statement": "the constants 0.0001 and 0.000999 avoid a dead point "
                                   "(zero gradient) at a zero gap",
        "verdict": "partly",
        "evidence": (f"true of the formula: at an exact tie the report's critic gradients are "
                     f"({grads['report']['critic_d_real'][0]:.4g}, "
                     f"{grads['report']['critic_d_fake'][0]:.4g}) per example instead of 0, but "
                     f"WGAN's are ({grads['wgan-gp']['critic_d_real'][0]:.3g}, "
                     f"{grads['wgan-gp']['critic_d_fake'][0]:.3g}) there and everywhere (a "
                     f"linear loss has no dead point), and an exact tie occurred in {ties} of "
                     f"{steps} training steps (batch means) and {example_ties} probed examples"),
        "numbers": {"zero_gap_steps": ties, "steps": steps, "tied_examples": example_ties,
                    "report_tie_gradients": [float(grads["report"]["critic_d_real"][0]),
                                             float(grads["report"]["critic_d_fake"][0])]}}


def _verdict_sign_bias(runs, summary) -> dict:
    """Claim (c) Sign bias: leaky vs report activation, per loss (same critic-output default)."""
    rows, reproduced_for = {}, []
    for loss in losses.LOSS_NAMES:
        leaky = summary.get(f"act-leaky_loss-{loss}")
        report = summary.get(f"act-report_loss-{loss}")
        if not leaky or not report:
            continue
        lk, rp = leaky["mean_abs_clip_mean"], report["mean_abs_clip_mean"]
        if lk["mean"] is None or rp["mean"] is None:
            continue
        separated = rp["mean"] + rp["std"] < lk["mean"] - lk["std"]
        rows[loss] = {"leaky": lk, "report": rp, "leaky_saturated": leaky["saturated"],
                      "report_saturated": report["saturated"], "separated": separated,
                      "report_minus_leaky": compare_groups(lk["values"], rp["values"])}
        if separated:
            reproduced_for.append(loss)
    if not rows:
        verdict = "not testable here"
    elif len(reproduced_for) == len(rows):
        verdict = "reproduced"
    elif reproduced_for:
        verdict = "partly"
    else:
        verdict = "not reproduced"
    return {
        "claim": "c", "statement": "the activation tanh(x) + x/alpha removes the sign bias "
                                   "that LeakyReLU gives generated audio",
        "verdict": verdict,
        "evidence": "; ".join(
            f"{loss}: per-clip |mean| leaky {_fmt(r['leaky'])} vs report {_fmt(r['report'])} "
            f"(difference {_fmt_compare(r['report_minus_leaky'])}), saturated share leaky {_fmt(r['leaky_saturated'])} vs report "
            f"{_fmt(r['report_saturated'])}" for loss, r in rows.items()) or "arms missing",
        "numbers": rows}


def _verdict_no_nan(runs) -> dict:
    """Claim (d) NaN: linear vs report activation."""
    counts = {}
    for act in ("linear", "leaky", "report"):
        group = [r for r in runs if r["activation"] == act]
        counts[act] = {"runs": len(group), "diverged": int(sum(r["diverged"] for r in group)),
                       "max_activation": _mean_std([_final_generator_max(r) for r in group])}
    lin, rep_c = counts["linear"], counts["report"]
    if lin["runs"] == 0 or rep_c["runs"] == 0:
        verdict = "not testable here"
    elif lin["diverged"] > 0 and rep_c["diverged"] == 0:
        verdict = "reproduced"
    elif lin["diverged"] == 0 and rep_c["diverged"] == 0:
        verdict = "not reproduced"
    else:
        verdict = "partly"
    return {
        "claim": "d", "statement": "a linear hidden activation grows to NaN; the report's "
                                   "activation avoids it",
        "verdict": verdict,
        "evidence": ", ".join(f"{act}: {c['diverged']} of {c['runs']} runs diverged, largest "
                              f"generator activation at the end {_fmt(c['max_activation'])}"
                              for act, c in counts.items()),
        "numbers": counts}


def _probe_quality(probe):
    """The probe's FD when the run was scored, else its spectral distance (dB)."""
    quality = probe.get("quality")
    if "quality" in probe:
        return quality["frechet_distance"] if quality else None
    return probe["spectral_distance"]


def _verdict_delta_tracks_quality(runs) -> dict:
    """Claim (e) Delta down <=> generator better (FD, or spectral distance, down)?"""
    within, across = {}, {}
    scored = any("quality" in p for r in runs for p in r.get("probes") or [])
    measure = "FD" if scored else "spectral distance"
    for loss in losses.LOSS_NAMES:
        rhos, finals = [], []
        for run in runs:
            if run["loss"] != loss or run["diverged"] or not run["probes"]:
                continue
            last_scale = run["probes"][-1]["scale"]
            probes = [p for p in run["probes"] if p["scale"] == last_scale]
            rho = _spearman([_delta_near(run, p["step"]) for p in probes],
                            [_probe_quality(p) for p in probes])
            if rho is not None:
                rhos.append(rho)
            finals.append((_tail(run["history"]["delta"]), _probe_quality(run["final"])))
        within[loss] = _mean_std(rhos)
        across[loss] = {"spearman": _spearman(*zip(*finals)) if len(finals) >= 3 else None,
                        "runs": len(finals)}
    positive = [loss for loss in within if within[loss]["mean"] is not None
                and within[loss]["mean"] > 0.5
                and (across[loss]["spearman"] or 0) > 0.5]
    tested = [loss for loss in within if within[loss]["mean"] is not None]
    verdict = ("not testable here" if not tested else "reproduced" if len(positive) == len(tested)
               else "partly" if positive else "not reproduced")
    return {
        "claim": "e", "statement": "Delta trending down means the generator is improving",
        "verdict": verdict,
        "evidence": "; ".join(
            f"{loss}: Spearman(Delta, {measure}) within runs at the last scale "
            f"{_fmt(within[loss], 2)}, across runs (final values) "
            f"{'n/a' if across[loss]['spearman'] is None else format(across[loss]['spearman'], '.2f')}"
            f" over {across[loss]['runs']} runs" for loss in within),
        "numbers": {"measure": measure, "within": within, "across": across}}


#: The grid's baseline (PGGAN's choices) and the report's full set of changes.
BASELINE_ARM = "act-leaky_loss-wgan-gp"
REPORT_ARM = "act-report_loss-report"


def _last_scale_values(runs, arm, key):
    values = []
    for run in runs:
        metrics = run.get("metrics") or {}
        if run["arm"] == arm and metrics:
            values.append((metrics[max(metrics, key=int)] or {}).get(key))
    return values


def _verdict_inception_score(runs) -> dict:
    """Claim (f) The report's changes raise the Inception Score (7.01 vs 1-2.5 before)."""
    base = _last_scale_values(runs, BASELINE_ARM, "is_ratio")
    report = _last_scale_values(runs, REPORT_ARM, "is_ratio")
    test = compare_groups(base, report)
    if test["difference"] is None:
        verdict, evidence = "not testable here", "the runs were not scored with the IS"
    else:
        low, high = test["ci95"]
        verdict = ("reproduced" if low > 0 else "not reproduced")
        evidence = (f"IS / real IS at the grid's finest scale: baseline (leaky, WGAN-GP) "
                    f"{_fmt(_mean_std(base))}, report's activation and loss "
                    f"{_fmt(_mean_std(report))}; difference {_fmt_compare(test)}. With 5 "
                    f"classes the IS cannot exceed 5, so the report's 7.01 (more authors, "
                    f"other classifiers) is compared as a ratio to the real clips' IS")
    return {"claim": "f", "statement": "the report's activation and loss raise the Inception "
                                       "Score (7.01 after its changes, 1-2.5 before)",
            "verdict": verdict, "evidence": evidence,
            "numbers": {"baseline": _mean_std(base), "report": _mean_std(report),
                        "report_minus_baseline": test}}


#: The report's claims that chapter 4 tests: letter -> (function, the rule of its verdict).
CLAIM_RULES = {
    "a": "reproduced when one critic step with the report's loss widens |gap| for > 90 % of "
         "examples on both sides of the tie; partly when on one side",
    "b": "partly by construction: the formula has no dead point, but WGAN's linear loss has "
         "none either; the tie count says whether it matters in training",
    "c": "reproduced for a loss when the report activation's per-clip |mean| (mean + std over "
         "seeds) lies below LeakyReLU's (mean - std)",
    "d": "reproduced when some linear-activation run diverges and no report-activation run does",
    "e": "reproduced when Delta and the generator's FD (spectral distance in unscored grids) "
         "correlate (Spearman > 0.5) within runs and across runs' final values",
    "f": "reproduced when the report arm's IS / real IS at the finest scale exceeds the "
         "baseline's with a 95 % bootstrap interval of the difference above 0",
}


def compute_verdicts(runs) -> list:
    """Each claim of the report, with the measured evidence and a verdict.

    Verdicts are ``"reproduced"``, ``"not reproduced"``, ``"partly"`` or
    ``"not testable here"``, by the rules of :data:`CLAIM_RULES` (one
    function per claim below). Every number comes from ``runs``.

    Args:
        runs: Run dicts from :func:`run_arm`.

    Returns:
        List of dicts ``claim`` (letter), ``statement``, ``verdict``,
        ``evidence`` (a sentence with numbers), ``numbers`` (dict).
    """
    summary = summarize(runs)
    return [_verdict_loss_widens_gap(runs), _verdict_no_dead_point(runs),
            _verdict_sign_bias(runs, summary), _verdict_no_nan(runs),
            _verdict_delta_tracks_quality(runs), _verdict_inception_score(runs)]


def quality_table(runs, baseline: str = BASELINE_ARM) -> list:
    """Per arm at the grid's finest scale: FD, IS and flatness ratios, each against the baseline.

    Args:
        runs: Run dicts from :func:`run_arm` (scored: ``run["metrics"]``).
        baseline: The arm every other arm is compared with.

    Returns:
        List (arm order of ``runs``) of dicts ``arm``, ``label``, ``scale``,
        ``diverged``, and per key of ``fd_ratio``, ``is_ratio``, ``flatness_ratio``
        the seed mean/std and ``<key>_vs_baseline`` (:func:`compare_groups`).

    Notebook: chapters/04_activation_and_loss.ipynb
    """
    names = list(dict.fromkeys(r["arm"] for r in runs))
    scales = [int(k) for r in runs for k in (r.get("metrics") or {})]
    if not scales:
        return []
    scale = str(max(scales))
    rows = []
    for name in names:
        group = [r for r in runs if r["arm"] == name]
        row = {"arm": name, "label": group[0]["label"], "scale": int(scale),
               "diverged": int(sum(r["diverged"] for r in group))}
        for key in ("fd_ratio", "is_ratio", "flatness_ratio"):
            values = [((r.get("metrics") or {}).get(scale) or {}).get(key) for r in group]
            base = [((r.get("metrics") or {}).get(scale) or {}).get(key)
                    for r in runs if r["arm"] == baseline]
            row[key] = _mean_std(values)
            row[f"{key}_vs_baseline"] = compare_groups(base, values)
        rows.append(row)
    return rows


def format_quality_table(rows) -> str:
    """:func:`quality_table` as text within 76 columns (mean +- std over seeds; p of the
    permutation test against the baseline, blank for the baseline itself)."""
    def cell(stat, digits):
        return "n/a" if stat["mean"] is None else f"{stat['mean']:.{digits}f}±{stat['std']:.{digits}f}"

    def p(row, key):
        c = row[f"{key}_vs_baseline"]
        return "" if row["arm"] == BASELINE_ARM or c["p"] is None else f"{c['p']:.2f}"

    lines = [f"{'arm':31} {'FD/floor':>11} {'p':>4} {'IS/real':>10} {'p':>4} {'flat/real':>10}",
             "-" * 76]
    for row in rows:
        lines.append(f"{row['label'][:31]:31} {cell(row['fd_ratio'], 1):>11} "
                     f"{p(row, 'fd_ratio'):>4} {cell(row['is_ratio'], 2):>10} "
                     f"{p(row, 'is_ratio'):>4} {cell(row['flatness_ratio'], 2):>10}")
    return "\n".join(lines)


def steps_to_reach(runs, target_ratio: float = 3.0, arm: str = BASELINE_ARM) -> list:
    """Per run of ``arm``: the steps at its finest scale that its FD curve says reach ``target_ratio`` x floor.

    Fits :func:`study.power_law_reach` to the scored probes of the run's last
    scale, against the steps trained at that scale. An extrapolation of the
    measured trend, not a promise.

    Returns:
        List of ``{"seed", "scale", "steps_at_scale", "fd_ratio", "fit"}`` where
        ``fit`` is :func:`study.power_law_reach`'s dict (``steps`` None when the
        curve does not fall) or None.

    Notebook: chapters/04_activation_and_loss.ipynb
    """
    from pggan_lib import study

    out = []
    for run in runs:
        probes = [p for p in run.get("probes") or [] if p.get("quality")]
        if run["arm"] != arm or not probes:
            continue
        scale = probes[-1]["scale"]
        start = max([p["step"] for p in probes if p["scale"] < scale], default=0)
        last = [p for p in probes if p["scale"] == scale]
        floor = last[-1]["quality"]["frechet_distance"] / last[-1]["quality"]["fd_ratio"]
        fit = study.power_law_reach([p["step"] - start for p in last],
                                    [p["quality"]["frechet_distance"] for p in last],
                                    floor, target_ratio, "steps")
        out.append({"seed": run["seed"], "scale": scale,
                    "steps_at_scale": last[-1]["step"] - start,
                    "fd_ratio": last[-1]["quality"]["fd_ratio"], "fit": fit})
    return out


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------

_COLOURS = {"d_real": "tab:blue", "d_fake": "tab:orange", "delta": "tab:green"}


def save_figures(results, out_dir, dpi: int = 80) -> list:
    """The grid's figures as small PNGs: critic outputs per arm, summary, activations,
    and (scored grids) the FD curves.

    Args:
        results: :func:`load_results` / :func:`run_grid` output.
        out_dir: Folder for the PNGs.
        dpi: Resolution (kept low: the files are committed).

    Returns:
        List of written paths.
    """
    import matplotlib
    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    written = []
    for name, fig in (("critic_outputs.png", figure_critic_outputs(results)),
                      ("summary.png", figure_summary(results)),
                      ("activations.png", figure_activations(results)),
                      ("quality.png", figure_quality(results))):
        if fig is None:
            continue
        fig.savefig(out_dir / name, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        written.append(out_dir / name)
    return written


def _arm_order(results):
    return list(results["summary"].keys())


def figure_critic_outputs(results, seed=None):
    """The report's figure for every arm: D(x) blue, D(G(z)) orange, Delta green.

    One panel per arm (first seed unless ``seed``), two panels per row (7.4
    inches wide); a red line marks divergence. The legend sits in the first
    unused panel (else in the first panel).
    """
    import matplotlib.pyplot as plt
    arms = _arm_order(results)
    cols = 2
    rows = int(math.ceil(len(arms) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.7 * cols, 2.5 * rows), squeeze=False)
    for ax, arm in zip(axes.flat, arms):
        group = [r for r in results["runs"] if r["arm"] == arm]
        run = next((r for r in group if seed is None or r["seed"] == seed), group[0])
        h = run["history"]
        steps = np.asarray(h["step"])
        for key, label in (("d_real", "D(x)"), ("d_fake", "D(G(z))"), ("delta", "Δ")):
            values = np.asarray([np.nan if v is None else v for v in h[key]], float)
            ax.plot(steps, values, color=_COLOURS[key], label=label, linewidth=1)
        if run["diverged"]:
            ax.axvline(run["diverged_step"], color="red", linestyle="--", linewidth=1)
        finite = np.concatenate([np.asarray([v for v in h[k] if v is not None], float)
                                 for k in ("d_real", "d_fake")]) if len(steps) else np.zeros(1)
        if finite.size and np.max(np.abs(finite)) > 50:
            ax.set_yscale("symlog")
        ax.set_title(f"{results['summary'][arm]['label']} (seed {run['seed']})", fontsize=9)
        ax.tick_params(labelsize=9)
    for ax in list(axes.flat)[len(arms):]:
        ax.axis("off")
    if len(arms) < axes.size:
        axes.flat[len(arms)].legend(*axes.flat[0].get_legend_handles_labels(),
                                    loc="center", fontsize=9)
    else:
        axes.flat[0].legend(fontsize=9)
    fig.tight_layout()
    return fig


def figure_summary(results):
    """Per arm, one point per seed: spectral distance, per-clip |mean|, saturation,
    largest generator activation; diverged runs marked with x. A 2 x 2 grid,
    7.5 inches wide."""
    import matplotlib.pyplot as plt
    arms = _arm_order(results)
    panels = [("spectral_distance", "spectral distance (dB)", False),
              ("mean_abs_clip_mean", "per-clip |mean| (sign bias)", False),
              ("saturated", "share |x| > 0.99", False),
              ("generator_max_activation", "largest |activation| (G)", True)]
    fig, axes = plt.subplots(2, 2, figsize=(7.5, 8.0))
    for ax, (key, title, log) in zip(axes.flat, panels):
        for i, arm in enumerate(arms):
            stat = results["summary"][arm][key]
            ax.plot([i] * len(stat["values"]), stat["values"], "o", color="tab:gray",
                    markersize=4, alpha=0.8)
            if stat["mean"] is not None:
                ax.errorbar(i + 0.15, stat["mean"], yerr=stat["std"], fmt="s", color="black",
                            markersize=4, capsize=3)
            n_div = results["summary"][arm]["diverged"]
            if n_div:
                ax.annotate(f"{n_div}× NaN", (i, 1.0), xycoords=("data", "axes fraction"),
                            ha="center", va="top", color="red", fontsize=9)
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels([results["summary"][a]["label"] for a in arms], rotation=60,
                           ha="right", fontsize=9)
        ax.tick_params(axis="y", labelsize=9)
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
    fig.tight_layout()
    return fig


def figure_activations(results, network="generator"):
    """Largest and mean |activation| of the deepest trained block over training, per arm
    (one line per seed). Two panels one above the other, 7.5 inches wide, the
    legend below them."""
    import matplotlib.pyplot as plt
    arms = _arm_order(results)
    fig, axes = plt.subplots(2, 1, figsize=(7.5, 7.0), sharex=True)
    colours = plt.cm.tab10(np.linspace(0, 1, 10))
    for i, arm in enumerate(arms):
        for j, run in enumerate(r for r in results["runs"] if r["arm"] == arm):
            steps, means, maxes = [], [], []
            for p in run["probes"]:
                blocks = [k for k in p[network] if k not in ("output", "score")]
                if not blocks:
                    continue
                deepest = p[network][blocks[-1]]
                steps.append(p["step"])
                means.append(np.nan if deepest["mean_abs"] is None else deepest["mean_abs"])
                maxes.append(np.nan if deepest["max_abs"] is None else deepest["max_abs"])
            kwargs = dict(color=colours[i % 10], linewidth=1, alpha=0.8,
                          label=results["summary"][arm]["label"] if j == 0 else None)
            axes[0].plot(steps, means, **kwargs)
            axes[1].plot(steps, maxes, **kwargs)
    for ax, title in zip(axes, ("mean |activation|", "max |activation|")):
        ax.set(yscale="log", title=f"{network}, newest block: {title}")
    axes[1].set_xlabel("step")
    axes[1].legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.tight_layout()
    return fig


def figure_quality(results):
    """FD / real floor of each arm's EMA generator over training (scored grids only).

    One line per arm (seed mean; the band spans the seeds), log scale; dotted
    vertical lines where a scale begins (the ratio then jumps: a new scale has
    its own floor). 7.5 inches wide, the legend below.

    Returns:
        The figure, or None when no run was scored.

    Notebook: chapters/04_activation_and_loss.ipynb
    """
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    arms = _arm_order(results)
    scored = [r for r in results["runs"] if any(p.get("quality") for p in r["probes"])]
    if not scored:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colours = plt.cm.tab10(np.linspace(0, 1, 10))
    for i, arm in enumerate(arms):
        curves = [{p["step"]: p["quality"]["fd_ratio"] for p in r["probes"] if p.get("quality")}
                  for r in scored if r["arm"] == arm]
        steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        if not steps:
            continue
        values = np.array([[c[s] for s in steps] for c in curves])
        ax.plot(steps, values.mean(axis=0), color=colours[i % 10], linewidth=1.2,
                label=results["summary"][arm]["label"])
        ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=colours[i % 10],
                        alpha=0.15)
    probes = scored[0]["probes"]
    for k in sorted({p["scale"] for p in probes})[1:]:  # where scale k's fade-in begins
        ax.axvline(max(p["step"] for p in probes if p["scale"] < k) + 0.5, color="k",
                   linestyle=":", linewidth=1)
    ax.set(yscale="log", xlabel="step", ylabel="FD / real floor",
           title="EMA generator's Fréchet distance over training (seed mean, band: seeds)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    fig.tight_layout()
    return fig


def verdict_changes(before, after) -> list:
    """Claims whose verdict differs between two grids (e.g. a short and a longer budget).

    Args:
        before, after: Lists of verdict dicts (:func:`compute_verdicts`, or the
            ``verdicts`` of a ``results.json``).

    Returns:
        List of ``{"claim", "statement", "before", "after"}`` for claims in both
        lists whose verdict word changed, in ``after``'s order.

    Notebook: chapters/04_activation_and_loss.ipynb
    """
    old = {v["claim"]: v["verdict"] for v in before}
    return [{"claim": v["claim"], "statement": v["statement"], "before": old[v["claim"]],
             "after": v["verdict"]} for v in after
            if v["claim"] in old and old[v["claim"]] != v["verdict"]]
