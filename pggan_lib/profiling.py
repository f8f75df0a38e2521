"""The cost of training: FLOPs, speed, memory, and what a preset will cost.

Three questions, answered from the models' layer shapes and from a stopwatch:

* *How much arithmetic is a run?* :func:`step_flops` counts the model FLOPs of
  one training step from ``models.count_flops``; :func:`run_flops` sums them
  over a preset's whole schedule.
* *How fast does this machine do it?* :func:`benchmark_scales` times the
  compiled training step scale by scale on random audio (so it measures the
  step, not the input pipeline) and sets the model FLOP/s beside the matmul
  FLOP/s that the same process reaches (:func:`matmul_flops_per_s`), with the
  peak memory of each scale.
* *What will a run cost?* :func:`estimate_run_hours` divides a run's FLOPs by
  a measured rate; :func:`expected_cost_table` divides them by a GPU's
  data-sheet peak times an assumed utilisation: an estimate, not a measurement.

``benchmarks/bench_training.py`` is the command-line face of this module.

Notebook: chapters/05_training_on_gpu.ipynb
"""

from __future__ import annotations

import functools
import os
import platform
import resource
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pggan_lib import config, losses, models, training

__all__ = [
    "GPU_PEAK_TFLOPS",
    "step_flops",
    "schedule_flops",
    "run_flops",
    "matmul_flops_per_s",
    "device_description",
    "cpu_model_name",
    "machine_description",
    "benchmark_scales",
    "format_benchmark",
    "estimate_run_hours",
    "expected_cost_table",
]

#: Vendor data-sheet peak dense throughput in TFLOP/s (no structured sparsity):
#: plain fp32 (CUDA cores) and fp16 on tensor cores with fp32 accumulation.
#: Sources: NVIDIA T4 Tensor Core GPU data sheet; NVIDIA L4 Tensor Core GPU data
#: sheet (its 242 TFLOP/s fp16 figure is with sparsity: 121 dense); NVIDIA A100
#: Tensor Core GPU data sheet (40 GB SXM/PCIe). These are peaks that no real
#: training step reaches, not measurements; utilisation scales them down.
GPU_PEAK_TFLOPS = {
    "T4": {"fp32": 8.1, "fp16_tensor": 65.0},
    "L4": {"fp32": 30.3, "fp16_tensor": 121.0},
    "A100-40GB": {"fp32": 19.5, "fp16_tensor": 312.0},
}


# ---------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------

def step_flops(spec, scale, batch, n_critic, penalty=True) -> float:
    """Model FLOPs of one training step (rough, from forward FLOPs per example).

    With G and D the forward FLOPs per example of generator and critic
    (``models.count_flops``), a backward pass costs about twice its forward
    pass (one product for the input gradient, one for the weight gradient):

    * critic update: G forward, D forward + backward on real and on fake
      (3 D each); the gradient penalty's D forward and input gradient (2 D)
      are differentiated again (x2 -> 6 D more);
    * generator update: G forward + backward (3 G), D forward + input-gradient
      backward (2 D).

    Elementwise work (activations, pixel norm, optimiser updates) is left out.

    Args:
        spec: ``models.ModelSpec``.
        scale: Scale trained.
        batch: Global batch size.
        n_critic: Critic updates per generator update.
        penalty: Whether the critic loss has the gradient penalty.

    Returns:
        FLOPs per step: ``batch * (n_critic * (G + 6 D [+ 6 D]) + 3 G + 2 D)``.
    """
    forward = models.count_flops(spec, scale)
    g, d = forward["generator"], forward["critic"]
    critic = g + 6 * d + (6 * d if penalty else 0)
    return float(batch * (n_critic * critic + 3 * g + 2 * d))


def _clip_samples_for(preset, clip_samples):
    # A preset made for longer clips (colab: 4.096 s) is costed at its own length.
    if clip_samples is None:
        return max(config.DEFAULT_CLIP_SAMPLES, preset.min_clip_samples)
    return int(clip_samples)


