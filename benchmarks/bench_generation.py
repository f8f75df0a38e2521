"""How fast a trained run generates audio: multiples of real time, cold start.

Prints, for the run's finest scale: clips per second and multiples of real
time per batch size (compiled generator, after one warm-up call), the speed of
a 30 s track (latent walk + overlap-add), and the time from a cold start
(a new ``pggan generate`` process) to its first file on disk. ``--layers``
adds where the time goes: each layer of the finest block on its real input,
beside one elementwise pass over the same tensor (the memory-bound floor).

Usage:
    python benchmarks/bench_generation.py --run results/reference \
        --json results/benchmarks/generation_cpu.json

Notebook: chapters/07_playing_with_the_generator.ipynb
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cold_start_seconds(run_dir: Path) -> float:
    """Wall seconds of ``pggan generate --n 1`` in a new process (imports included)."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pggan_lib.cli", "generate", "--run", str(run_dir),
                        "--n", "1", "--out", out, "--overwrite"], check=True,
                       stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        assert any(Path(out).glob("*.wav")), "pggan generate wrote no file"
    return elapsed


def batch_speed(playground, batch_size: int, seconds: float = 4.0) -> dict:
    """Clips/s and multiples of real time of ``Playground.generate`` at one batch size."""
    playground.batch_size = batch_size
    z = playground.latent_vectors(range(batch_size))
    playground.generate(z)  # trace
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        playground.generate(z)
        count += batch_size
    clips_per_s = count / (time.perf_counter() - start)
    return {"batch": batch_size, "clips_per_s": clips_per_s,
            "realtime_factor": clips_per_s * playground.clip_samples / playground.sample_rate}


def _ms_per_call(function, value, seconds: float = 1.5) -> float:
    function(value)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        function(value)
        count += 1
    return (time.perf_counter() - start) / count * 1e3


def layer_times(playground, batch_size: int = 32) -> list[dict]:
    """ms per call of each layer of the finest block, compiled, at ``batch_size``."""
    import tensorflow as tf

    generator, scale = playground.generator, playground.info["scale"]
    z = playground.latent_vectors(range(batch_size))
    h = generator.latent_norm(z) if generator.latent_norm is not None else z
    for k in range(scale):
        for layer in generator.blocks[k]:
            h = layer(h)
    rows = [{"layer": "whole generator", "ms": _ms_per_call(playground._call, z)}]
    for layer in generator.blocks[scale]:
        call = tf.function(lambda x, layer=layer: layer(x))
        rows.append({"layer": f"{layer.name} ({type(layer).__name__})", "shape": list(h.shape),
                     "ms": _ms_per_call(call, h)})
        h = call(h)
    rows.append({"layer": "one elementwise pass (x * 2) over that tensor", "shape": list(h.shape),
                 "ms": _ms_per_call(tf.function(lambda x: x * 2.0), h)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("results/reference"))
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--layers", action="store_true",
                        help="also time each layer of the finest block (batch 32)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    cold = cold_start_seconds(args.run)
    start = time.perf_counter()
    from pggan_lib import playground, profiling

    playground_ = playground.Playground(args.run)
    load_s = time.perf_counter() - start
    rows = [batch_speed(playground_, int(b)) for b in args.batches.split(",")]
    playground_.batch_size = 32
    playground_.track(30.0, seed=0)  # trace the last partial batch
    start = time.perf_counter()
    playground_.track(30.0, seed=1)
    track_s = time.perf_counter() - start

    print(f"run {args.run}: scale {playground_.info['scale']}, {playground_.sample_rate} Hz, "
          f"clips of {playground_.clip_samples} samples; {profiling.device_description()}")
    for row in rows:
        print(f"  batch {row['batch']:3d}: {row['clips_per_s']:7.1f} clips/s = "
              f"{row['realtime_factor']:6.1f}x real time")
    print(f"  30 s track (walk + overlap-add): {track_s:.2f} s = {30.0 / track_s:.0f}x real time")
    print(f"  cold start to first file (new `pggan generate --n 1` process): {cold:.1f} s; "
          f"import + load in this process: {load_s:.1f} s")
    layers = layer_times(playground_) if args.layers else []
    for row in layers:
        print(f"  {row['layer']:48s} {row['ms']:7.1f} ms  {row.get('shape', '')}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "run": str(args.run), "device": profiling.device_description(),
            "cpu_count": os.cpu_count(), "batches": rows, "track_30s_s": track_s,
            "cold_start_first_file_s": cold, "import_and_load_s": load_s,
            "layers": layers}, indent=1) + "\n")


if __name__ == "__main__":
    main()
