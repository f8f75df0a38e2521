"""Benchmark the compiled training step of a preset, scale by scale.

Prints, per scale: parameters (generator / critic), steps/s, clips/s, audio
seconds trained per wall second, model FLOP/s (counted analytically from layer
shapes by ``models.count_flops``) and that figure as a fraction of the fp32
matmul FLOP/s measured in the same process; then peak memory (RSS) and the
finest-scale generator's speed (batch 16) in multiples of real time.

Random audio stands in for data, so the numbers measure the step, not the
input pipeline. Usage::

    python benchmarks/bench_training.py --preset quick --steps 10
    python benchmarks/bench_training.py --preset reference --steps 3 --scales 7

Notebook: chapters/05_training_on_gpu.ipynb
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pggan_lib import config, models, training  # noqa: E402


def matmul_flops_per_s(n=2048, repeats=10) -> float:
    """fp32 FLOP/s of an n x n matmul on this machine (best of a few runs)."""
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            out = matmul(a, b)
        out.numpy()
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2.0 * n ** 3 / best


def step_flops(spec, scale, batch, n_critic, penalty=True) -> float:
    """Model FLOPs of one training step (rough, from forward FLOPs per example).

    Critic update: G forward, D forward + weight-gradient backward on real and
    fake (3 D each), penalty: D forward and input gradient (2 D) differentiated
    again (x2 -> 6 D). Generator update: G forward + backward (3 G), D forward
    + input-gradient backward (2 D).
    """
    forward = models.count_flops(spec, scale)
    g, d = forward["generator"], forward["critic"]
    critic = g + 6 * d + (6 * d if penalty else 0)
    return batch * (n_critic * critic + 3 * g + 2 * d)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per scale")
    parser.add_argument("--scales", type=int, default=config.DEFAULT_NUM_SCALES)
    parser.add_argument("--clip-samples", type=int, default=config.DEFAULT_CLIP_SAMPLES)
    parser.add_argument("--loss", default="wgan-gp")
    args = parser.parse_args(argv)

    preset = config.get_preset(args.preset)
    manifest = {"num_scales": args.scales, "clip_samples": args.clip_samples,
                "class_names": ["a"], "sample_rate": config.DEFAULT_SAMPLE_RATE}
    spec = training.model_spec_for(preset, manifest)
    gan = training.build_gan(spec, preset, loss=args.loss)
    strategy = tf.distribute.get_strategy()
    reference = matmul_flops_per_s()
    print(f"preset {preset.name}: channels {spec.channels}, kernel {spec.kernel_size}, "
          f"latent {spec.latent_dim}, n_critic {preset.n_critic}, XLA {preset.jit_compile}, "
          f"precision {preset.mixed_precision or 'float32'}")
    print(f"fp32 matmul (2048^2) in this process: {reference / 1e9:.0f} GFLOP/s "
          f"(oneDNN {'off' if os.environ.get('TF_ENABLE_ONEDNN_OPTS') == '0' else 'on'}: "
          "it roughly doubles CPU training speed)")
    print(f"{'scale':>5} {'samples':>7} {'batch':>5} {'G params':>9} {'D params':>9} "
          f"{'trace s':>7} {'steps/s':>8} {'clips/s':>8} {'x real':>7} {'GFLOP/s':>8} "
          f"{'of matmul':>9}")
    rng = np.random.default_rng(0)
    batches = preset.per_scale("batch_sizes", spec.num_scales)
    penalty = gan.loss_fns.uses_penalty
    for scale in range(spec.num_scales):
        gan.set_scale(scale)
        gan.set_alpha(1.0)
        batch, samples = batches[scale], spec.samples_at_scale(scale)
        real = tf.constant(rng.uniform(-0.5, 0.5, (batch, samples, 1)).astype(np.float32))
        labels = tf.zeros((batch,), tf.int32)
        step = training._make_step_function(gan, strategy, batch, preset.jit_compile)
        start = time.perf_counter()
        float(step(real, labels)["d_loss"])  # trace (and XLA-compile)
        trace = time.perf_counter() - start
        float(step(real, labels)["d_loss"])
        start = time.perf_counter()
        for _ in range(args.steps):
            out = step(real, labels)
        float(out["d_loss"])
        seconds = (time.perf_counter() - start) / args.steps
        flops = step_flops(spec, scale, batch, preset.n_critic, penalty) / seconds
        rate = config.scale_sample_rate(scale, spec.num_scales, config.DEFAULT_SAMPLE_RATE)
        print(f"{scale:>5} {samples:>7} {batch:>5} {gan.generator.count_params_at_scale(scale):>9} "
              f"{gan.critic.count_params_at_scale(scale):>9} {trace:>7.1f} {1 / seconds:>8.2f} "
              f"{batch / seconds:>8.1f} {batch * samples / rate / seconds:>7.1f} "
              f"{flops / 1e9:>8.1f} {flops / reference:>9.1%}")

    # Generation speed of the finest scale: batch 16, compiled.
    finest = spec.num_scales - 1
    gan.ema_generator.set_scale(finest)
    generate = tf.function(lambda z: gan.ema_generator(z, training=False))
    z = tf.random.normal((16, spec.latent_dim))
    generate(z).numpy()
    start = time.perf_counter()
    for _ in range(5):
        out = generate(z)
    out.numpy()
    seconds = (time.perf_counter() - start) / 5
    audio_seconds = 16 * spec.clip_samples / config.DEFAULT_SAMPLE_RATE
    print(f"finest-scale generator, batch 16: {seconds * 1e3:.1f} ms per batch = "
          f"{audio_seconds / seconds:.0f}x real time")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