def _spec_for(preset, num_scales, clip_samples):
    if preset.representation != "waveform":
        raise ValueError(f"FLOP counts and step timings cover the waveform models; preset "
                         f"{preset.name!r} has representation={preset.representation!r} "
                         f"(chapter 8 times spectrogram runs by their training CPU-seconds)")
    manifest = {"num_scales": num_scales, "clip_samples": clip_samples,
                "class_names": ["a"], "sample_rate": config.DEFAULT_SAMPLE_RATE}
    return training.model_spec_for(preset, manifest)


def schedule_flops(spec, schedule, n_critic=1, penalty=True) -> dict:
    """Model FLOPs of a list of training phases (a whole schedule, or the part trained).

    Args:
        spec: ``models.ModelSpec`` of the run.
        schedule: Phases: :class:`training.Phase` objects, or the dicts of a run's
            ``config.json["schedule"]``; each has ``scale``, ``steps`` and ``batch_size``.
        n_critic: Critic updates per generator update.
        penalty: Whether the critic loss has the gradient penalty.

    Returns:
        ``{"total": FLOPs, "per_scale": [FLOPs of scale k, k = 0..K-1],
        "steps": generator updates, "clips": real clips seen (sum of
        steps * batch)}``.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    per_scale = [0.0] * spec.num_scales
    steps = clips = 0
    for phase in schedule:
        fields = phase if isinstance(phase, dict) else vars(phase)
        scale, phase_steps, batch = fields["scale"], fields["steps"], fields["batch_size"]
        per_scale[scale] += phase_steps * step_flops(spec, scale, batch, n_critic, penalty)
        steps += phase_steps
        clips += phase_steps * batch
    return {"total": float(sum(per_scale)), "per_scale": per_scale, "steps": steps,
            "clips": clips}


def run_flops(preset, num_scales=config.DEFAULT_NUM_SCALES, clip_samples=None,
              loss="wgan-gp") -> dict:
    """Model FLOPs of a whole progressive run of a preset.

    :func:`schedule_flops` of :func:`training.make_schedule` (fade and stable
    phases alike; the fade path is in ``count_flops``).

    Args:
        preset: Name or ``config.Preset``.
        num_scales: Scales of the dataset (K).
        clip_samples: Finest-scale clip length (None: 16384, or the preset's
            ``min_clip_samples`` when longer, e.g. 65536 for ``colab``).
        loss: ``"wgan-gp"`` or ``"report"`` (decides the gradient penalty).

    Returns:
        ``{"total": FLOPs, "per_scale": [FLOPs of scale k, k = 0..K-1],
        "steps": generator updates, "clips": real clips seen (sum of
        steps * batch)}``.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    preset = config.get_preset(preset)
    spec = _spec_for(preset, num_scales, _clip_samples_for(preset, clip_samples))
    return schedule_flops(spec, training.make_schedule(preset, num_scales), preset.n_critic,
                          losses.get_loss(loss).uses_penalty)


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def matmul_flops_per_s(n=2048, repeats=10) -> float:
    """fp32 FLOP/s of an ``(n, n) @ (n, n)`` matmul on this machine.

    The yardstick for model FLOP/s: what the same process reaches on the
    friendliest possible kernel. Best of three timed runs of ``repeats``,
    measured once per process and size (it takes seconds), then remembered.

    Args:
        n: Matrix size.
        repeats: Matmuls per timed run.

    Returns:
        ``2 n^3 / seconds per matmul``.
    """
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            out = matmul(a, b)
        out.numpy()  # waits for the device
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2.0 * n ** 3 / best


