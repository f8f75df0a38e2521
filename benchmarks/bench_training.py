"""Benchmark the compiled training step of a preset, scale by scale.

Prints, per scale: parameters (generator / critic), steps/s, clips/s, audio
seconds trained per wall second, model FLOP/s (counted analytically from layer
shapes by ``models.count_flops``), that figure as a fraction of the fp32
matmul FLOP/s measured in the same process, and peak memory (GPU allocator
peak, or the process's cumulative peak RSS on a CPU); then the finest-scale
generator's speed (batch 16) in multiples of real time and the peak RSS.

Random audio stands in for data, so the numbers measure the step, not the
input pipeline. The work is done by ``pggan_lib.profiling.benchmark_scales``;
``--json`` writes its result with the command line that made it. Usage::

    python benchmarks/bench_training.py --preset quick --steps 10
    python benchmarks/bench_training.py --preset reference --steps 3 --scales 7
    python benchmarks/bench_training.py --preset quick --overrides jit_compile=true
    python benchmarks/bench_training.py --preset quick --overrides mixed_precision=mixed_bfloat16
    python benchmarks/bench_training.py --preset colab --json results/bench_colab_l4.json

Notebook: chapters/05_training_on_gpu.ipynb
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pggan_lib import config, profiling  # noqa: E402


def parse_override(text):
    """``"field=value"`` -> ``(field, value)``; value as JSON (true, 8), else a string."""
    field, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    try:
        return field, json.loads(value)
    except json.JSONDecodeError:
        return field, value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per scale")
    parser.add_argument("--scales", type=int, default=config.DEFAULT_NUM_SCALES)
    parser.add_argument("--clip-samples", type=int, default=None,
                        help="finest-scale clip length (default: 16384, or the preset's "
                             "minimum when longer)")
    parser.add_argument("--loss", default="wgan-gp")
    parser.add_argument("--overrides", nargs="*", type=parse_override, default=[],
                        metavar="FIELD=VALUE",
                        help="preset fields to change, e.g. jit_compile=true "
                             "mixed_precision=mixed_bfloat16")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the result (with this command) as JSON")
    args = parser.parse_args(argv)

    result = profiling.benchmark_scales(
        args.preset, num_scales=args.scales, clip_samples=args.clip_samples, steps=args.steps,
        loss=args.loss, overrides=dict(args.overrides))
    print(profiling.format_benchmark(result))
    if args.json:
        argv = sys.argv if argv is None else [sys.argv[0]] + list(argv)
        result = {"command": shlex.join(["python"] + list(argv)), **result}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
