"""Benchmark: how fast and how lean is ``build_dataset``?

Synthesises N minutes of audio (tones, chords and noise; 3 classes; a mix of
WAV/FLAC files at 44.1 kHz stereo, 22.05 kHz and 16 kHz mono) in a temporary
folder, builds the dataset and prints seconds of audio per wall second and the
peak resident memory. It also times one pass of ``make_tf_dataset`` at the
finest and the coarsest scale. Prints figures; asserts nothing about time.

Usage: python benchmarks/bench_dataset.py [--minutes 30] [--file-minutes 5] [--keep DIR]

Notebook: chapters/01_audio_fundamentals.ipynb
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

FORMATS = [(44100, 2, "wav"), (22050, 1, "flac"), (16000, 1, "wav"), (44100, 2, "flac")]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthesise(folder: Path, minutes: float, file_minutes: float, seed: int = 0) -> float:
    """Write ``minutes`` of audio in files of ``file_minutes``; return seconds written."""
    rng = np.random.default_rng(seed)
    classes = {"low_drone": 110.0, "mid_chords": 262.0, "high_melody": 660.0}
    n_files = max(3, int(round(minutes / file_minutes)))
    seconds_each = minutes * 60 / n_files
    written = 0.0
    for i in range(n_files):
        name, base = list(classes.items())[i % 3]
        rate, channels, ext = FORMATS[i % len(FORMATS)]
        path = folder / name / f"piece_{i:03d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with sf.SoundFile(str(path), "w", rate, channels, subtype="PCM_16") as out:
            block = rate * 30  # write 30 s at a time: the generator stays small too
            for start in range(0, int(seconds_each * rate), block):
                t = (start + np.arange(min(block, int(seconds_each * rate) - start))) / rate
                note = base * 2 ** (np.floor(t * 2) % 12 / 12)  # a new pitch every 0.5 s
                x = (0.3 * np.sin(2 * np.pi * note * t) + 0.1 * np.sin(3 * np.pi * note * t)
                     + 0.02 * rng.standard_normal(t.shape))
                x *= 0.5 + 0.5 * np.abs(np.sin(np.pi * t / 7))  # slow loudness changes
                out.write(np.repeat(x[:, None], channels, axis=1).astype(np.float32))
        written += seconds_each
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--file-minutes", type=float, default=5.0)
    parser.add_argument("--keep", type=Path, default=None, help="build in this folder and keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        source, out = root / "source", root / "dataset"
        t0 = time.perf_counter()
        seconds = synthesise(source, args.minutes, args.file_minutes)
        print(f"synthesised {seconds / 60:.1f} min in {time.perf_counter() - t0:.1f} s "
              f"(rss so far {peak_rss_mb():.0f} MB)")
        from pggan_lib import data  # imported after synthesis, so the peak is the build's

        rss_before = peak_rss_mb()
        print(f"rss after importing pggan_lib.data (TensorFlow): {rss_before:.0f} MB")
        t0 = time.perf_counter()
        report = data.build_dataset(source, out, overwrite=True, progress=False)
        wall = time.perf_counter() - t0
        print(report.summary())
        print(f"\nbuild_dataset: {seconds:.0f} s of audio in {wall:.1f} s wall = "
              f"{seconds / wall:.0f} s audio per wall second")
        print(f"peak RSS during build: {peak_rss_mb():.0f} MB (before build {rss_before:.0f} MB)")
        size = sum(p.stat().st_size for p in out.glob("*.tfrecord"))
        print(f"dataset size on disk: {size / 2**20:.0f} MB")

        for scale in (6, 0):
            dataset = data.make_tf_dataset(out, "train", scale=scale, batch_size=64,
                                           repeat=False, drop_remainder=False)
            t0 = time.perf_counter()
            clips = sum(int(batch[1].shape[0]) for batch in dataset)
            wall = time.perf_counter() - t0
            print(f"make_tf_dataset scale {scale}: {clips} clips in {wall:.2f} s = "
                  f"{clips / wall:.0f} clips/s")
        print(f"final peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