def device_description() -> str:
    """The device a step runs on, in words.

    Returns:
        The GPU's name (``"NVIDIA L4"``; ``"2 x ..."`` for several), else
        ``"CPU: <model name>, N cores"``.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        return name if len(gpus) == 1 else f"{len(gpus)} x {name}"
    return f"CPU: {cpu_model_name()}, {os.cpu_count()} cores"


def cpu_model_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description() -> dict:
    """CPU model, core count, GPUs, platform and library versions (for results files).
    """
    return {"cpu": cpu_model_name(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux; it only ever grows over the process's life.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time_scale(gan, spec, preset, strategy, scale, batch, steps, matmul, on_gpu, rng) -> dict:
    """One row of :func:`benchmark_scales`: trace, then time ``steps`` steps at ``scale``."""
    if on_gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    gan.set_scale(scale)
    gan.set_alpha(1.0)
    samples = spec.samples_at_scale(scale)
    real = tf.constant(rng.uniform(-0.5, 0.5, (batch, samples, 1)).astype(np.float32))
    labels = tf.zeros((batch,), tf.int32)
    step = training.make_step_function(gan, strategy, batch, preset.jit_compile)
    start = time.perf_counter()
    float(step(real, labels)["d_loss"])  # trace (and XLA-compile)
    trace = time.perf_counter() - start
    float(step(real, labels)["d_loss"])  # first run after tracing is slower
    start = time.perf_counter()
    for _ in range(steps):
        out = step(real, labels)
    float(out["d_loss"])  # waits for the last step
    seconds = (time.perf_counter() - start) / steps
    flops = step_flops(spec, scale, batch, preset.n_critic, gan.loss_fns.uses_penalty)
    rate = config.scale_sample_rate(scale, spec.num_scales, config.DEFAULT_SAMPLE_RATE)
    if on_gpu:
        memory = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
        kind = "GPU peak"
    else:
        memory, kind = _peak_rss_mb(), "process peak RSS (cumulative)"
    return {"scale": int(scale), "samples": samples, "sample_rate": rate,
            "batch": batch, "g_params": gan.generator.count_params_at_scale(scale),
            "d_params": gan.critic.count_params_at_scale(scale),
            "trace_s": trace, "step_s": seconds, "steps_per_s": 1.0 / seconds,
            "clips_per_s": batch / seconds,
            "realtime_factor": batch * samples / rate / seconds,
            "step_flops": flops, "model_gflops_per_s": flops / seconds / 1e9,
            "fraction_of_matmul": flops / seconds / matmul,
            "memory_mb": memory, "memory_kind": kind}


def _time_generation(generator, spec, batch=16, repeats=5) -> float:
    """Seconds per compiled call of the finest-scale generator on ``batch`` latents."""
    generator.set_scale(spec.num_scales - 1)
    generate = tf.function(lambda z: generator(z, training=False))
    z = tf.random.normal((batch, spec.latent_dim))
    generate(z).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        out = generate(z)
    out.numpy()
    return (time.perf_counter() - start) / repeats


def benchmark_scales(preset, num_scales=config.DEFAULT_NUM_SCALES, clip_samples=None,
                     steps=5, scales=None, loss="wgan-gp", overrides=None,
                     progress=False, matmul_size=2048) -> dict:
    """Time the compiled training step of a preset at each scale.

    Builds the GAN (``training.build_gan``) of ``preset.replace(**overrides)``
    and, per scale, traces the step that ``train`` uses, runs it once more to
    warm up, then times ``steps`` steps on one batch of random audio (the
    step, not the input pipeline). Also times the finest-scale EMA generator
    at batch 16.

    Memory: on a GPU the allocator's peak during each scale (``"GPU peak"``);
    on a CPU the process's peak resident set, which only grows, so a row
    holds the peak of that scale and all before it.

    Args:
        preset: Name or ``config.Preset``.
        num_scales: Scales of the dataset (K).
        clip_samples: Finest-scale clip length (None: as in :func:`run_flops`).
        steps: Timed steps per scale.
        scales: Scale indices to time (None: all).
        loss: ``"wgan-gp"`` or ``"report"``.
        overrides: Preset fields to change, e.g. ``{"jit_compile": True}`` or
            ``{"mixed_precision": "mixed_bfloat16"}``.
        progress: Print one line per scale as it finishes.
        matmul_size: Size of the yardstick matmul (:func:`matmul_flops_per_s`).

    Returns:
        A JSON-ready dict: ``preset, overrides, device, jit_compile, precision,
        onednn, matmul_gflops`` (fp32, this process), ``matmul_size``, the
        spec's ``channels, kernel_size, latent_dim, n_critic, num_scales,
        clip_samples, loss, steps``, ``generation`` (finest scale, batch 16: ``ms_per_batch,
        realtime_factor``), ``peak_rss_mb`` and ``scales``: one dict per
        scale with ``scale, samples, sample_rate, batch, g_params, d_params,
        trace_s, step_s, steps_per_s, clips_per_s, realtime_factor`` (audio
        seconds trained per wall second), ``step_flops, model_gflops_per_s,
        fraction_of_matmul, memory_mb, memory_kind``.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    overrides = dict(overrides or {})
    preset = config.get_preset(preset).replace(**overrides)
    clip_samples = _clip_samples_for(preset, clip_samples)
    spec = _spec_for(preset, num_scales, clip_samples)
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    previous_policy = keras.config.dtype_policy()
    try:
        # build_gan restores the policy itself; the finally guards the timing too.
        gan = training.build_gan(spec, preset, loss=loss)
        strategy = tf.distribute.get_strategy()
        matmul = matmul_flops_per_s(matmul_size)
        batches = preset.per_scale("batch_sizes", num_scales)
        rng = np.random.default_rng(0)
        rows = []
        for scale in range(num_scales) if scales is None else scales:
            row = _time_scale(gan, spec, preset, strategy, scale, int(batches[scale]), steps,
                              matmul, on_gpu, rng)
            rows.append(row)
            if progress:
                print(f"scale {scale}: trace {row['trace_s']:.1f} s, "
                      f"{row['step_s'] * 1e3:.1f} ms/step, "
                      f"{row['model_gflops_per_s']:.1f} GFLOP/s", flush=True)
        generation_s = _time_generation(gan.ema_generator, spec)
    finally:
        keras.config.set_dtype_policy(previous_policy)

    return {
        "preset": preset.name, "overrides": overrides, "device": device_description(),
        "jit_compile": bool(preset.jit_compile),
        "precision": preset.mixed_precision or "float32",
        # TensorFlow turns oneDNN on unless the variable says "0".
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0",
        "matmul_gflops": matmul / 1e9, "matmul_size": matmul_size,
        "channels": list(spec.channels), "kernel_size": spec.kernel_size,
        "latent_dim": spec.latent_dim, "n_critic": preset.n_critic,
        "num_scales": num_scales, "clip_samples": clip_samples, "loss": loss,
        "steps": steps,
        "generation": {"batch": 16, "ms_per_batch": generation_s * 1e3,
                       "realtime_factor": 16 * clip_samples / config.DEFAULT_SAMPLE_RATE
                       / generation_s},
        "peak_rss_mb": _peak_rss_mb(),
        "scales": rows,
    }


def format_benchmark(result: dict) -> str:
    """:func:`benchmark_scales`' result as plain text, at most 76 characters wide.

    A wrapped header (preset, device, model, precision, the fp32 matmul rate),
    then two tables with one row per scale. The first: scale, sample rate,
    batch, parameters of G and D, first step (trace, plus XLA compile) in s,
    ms/step, steps/s, clips/s. The second: audio seconds trained per wall
    second (``x real``), model GFLOP/s, that as a share of the fp32 matmul
    (``of matmul``), memory in MB. Then the memory kind and peak, and the
    finest generator's speed.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    import textwrap

    header = (f"preset {result['preset']!r} on {result['device']}: channels "
              f"{result['channels']}, kernel {result['kernel_size']}, clips of "
              f"{result['clip_samples']} samples, precision {result['precision']}, "
              f"XLA {result['jit_compile']}, oneDNN {'on' if result['onednn'] else 'off'}; "
              f"fp32 matmul {result['matmul_gflops']:.0f} GFLOP/s")
    lines = textwrap.wrap(header, 76, break_on_hyphens=False)
    lines.append(f"{'scale':>5} {'rate':>6} {'batch':>5} {'G params':>9} {'D params':>9} "
                 f"{'first s':>7} {'ms/step':>9} {'steps/s':>8} {'clips/s':>8}")
    for row in result["scales"]:
        lines.append(
            f"{row['scale']:5d} {row['sample_rate']:6d} {row['batch']:5d} "
            f"{row['g_params']:9,d} {row['d_params']:9,d} {row['trace_s']:7.1f} "
            f"{row['step_s'] * 1e3:9.1f} {row['steps_per_s']:8.2f} "
            f"{row['clips_per_s']:8.1f}")
    lines.append("")
    lines.append(f"{'scale':>5} {'x real':>7} {'GFLOP/s':>8} {'of matmul':>9} "
                 f"{'memory MB':>9}")
    for row in result["scales"]:
        lines.append(f"{row['scale']:5d} {row['realtime_factor']:7.1f} "
                     f"{row['model_gflops_per_s']:8.1f} "
                     f"{row['fraction_of_matmul']:9.1%} {row['memory_mb']:9.0f}")
    if result["scales"]:
        lines.append(f"memory MB: {result['scales'][0]['memory_kind']}")
    lines.append(f"process peak RSS at the end: {result['peak_rss_mb']:.0f} MB")
    generation = result["generation"]
    lines.append(f"finest-scale generator, batch {generation['batch']}: "
                 f"{generation['ms_per_batch']:.1f} ms per batch = "
                 f"{generation['realtime_factor']:.0f}x real time")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Estimating
# ---------------------------------------------------------------------------

def estimate_run_hours(preset, flops_per_s, num_scales=config.DEFAULT_NUM_SCALES,
                       clip_samples=None, loss="wgan-gp") -> float:
    """Hours a whole run of ``preset`` takes at a sustained model FLOP/s.

    Plain arithmetic, ``run_flops(...)["total"] / flops_per_s / 3600``: pass a
    rate measured by :func:`benchmark_scales` (e.g. the finest scales'
    ``model_gflops_per_s * 1e9``) for an estimate of this machine.

    Args:
        preset: Name or ``config.Preset``.
        flops_per_s: Sustained model FLOP/s.
        num_scales: Scales of the dataset.
        clip_samples: Finest-scale clip length (None: as in :func:`run_flops`).
        loss: ``"wgan-gp"`` or ``"report"``.

    Returns:
        Hours (model arithmetic only: no data loading, checkpoints or samples).
    """
    total = run_flops(preset, num_scales, clip_samples, loss)["total"]
    return total / flops_per_s / 3600.0


def expected_cost_table(preset="colab", utilisations=(0.1, 0.3),
                        num_scales=config.DEFAULT_NUM_SCALES, clip_samples=None,
                        loss="wgan-gp", gpus=None) -> list:
    """Estimated hours of a run on common GPUs, from their data-sheet peaks.

    ``hours = run FLOPs / (peak * utilisation) / 3600`` for every GPU of
    :data:`GPU_PEAK_TFLOPS`, both precisions and every utilisation. Small 1-D
    convolutional GANs reach a modest fraction of peak (0.1-0.3 is a
    plausible range, not a promise): this is an estimate to plan with, to be
    replaced by a measurement (:func:`benchmark_scales`) on the real card.

    Args:
        preset: Name or ``config.Preset``.
        utilisations: Fractions of peak to assume.
        num_scales: Scales of the dataset.
        clip_samples: Finest-scale clip length (None: as in :func:`run_flops`).
        loss: ``"wgan-gp"`` or ``"report"``.
        gpus: Keys of :data:`GPU_PEAK_TFLOPS` (None: all).

    Returns:
        List of dicts ``{"gpu", "precision", "peak_tflops", "utilisation",
        "run_tflop", "hours"}`` (``run_tflop``: the run's model TFLOPs).

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    total = run_flops(preset, num_scales, clip_samples, loss)["total"]
    rows = []
    for gpu in GPU_PEAK_TFLOPS if gpus is None else gpus:
        for precision, peak in GPU_PEAK_TFLOPS[gpu].items():
            for utilisation in utilisations:
                rows.append({"gpu": gpu, "precision": precision, "peak_tflops": peak,
                             "utilisation": utilisation, "run_tflop": total / 1e12,
                             "hours": total / (peak * 1e12 * utilisation) / 3600.0})
    return rows
