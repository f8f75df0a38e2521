"""From a folder of music to a streamed, multi-scale training set.

``build_dataset`` turns a folder with one subfolder per class (author, genre)
into fixed-length clips, keeps the progressive sample-rate pyramid of every
clip, and writes them to TFRecord shards that ``make_tf_dataset`` streams
through ``tf.data`` without loading the whole set into memory. It also keeps
each file's whole pyramid, one contiguous int16 stream per split and scale,
from which ``make_window_dataset`` draws windows at random offsets for
training (no clip is seen twice)::

    source/                      dataset/
      bach/a.wav                   manifest.json
      bach/b.flac      ------>     train-00000.tfrecord ...
      palestrina/c.mp3             test-00000.tfrecord ...
                                   train-stream-scale0.pcm ... (one per split and scale)

Design choices, each for a reason:

* Files are processed one at a time and streamed block by block (read ->
  mono -> resample -> halve K-1 times -> cut clips), so memory does not grow
  with the length of a file or of the collection.
* The pyramid is computed on the whole file before it is cut, so a clip's
  coarse scales see its true neighbours rather than zero padding.
* Each scale of each clip is loudness-normalised on its own (same target RMS,
  peak-limited): normalising only the finest clip would leave the level of
  the low-passed versions as a cue (a folk fiddle has little energy below
  250 Hz, a choir a lot), which a classifier or a critic could exploit.
  Streams get one gain per file and scale instead (the same target over the
  whole file), so that windows keep the dynamics inside a piece.
* Train and test are split by source file, never by clip, so that no piece
  is heard in both; the split is deterministic given the seed.
* A bad file is reported with its reason and skipped; only an empty result
  is an error.

A record holds ``label`` (int), ``source`` (index into the manifest's
``sources``), ``clip`` (index of the clip in its file) and ``audio_k`` for each
scale k: the clip at that scale as little-endian int16 PCM bytes.

Notebook: chapters/01_audio_fundamentals.ipynb
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import soxr
import tensorflow as tf

from pggan_lib import audio, files
from pggan_lib.config import (DEFAULT_CLIP_SAMPLES, DEFAULT_NUM_SCALES, DEFAULT_SAMPLE_RATE,
                              DEMO_CORPUS_DIR, DEMO_DATASET_DIR)

__all__ = [
    "DatasetError",
    "DatasetReport",
    "MANIFEST_NAME",
    "SPLITS",
    "scan_source_folder",
    "split_by_source",
    "build_dataset",
    "read_manifest",
    "MANIFEST_FIELDS",
    "dataset_fingerprint",
    "scale_samples",
    "scale_rate",
    "class_names",
    "make_tf_dataset",
    "read_streams",
    "make_window_dataset",
    "load_clips",
    "ensure_demo_dataset",
]

MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "test")
#: Version of the on-disk layout; bump when records or manifest change meaning.
FORMAT_VERSION = 2
#: Aim for shards of about this size (a few per split for hours of audio).
_TARGET_SHARD_BYTES = 128 * 2 ** 20
_MAX_SHARDS = 64
#: Frames read from a file per step while streaming.
_BLOCK_FRAMES = 1 << 19
_PARTIAL_DIR = ".partial"


class DatasetError(ValueError):
    """Bad arguments or a source folder from which nothing usable can be built.
    """


# --------------------------------------------------------------------------------------
# Finding and splitting the source files
# --------------------------------------------------------------------------------------

def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def scan_source_folder(source_dir: str | os.PathLike, exclude: Iterable[Path] = ()
                       ) -> tuple[dict[str, list[Path]], list[tuple[str, str]],
                                  list[tuple[str, str]]]:
    """Find the class folders and their audio files.

    Args:
        source_dir: Folder with one subfolder per class; files may sit in
            nested folders (albums) under a class folder.
        exclude: Folders not to look into (e.g. an output folder inside
            ``source_dir``).

    Returns:
        ``(files_per_class, problems, ignored)``: class name -> sorted audio
        paths (classes sorted by name, empty ones left out); ``problems``:
        ``(path, reason)`` for empty class folders; ``ignored``: ``(path,
        reason)`` for files that are not audio or not inside a class folder.

    Raises:
        DatasetError: ``source_dir`` is missing, not a folder, or has no
            class subfolders.
    """
    root = Path(source_dir).expanduser()
    if not root.exists():
        raise DatasetError(f"source folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"source {root} is not a folder")
    excluded = {Path(p).resolve() for p in exclude}
    problems: list[tuple[str, str]] = []
    ignored: list[tuple[str, str]] = []
    class_dirs = []
    loose_audio = 0
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.resolve() in excluded:
            continue
        if entry.is_dir():
            class_dirs.append(entry)
        elif entry.suffix.lower() in audio.AUDIO_EXTENSIONS:
            loose_audio += 1
            ignored.append((_relative(entry, root), "audio file outside a class folder"))
        else:
            ignored.append((_relative(entry, root), "not an audio file"))
    if not class_dirs:
        hint = (f" (it holds {loose_audio} audio files directly)" if loose_audio else "")
        raise DatasetError(
            f"source folder {root} has no class subfolders{hint}: expected one folder per class, "
            f"e.g. {root}/<class name>/<audio files>")
    files_per_class: dict[str, list[Path]] = {}
    for class_dir in class_dirs:
        files = []
        for path in sorted(class_dir.rglob("*")):
            relative_parts = path.relative_to(class_dir).parts
            if any(part.startswith(".") for part in relative_parts):
                continue  # hidden files and folders (.DS_Store, ._x.wav, .git)
            if any(path.resolve().is_relative_to(e) for e in excluded) or not path.is_file():
                continue
            if path.suffix.lower() in audio.AUDIO_EXTENSIONS:
                files.append(path)
            else:
                ignored.append((_relative(path, root), "not an audio file"))
        if files:
            files_per_class[class_dir.name] = files
        else:
            problems.append((_relative(class_dir, root), "empty class folder: no audio files"))
    return files_per_class, problems, ignored


def split_by_source(seconds_per_file: dict[str, dict[str, float]], test_fraction: float,
                    seed: int = 0) -> dict[str, str]:
    """Assign whole source files to train or test, class by class.

    In each class the files are shuffled (deterministically from ``seed`` and
    the class name) and the first ones go to test until their duration is
    closest to ``test_fraction`` of the class; a class with two or more files
    gets at least one file in each split (when ``0 < test_fraction < 1``).

    Args:
        seconds_per_file: class name -> {file key -> duration in seconds}.
        test_fraction: Wanted share of each class's audio in test, in [0, 1).
        seed: Seed of the shuffle.

    Returns:
        file key -> ``"train"`` or ``"test"``.
    """
    assignment = {}
    for class_name, durations in seconds_per_file.items():
        keys = sorted(durations)
        rng = np.random.default_rng([seed, zlib.crc32(class_name.encode())])
        keys = [keys[i] for i in rng.permutation(len(keys))]
        n_test = 0
        if test_fraction > 0 and len(keys) >= 2:
            total = sum(durations.values())
            cumulative = np.cumsum([durations[k] for k in keys])
            # number of leading files whose total is closest to the target, in [1, n-1]
            candidates = range(1, len(keys))
            n_test = min(candidates, key=lambda n: abs(cumulative[n - 1] - test_fraction * total))
        for i, key in enumerate(keys):
            assignment[key] = "test" if i < n_test else "train"
    return assignment


# --------------------------------------------------------------------------------------
# Turning one file into clips of every scale
# --------------------------------------------------------------------------------------

def _pyramid_clip_batches(blocks: Iterable[np.ndarray], clip_samples: int,
                          num_scales: int) -> Iterator[list[np.ndarray]]:
    """Cut a stream of finest-rate blocks into clips at every scale.

    Each octave below the finest is made by a streaming half-band resampler
    fed by the octave above, so the result equals
    :func:`pggan_lib.audio.sample_rate_pyramid` applied to the whole file and
    then cut, while only a block of each octave is held in memory.

    Yields:
        Lists of K arrays, coarsest first; entry k has shape
        ``(m, clip_samples / 2**(K-1-k))`` for the same m clips.
    """
    halvers = [soxr.ResampleStream(2, 1, 1, dtype="float32", quality="HQ")
               for _ in range(num_scales - 1)]
    # buffers[j] holds octave j (0 = finest) samples not yet cut into clips.
    buffers = [np.zeros(0, np.float32) for _ in range(num_scales)]
    lengths = [clip_samples >> j for j in range(num_scales)]

    def push(block: np.ndarray, last: bool) -> list[np.ndarray] | None:
        signal = block
        for j in range(num_scales):
            if j > 0:
                signal = halvers[j - 1].resample_chunk(signal, last=last)
            if signal.shape[0]:
                buffers[j] = np.concatenate([buffers[j], signal])
        n_clips = min(buffers[j].shape[0] // lengths[j] for j in range(num_scales))
        if n_clips == 0:
            return None
        clips = []
        for j in range(num_scales):
            used = n_clips * lengths[j]
            clips.append(buffers[j][:used].reshape(n_clips, lengths[j]))
            buffers[j] = buffers[j][used:].copy()
        return clips[::-1]

    for block in blocks:
        batch = push(np.asarray(block, np.float32), last=False)
        if batch is not None:
            yield batch
    batch = push(np.zeros(0, np.float32), last=True)
    if batch is not None:
        yield batch


def _to_int16_bytes(clips: np.ndarray) -> list[bytes]:
    pcm = np.clip(np.round(clips * 32768.0), -32768, 32767).astype("<i2")
    return [row.tobytes() for row in pcm]


def _example(label: int, source: int, clip: int, scales: list[bytes]) -> bytes:
    feature = {
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "source": tf.train.Feature(int64_list=tf.train.Int64List(value=[source])),
        "clip": tf.train.Feature(int64_list=tf.train.Int64List(value=[clip])),
    }
    for k, pcm in enumerate(scales):
        feature[f"audio_{k}"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[pcm]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class _ShardWriter:
    """Writes one split's records round-robin over its shards (so each shard mixes files)."""

    def __init__(self, directory: Path, split: str, num_shards: int):
        self.names = [f"{split}-{i:05d}.tfrecord" for i in range(num_shards)]
        self.writers = [tf.io.TFRecordWriter(str(directory / n)) for n in self.names]
        self.counts = [0] * num_shards
        self.next = 0

    def write(self, record: bytes) -> None:
        self.writers[self.next].write(record)
        self.counts[self.next] += 1
        self.next = (self.next + 1) % len(self.writers)

    def close(self) -> list[dict[str, Any]]:
        for writer in self.writers:
            writer.close()
        return [{"file": n, "num_clips": c} for n, c in zip(self.names, self.counts) if c]


class _StreamWriter:
    """Appends each file's whole pyramid to one contiguous int16 stream per split and scale.

    Streams hold the audio at its own level (after resampling, before any
    normalisation); each file's gain per scale is decided when the file ends
    (:meth:`end`), from its RMS and peak at that scale, and applied when
    windows are read. One gain per file keeps the dynamics inside a piece.
    """

    def __init__(self, directory: Path, split: str, num_scales: int):
        self.names = [_stream_name(split, k) for k in range(num_scales)]
        self.files = [open(directory / n, "wb") for n in self.names]
        self.positions = [0] * num_scales
        self._begin()

    def _begin(self) -> None:
        self.start = list(self.positions)
        self.energy = [0.0] * len(self.files)
        self.peak = [0.0] * len(self.files)

    def append(self, scales: list[np.ndarray]) -> None:
        for k, clips in enumerate(scales):
            signal = clips.reshape(-1)
            self.files[k].write(np.clip(np.round(signal * 32768.0), -32768, 32767)
                                .astype("<i2").tobytes())
            self.positions[k] += signal.shape[0]
            self.energy[k] += float(np.sum(signal.astype(np.float64) ** 2))
            self.peak[k] = max(self.peak[k], float(np.max(np.abs(signal), initial=0.0)))

    def end(self, target_db: float, peak: float, max_gain_db: float) -> dict[str, list]:
        """Close the current file's part of the streams: its offsets, lengths and gains."""
        lengths = [p - s for p, s in zip(self.positions, self.start)]
        gains = []
        for energy, top, n in zip(self.energy, self.peak, lengths):
            rms = math.sqrt(energy / n) if n else 0.0
            gain = 0.0 if rms == 0.0 else min(10 ** (target_db / 20) / rms, peak / top,
                                              10 ** (max_gain_db / 20))
            gains.append(round(gain, 6))
        entry = {"offsets": list(self.start), "lengths": lengths, "gains": gains}
        self._begin()
        return entry

    def close(self) -> list[dict[str, Any]]:
        for file in self.files:
            file.close()
        return [{"file": n, "num_samples": p} for n, p in zip(self.names, self.positions)]


def _stream_name(split: str, scale: int) -> str:
    return f"{split}-stream-scale{scale}.pcm"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------

@dataclass
class DatasetReport:
    """What a build produced, skipped and how long it took.

    Attributes:
        out_dir: The dataset folder.
        manifest: The manifest written there (see :func:`read_manifest`).
        skipped: ``(path, reason)`` for every file or folder left out.
        ignored: ``(path, reason)`` for non-audio files that were not read.
        warnings: Remarks that need no action (e.g. a class with one file).
        seconds_read: Seconds of source audio decoded.
        wall_seconds: Build time.
        peak_rss_mb: Peak resident memory of the process (MB) at the end.
    """

    out_dir: Path
    manifest: dict[str, Any]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds_read: float = 0.0
    wall_seconds: float = 0.0
    peak_rss_mb: float = 0.0

    def clips_per_class(self, split: str) -> dict[str, int]:
        """Class name -> number of clips in ``split``."""
        return dict(self.manifest["splits"][split]["clips_per_class"])

    def num_clips(self, split: str) -> int:
        """Clips in ``split``."""
        return int(self.manifest["splits"][split]["num_clips"])

    @property
    def speed(self) -> float:
        """Seconds of source audio processed per second of wall time."""
        return self.seconds_read / self.wall_seconds if self.wall_seconds > 0 else float("inf")

    def summary(self) -> str:
        """Human-readable account: clips per split and class, hours, skipped files, speed."""
        m = self.manifest
        clip_seconds = m["clip_samples"] / m["sample_rate"]
        rates = m["scale_sample_rates"]
        lines = [f"Dataset {self.out_dir}",
                 f"  {m['num_scales']} scales {rates[0]:g} .. {rates[-1]:g} Hz; clips of "
                 f"{m['clip_samples']} samples ({clip_seconds:.3f} s) at the finest scale"]
        width = max([len("class")] + [len(c) for c in m["class_names"]])
        lines.append(f"  {'class':<{width}}  {'train':>7}  {'test':>7}")
        for name in m["class_names"]:
            counts = [m["splits"][s]["clips_per_class"].get(name, 0) for s in SPLITS]
            lines.append(f"  {name:<{width}}  {counts[0]:>7}  {counts[1]:>7}")
        totals = [m["splits"][s]["num_clips"] for s in SPLITS]
        lines.append(f"  {'total':<{width}}  {totals[0]:>7}  {totals[1]:>7}   "
                     f"({_duration(totals[0] * clip_seconds)} train, "
                     f"{_duration(totals[1] * clip_seconds)} test)")
        files = [len(m["splits"][s]["sources"]) for s in SPLITS]
        dropped = sum(m["splits"][s]["dropped_silent_clips"] for s in SPLITS)
        lines.append(f"  source files: {files[0]} train, {files[1]} test; "
                     f"{dropped} near-silent clips dropped")
        lines.append(f"  read {_duration(self.seconds_read)} of audio in {self.wall_seconds:.1f} s "
                     f"({self.speed:.0f}x real time), peak memory {self.peak_rss_mb:.0f} MB")
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)}:")
            lines += [f"  {path}: {reason}" for path, reason in self.skipped]
        if self.ignored:
            lines.append(f"Ignored {len(self.ignored)} non-audio or misplaced files:")
            shown = self.ignored[:10]
            lines += [f"  {path}: {reason}" for path, reason in shown]
            if len(self.ignored) > len(shown):
                lines.append(f"  ... and {len(self.ignored) - len(shown)} more (see manifest.json)")
        if self.warnings:
            lines.append("Warnings:")
            lines += [f"  {w}" for w in self.warnings]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------

def _validate(sample_rate: int, clip_samples: int, num_scales: int, test_fraction: float) -> None:
    if not (isinstance(num_scales, int) and num_scales >= 1):
        raise DatasetError(f"num_scales (--scales) must be an integer >= 1, got {num_scales!r}")
    if not (isinstance(clip_samples, int) and clip_samples > 0):
        raise DatasetError(f"clip_samples (--clip-samples) must be a positive integer, "
                           f"got {clip_samples!r}")
    factor = 2 ** (num_scales - 1)
    if clip_samples % factor:
        raise DatasetError(
            f"clip_samples (--clip-samples) = {clip_samples} must be divisible by "
            f"2**(scales-1) = {factor} so that every scale has a whole number of samples; "
            f"the nearest valid lengths are {_nearest_multiples(clip_samples, factor)}")
    if not sample_rate or sample_rate <= 0:
        raise DatasetError(f"sample_rate (--sample-rate) must be positive, got {sample_rate!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise DatasetError(f"test_fraction (--test-fraction) must be in [0, 1), "
                           f"got {test_fraction!r}")


def _nearest_multiples(value: int, factor: int) -> str:
    below, above = value // factor * factor, (value // factor + 1) * factor
    return f"{below} and {above}" if below > 0 else str(above)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DatasetError(f"output {out_dir} exists and is not a folder")
    if out_dir.exists() and any(p.name != _PARTIAL_DIR for p in out_dir.iterdir()) and not overwrite:
        raise DatasetError(f"output folder {out_dir} exists and is not empty; choose another "
                           f"folder or pass overwrite=True (--overwrite) to replace the dataset")


def _install(partial: Path, out_dir: Path) -> None:
    """Replace an old dataset's files by the new ones; the manifest goes last."""
    for old in [*out_dir.glob("*.tfrecord"), *out_dir.glob("*.pcm"), out_dir / MANIFEST_NAME]:
        if old.is_file():
            old.unlink()
    for new in sorted(partial.iterdir()):
        if new.name != MANIFEST_NAME:
            new.replace(out_dir / new.name)
    (partial / MANIFEST_NAME).replace(out_dir / MANIFEST_NAME)
    partial.rmdir()


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _probe_sources(files_per_class, source_root, clip_seconds, pad_short, skipped,
                   sample_rate, clip_samples, num_scales):
    """Read every file's header: weed out unreadable and too-short files, learn durations.

    Returns:
        ``(seconds_per_file, paths, padded)``: class -> {key: seconds}, key -> path,
        and the keys of short files to zero-pad; ``skipped`` gets the rest, with reasons.

    Raises:
        DatasetError: No file is usable (the message says why).
    """
    seconds_per_file: dict[str, dict[str, float]] = {}
    paths: dict[str, Path] = {}
    short_seconds: list[float] = []
    padded: set[str] = set()
    for class_name, files in files_per_class.items():
        for path in files:
            key = _relative(path, source_root)
            try:
                info = audio.audio_info(path)
            except audio.AudioError as error:
                skipped.append((key, error.reason))
                continue
            if info.frames == 0:
                skipped.append((key, "contains no samples"))
                continue
            if pad_short and pad_short * clip_seconds <= info.seconds < clip_seconds:
                padded.add(key)
            elif info.seconds < clip_seconds:
                skipped.append((key, f"shorter than one clip ({info.seconds:.3f} s < "
                                     f"{clip_seconds:.3f} s)"))
                short_seconds.append(info.seconds)
                continue
            seconds_per_file.setdefault(class_name, {})[key] = info.seconds
            paths[key] = path
    if not seconds_per_file and short_seconds and len(short_seconds) == len(skipped):
        raise DatasetError(_all_short_message(source_root, short_seconds, sample_rate,
                                              clip_samples, num_scales))
    if not seconds_per_file:
        raise DatasetError(_nothing_usable_message(source_root, sorted(skipped)))
    return seconds_per_file, paths, padded


def _class_warnings(files_per_class, seconds_per_file, test_fraction, skipped) -> list[str]:
    """Classes left out (into ``skipped``) and classes whose one file cannot be split."""
    warnings = []
    for class_name in files_per_class:
        if class_name not in seconds_per_file:
            skipped.append((class_name, "class left out: none of its files is usable"))
    for class_name in sorted(seconds_per_file):
        if test_fraction > 0 and len(seconds_per_file[class_name]) == 1:
            warnings.append(f"class '{class_name}' has one usable file: all its clips are in train")
    return warnings


def _plan_shards(sources, split_of, seconds_of, clip_samples, clip_seconds, num_scales,
                 num_shards) -> dict[str, int]:
    """Shards per split, from the expected size (about one per 128 MB) or ``num_shards``."""
    bytes_per_clip = 2 * clip_samples * (2 - 2.0 ** (1 - num_scales)) + 64
    shards = {}
    for split in SPLITS:
        seconds = sum(seconds_of[k] for k in sources if split_of[k] == split)
        expected_clips = int(seconds / clip_seconds)
        if num_shards is None:
            wanted = max(2 if split == "train" else 1,
                         math.ceil(expected_clips * bytes_per_clip / _TARGET_SHARD_BYTES))
        else:
            wanted = num_shards if split == "train" else max(1, num_shards // 4)
        shards[split] = max(1, min(wanted, _MAX_SHARDS, expected_clips))
    return shards


def _stream_sources(sources, paths, split_of, label_of, classes, padded, writers, streams,
                    seed, skipped, progress, settings, total_seconds):
    """Stream every file into its split's shards and streams, in a seeded random order
    (classes mixed along each shard); one bad file is skipped with its reason.

    Returns:
        ``(source_entries, shard_lists, stream_lists, seconds_read)``.
    """
    order = [sources[i] for i in np.random.default_rng(seed).permutation(len(sources))]
    source_entries = {k: {"path": k, "class": classes[label_of[k]], "split": split_of[k],
                          "num_clips": 0, "dropped_silent_clips": 0, "clips_cut": 0,
                          "seconds": 0.0}
                      for k in sources}
    source_id = {k: i for i, k in enumerate(sources)}
    seconds_read = 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=round(total_seconds), unit="s", desc="audio", unit_scale=True,
                   dynamic_ncols=True)
    try:
        for key in order:
            entry = source_entries[key]
            _stream_one(paths[key], key, entry, writers[split_of[key]], streams[split_of[key]],
                        source_id[key], label_of[key], key in padded, skipped, settings)
            seconds_read += entry["seconds"]
            if bar is not None:
                bar.update(round(seconds_read) - bar.n)
    finally:
        shard_lists = {split: writers[split].close() for split in SPLITS}
        stream_lists = {split: streams[split].close() for split in SPLITS}
        if bar is not None:
            bar.close()
    return source_entries, shard_lists, stream_lists, seconds_read


def _stream_one(path, key, entry, writer, stream, source_id, label, pad, skipped, settings):
    """One file into ``writer`` / ``stream``; a failure goes to ``skipped`` with its reason."""
    try:
        _write_file_clips(path, entry, writer, stream, source_id, label,
                          settings["sample_rate"], settings["clip_samples"],
                          settings["num_scales"], settings["target_db"], settings["peak"],
                          settings["silence_db"], settings["max_gain_db"],
                          pad_to=settings["clip_samples"] if pad else 0)
    except audio.AudioError as error:
        kept = entry["num_clips"]
        skipped.append((key, error.reason + (f" (kept the {kept} clips before it)"
                                             if kept else "")))
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the build
        skipped.append((key, f"unexpected error: {type(error).__name__}: {error}"))
    else:
        if entry["clips_cut"] == 0:
            skipped.append((key, f"shorter than one clip after resampling "
                                 f"({entry['seconds']:.3f} s)"))
        elif entry["num_clips"] == 0:
            skipped.append((key, f"all clips near-silent (below {settings['silence_db']:g} "
                                 f"dBFS)"))


def _split_warnings(manifest, classes, seconds_per_file, test_fraction) -> list[str]:
    """Classes with no clips at all, or none in a split their files were assigned to."""
    warnings = []
    for class_name in classes:
        counts = {s: manifest["splits"][s]["clips_per_class"][class_name] for s in SPLITS}
        if sum(counts.values()) == 0:
            warnings.append(f"class '{class_name}' has no clips (all its audio is near-silent); "
                            f"its label {classes.index(class_name)} is unused")
        elif test_fraction > 0 and len(seconds_per_file[class_name]) > 1 and not all(
                counts.values()):
            empty = [s for s in SPLITS if not counts[s]]
            # The split is decided from file headers; a file found silent or broken
            # later can leave a split without clips of this class.
            warnings.append(f"class '{class_name}' has no {empty[0]} clips: the files assigned "
                            f"to {empty[0]} were skipped (see above)")
    return warnings


def build_dataset(source_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  sample_rate: int = DEFAULT_SAMPLE_RATE,
                  clip_samples: int = DEFAULT_CLIP_SAMPLES,
                  num_scales: int = DEFAULT_NUM_SCALES, test_fraction: float = 0.2,
                  seed: int = 0, overwrite: bool = False, progress: bool = True,
                  target_db: float = -20.0, peak: float = 0.99, silence_db: float = -60.0,
                  max_gain_db: float = 60.0, num_shards: int | None = None,
                  pad_short: float = 0.0) -> DatasetReport:
    """Build a multi-scale clip dataset from a folder of class subfolders.

    Each usable file is streamed: mixed to mono, resampled to ``sample_rate``,
    halved ``num_scales - 1`` times, cut into non-overlapping clips of
    ``clip_samples`` (finest scale). Clips whose finest-scale RMS is below
    ``silence_db`` are dropped; every scale of a kept clip is normalised to
    ``target_db`` on its own. Whole files go to train or test
    (:func:`split_by_source`).

    Args:
        source_dir: ``source_dir/<class>/**/<file>`` with WAV, FLAC, OGG, MP3 or
            AIFF files at any rate, mono or multichannel.
        out_dir: Output folder (created). Must be empty unless ``overwrite``.
        sample_rate: Rate of the finest scale (Hz).
        clip_samples: Clip length at the finest scale; divisible by
            ``2**(num_scales-1)``.
        num_scales: K, number of scales.
        test_fraction: Share of each class's audio put in the test split.
        seed: Seed of the train/test split.
        overwrite: Replace the dataset files in a non-empty ``out_dir``.
        progress: Show a tqdm progress bar (seconds of audio).
        target_db: RMS level of every clip at every scale (dBFS).
        peak: Largest sample magnitude after normalising.
        silence_db: Clips quieter than this (finest scale, before
            normalising) are dropped as near-silent.
        max_gain_db: Largest normalising gain, so that a scale with almost no
            energy (a flute at 250 Hz) is not turned into loud noise.
        num_shards: Shards for the train split (test gets a quarter, at least
            one); default: about one per 128 MB, at least 2.
        pad_short: Keep files shorter than one clip but at least this fraction of
            it, zero-padded at the end to one clip (WaveGAN's and DrumGAN's way
            with one-shot sounds); 0 (the default) skips them, so that a folder of
            songs never gains clips that are partly silence.

    Returns:
        A :class:`DatasetReport`; ``report.summary()`` prints it.

    Raises:
        DatasetError: Invalid arguments, missing source folder, no class
            subfolders, non-empty ``out_dir`` without ``overwrite``, or no
            usable clip at all (the message lists what was skipped and why).
    """
    start = time.perf_counter()
    _validate(sample_rate, clip_samples, num_scales, test_fraction)
    if not 0.0 <= pad_short < 1.0:
        raise DatasetError(f"pad_short (--pad-short) must be in [0, 1), got {pad_short!r}")
    source_root = Path(source_dir).expanduser().resolve()
    out_dir = Path(out_dir).expanduser().resolve()
    files_per_class, skipped, ignored = scan_source_folder(source_root, exclude=[out_dir])
    _check_out_dir(out_dir, overwrite)

    clip_seconds = clip_samples / sample_rate
    seconds_per_file, paths, padded = _probe_sources(
        files_per_class, source_root, clip_seconds, pad_short, skipped, sample_rate,
        clip_samples, num_scales)
    classes = sorted(seconds_per_file)
    warnings = _class_warnings(files_per_class, seconds_per_file, test_fraction, skipped)

    split_of = split_by_source(seconds_per_file, test_fraction, seed)
    label_of = {key: classes.index(c) for c in classes for key in seconds_per_file[c]}
    sources = sorted(paths, key=lambda k: (label_of[k], k))
    shards = _plan_shards(sources, split_of, {k: seconds_per_file[classes[label_of[k]]][k]
                                              for k in sources},
                          clip_samples, clip_seconds, num_scales, num_shards)

    partial, created_out_dir = _open_partial(out_dir)
    writers = {split: _ShardWriter(partial, split, shards[split]) for split in SPLITS}
    streams = {split: _StreamWriter(partial, split, num_scales) for split in SPLITS}
    settings = dict(sample_rate=sample_rate, clip_samples=clip_samples, num_scales=num_scales,
                    target_db=target_db, peak=peak, silence_db=silence_db,
                    max_gain_db=max_gain_db)
    source_entries, shard_lists, stream_lists, seconds_read = _stream_sources(
        sources, paths, split_of, label_of, classes, padded, writers, streams, seed, skipped,
        progress, settings, sum(sum(d.values()) for d in seconds_per_file.values()))

    skipped.sort()
    manifest = _make_manifest(source_root, classes, source_entries, sources, shard_lists,
                              stream_lists, skipped, ignored, sample_rate, clip_samples, num_scales,
                              test_fraction, seed, target_db, peak, silence_db, max_gain_db,
                              pad_short)
    _finish_build(partial, out_dir, created_out_dir, manifest, writers, shard_lists,
                  _nothing_usable_message(source_root, skipped))
    warnings += _split_warnings(manifest, classes, seconds_per_file, test_fraction)

    report = DatasetReport(out_dir=out_dir, manifest=manifest, skipped=list(skipped),
                           ignored=list(ignored), warnings=warnings, seconds_read=seconds_read,
                           wall_seconds=time.perf_counter() - start,
                           peak_rss_mb=_peak_rss_mb())
    return report


def _open_partial(out_dir: Path) -> tuple[Path, bool]:
    """``(out_dir/.partial, whether out_dir is new)``: new files go there first and
    replace an old dataset only when the build succeeds (:func:`_finish_build`)."""
    created_out_dir = not out_dir.exists()
    partial = out_dir / _PARTIAL_DIR
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial, created_out_dir


def _finish_build(partial: Path, out_dir: Path, created_out_dir: bool, manifest: dict[str, Any],
                  writers: dict, shard_lists: dict, nothing_usable: str) -> None:
    """Drop empty shards, write the manifest and move the new files into ``out_dir``.

    Raises:
        DatasetError: ``nothing_usable`` when no clip was kept (the partial
            files, and an ``out_dir`` this build created, are removed first).
    """
    if manifest["splits"]["train"]["num_clips"] + manifest["splits"]["test"]["num_clips"] == 0:
        shutil.rmtree(partial)
        if created_out_dir:
            out_dir.rmdir()
        raise DatasetError(nothing_usable)
    for split in SPLITS:
        kept = {s["file"] for s in shard_lists[split]}
        for name in writers[split].names:
            if name not in kept:
                (partial / name).unlink()
    (partial / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    _install(partial, out_dir)


def _write_file_clips(path: Path, entry: dict[str, Any], writer: _ShardWriter,
                      streams: _StreamWriter, source_id: int, label: int, sample_rate: int,
                      clip_samples: int, num_scales: int, target_db: float, peak: float,
                      silence_db: float, max_gain_db: float, pad_to: int = 0) -> None:
    """Stream one file into ``writer`` (clips) and ``streams`` (its whole pyramid).

    Keeps ``entry``'s counts and seconds up to date and stores the file's
    place in the streams as ``entry["stream"]``. A file shorter than
    ``pad_to`` samples (at ``sample_rate``) is zero-padded to that length.
    """
    samples_read = 0

    def counted_blocks():
        nonlocal samples_read
        for block in audio.iter_audio_blocks(path, sample_rate, block_frames=_BLOCK_FRAMES):
            samples_read += block.shape[0]
            yield block
        if samples_read < pad_to:
            entry["padded_samples"] = pad_to - samples_read
            yield np.zeros((pad_to - samples_read,) + block.shape[1:], dtype=block.dtype)

    clip_index = 0
    try:
        for scales in _pyramid_clip_batches(counted_blocks(), clip_samples, num_scales):
            finest = scales[-1]
            streams.append(scales)
            loud = audio.rms_db(finest, axis=-1) >= silence_db
            entry["dropped_silent_clips"] += int((~loud).sum())
            per_scale = [_to_int16_bytes(audio.normalize_loudness(
                clips[loud], target_db, peak, max_gain_db, axis=-1)) for clips in scales]
            for i, clip_number in enumerate(np.flatnonzero(loud) + clip_index):
                writer.write(_example(label, source_id, int(clip_number),
                                      [pcm[i] for pcm in per_scale]))
            clip_index += finest.shape[0]
            entry["clips_cut"] = clip_index
            entry["num_clips"] += int(loud.sum())
    finally:
        entry["seconds"] = samples_read / sample_rate
        entry["stream"] = streams.end(target_db, peak, max_gain_db)


def _all_short_message(source_root: Path, seconds: list[float], sample_rate: int,
                       clip_samples: int, num_scales: int) -> str:
    """One line for a folder of one-shot sounds: their length and a clip length that fits."""
    step = 2 ** (num_scales - 1)
    shortest = min(seconds)
    fit = int(shortest * sample_rate) // step * step
    hint = (f"; `pggan dataset --clip-samples {fit}` ({fit / sample_rate:.3f} s) fits all of "
            f"them" if fit >= step else "")
    hint += "; or zero-pad them to one clip with `--pad-short 0.5` (files of half a clip or more)"
    return (f"no usable audio in {source_root}: all {len(seconds)} files are shorter than one "
            f"clip ({clip_samples} samples = {clip_samples / sample_rate:.3f} s); they last "
            f"{shortest:.3f} to {max(seconds):.3f} s{hint}")


def _nothing_usable_message(source_root: Path, skipped: list[tuple[str, str]]) -> str:
    listing = "\n".join(f"  {p}: {r}" for p, r in skipped[:30])
    more = f"\n  ... and {len(skipped) - 30} more" if len(skipped) > 30 else ""
    return (f"no usable audio in {source_root}: every file was skipped\n{listing}{more}"
            if skipped else f"no usable audio in {source_root}")


def _make_manifest(source_root, classes, source_entries, sources, shard_lists, stream_lists,
                   skipped, ignored, sample_rate, clip_samples, num_scales, test_fraction, seed, target_db, peak,
                   silence_db, max_gain_db, pad_short) -> dict[str, Any]:
    splits = {}
    for split in SPLITS:
        entries = [source_entries[k] for k in sources if source_entries[k]["split"] == split]
        per_class = {c: sum(e["num_clips"] for e in entries if e["class"] == c) for c in classes}
        splits[split] = {
            "num_clips": sum(per_class.values()),
            "clips_per_class": per_class,
            "seconds": round(sum(per_class.values()) * clip_samples / sample_rate, 3),
            "dropped_silent_clips": sum(e["dropped_silent_clips"] for e in entries),
            "sources": [e["path"] for e in entries if e["num_clips"] > 0],
            "shards": shard_lists[split],
            "streams": stream_lists[split],
        }
    for entry in source_entries.values():
        entry["seconds"] = round(entry["seconds"], 3)
        entry.pop("clips_cut", None)
    return {
        "format_version": FORMAT_VERSION,
        "sample_rate": sample_rate,
        "clip_samples": clip_samples,
        "num_scales": num_scales,
        "scale_sample_rates": [_number(sample_rate / 2 ** (num_scales - 1 - k))
                               for k in range(num_scales)],
        "scale_samples": [clip_samples >> (num_scales - 1 - k) for k in range(num_scales)],
        "class_names": classes,
        "splits": splits,
        "sources": [source_entries[k] for k in sources],
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "ignored": [{"path": p, "reason": r} for p, r in ignored],
        "record_features": {
            "label": "int64: index into class_names",
            "source": "int64: index into sources",
            "clip": "int64: index of the clip within its source file",
            "audio_k": "bytes: the clip at scale k (0 = coarsest) as little-endian int16 PCM; "
                       "float = int16 / 32768",
        },
        "stream_layout": "SPLIT-stream-scaleK.pcm: every file of the split at scale K, "
                         "one after another, little-endian int16 at the file's own level; "
                         "sources[i].stream gives its offsets, lengths and gain per scale",
        "build_parameters": {
            "source_dir": str(source_root), "sample_rate": sample_rate,
            "clip_samples": clip_samples, "num_scales": num_scales,
            "test_fraction": test_fraction, "seed": seed, "target_db": target_db,
            "peak": peak, "silence_db": silence_db, "max_gain_db": max_gain_db,
            "pad_short": pad_short, "resampler": "soxr HQ",
            "loudness": "clips: RMS per clip per scale; streams: one gain per file per "
                        "scale; both peak-limited",
        },
    }


def _peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if os.uname().sysname == "Darwin" else peak / 1024


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------

def read_manifest(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    """Read ``dataset_dir/manifest.json``.

    Args:
        dataset_dir: A folder made by :func:`build_dataset`.

    Returns:
        The manifest: ``sample_rate``, ``clip_samples``, ``num_scales``,
        ``scale_sample_rates``, ``scale_samples``, ``class_names``, ``splits``
        (per split: ``num_clips``, ``clips_per_class``, ``sources``, ``shards``),
        ``sources``, ``skipped``, ``build_parameters``.

    Raises:
        DatasetError: No manifest there.

    Notebook: chapters/01_audio_fundamentals.ipynb
    """
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{Path(dataset_dir)} is not a dataset: {MANIFEST_NAME} not found "
                           f"(build one with `pggan dataset SOURCE {dataset_dir}`)")
    manifest = files.read_json_object(path, MANIFEST_FIELDS, DatasetError)
    manifest["dataset_dir"] = str(Path(dataset_dir))
    return manifest


#: Fields every dataset manifest has (``read_manifest`` names a missing one).
MANIFEST_FIELDS = ("sample_rate", "clip_samples", "num_scales", "class_names", "splits",
                   "sources")


def dataset_fingerprint(manifest: dict[str, Any]) -> str:
    """16 hex digits that change when the classes, shapes or split membership change.

    Saved classifiers and study runs store it, so that results made on another
    build of a dataset (a larger corpus, another split) are not reused.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    keys = ("sample_rate", "clip_samples", "num_scales", "class_names")
    content = {k: manifest.get(k) for k in keys}
    content["splits"] = {s: {"num_clips": v.get("num_clips"), "sources": v.get("sources")}
                         for s, v in manifest.get("splits", {}).items()}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _manifest(manifest_or_dir: dict[str, Any] | str | os.PathLike) -> dict[str, Any]:
    return manifest_or_dir if isinstance(manifest_or_dir, dict) else read_manifest(manifest_or_dir)


def _check_scale(manifest: dict[str, Any], scale: int | None) -> int:
    num_scales = manifest["num_scales"]
    scale = num_scales - 1 if scale is None else scale
    if not 0 <= scale < num_scales:
        raise DatasetError(f"scale must be in [0, {num_scales - 1}] for this dataset, got {scale}")
    return int(scale)


def scale_samples(manifest_or_dir: dict[str, Any] | str | os.PathLike, scale: int) -> int:
    """Samples per clip at ``scale`` (0 = coarsest).

    Notebook: chapters/01_audio_fundamentals.ipynb
    """
    manifest = _manifest(manifest_or_dir)
    scale = _check_scale(manifest, scale)
    return manifest["clip_samples"] >> (manifest["num_scales"] - 1 - scale)


def scale_rate(manifest_or_dir: dict[str, Any] | str | os.PathLike, scale: int) -> float:
    """Sample rate (Hz) of ``scale`` in this dataset (0 = coarsest), read from its manifest.

    ``config.scale_sample_rate`` computes the same from K and the finest rate;
    this one answers for a built dataset, whatever its settings.
    """
    manifest = _manifest(manifest_or_dir)
    return manifest["scale_sample_rates"][_check_scale(manifest, scale)]


def class_names(dataset_dir: str | os.PathLike | dict[str, Any]) -> list[str]:
    """Class names; a record's ``label`` indexes this list.

    Notebook: chapters/01_audio_fundamentals.ipynb
    """
    return list(_manifest(dataset_dir)["class_names"])


def _shard_paths(manifest: dict[str, Any], split: str) -> list[str]:
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {SPLITS}, got {split!r}")
    info = manifest["splits"][split]
    if info["num_clips"] == 0:
        raise DatasetError(f"split '{split}' of {manifest['dataset_dir']} has no clips")
    return [str(Path(manifest["dataset_dir"]) / s["file"]) for s in info["shards"]]


def _parser(scale: int, samples: int, with_source: bool = False):
    """A function that parses a BATCH of serialized records into int16 clips of one scale.

    Parsing a batch at once is about twice as fast as parsing record by record.
    """
    features = {"label": tf.io.FixedLenFeature([], tf.int64),
                f"audio_{scale}": tf.io.FixedLenFeature([], tf.string)}
    if with_source:
        features["source"] = tf.io.FixedLenFeature([], tf.int64)

    def parse(serialized):
        example = tf.io.parse_example(serialized, features)
        pcm = tf.io.decode_raw(example[f"audio_{scale}"], tf.int16, little_endian=True)
        pcm = tf.ensure_shape(pcm, [None, samples])
        label = tf.cast(example["label"], tf.int32)
        if with_source:
            return pcm, label, tf.cast(example["source"], tf.int32)
        return pcm, label

    return parse


def _to_float(pcm, label):
    audio_batch = tf.cast(pcm, tf.float32) / 32768.0
    return audio_batch[..., tf.newaxis], label


def make_tf_dataset(dataset_dir: str | os.PathLike, split: str = "train",
                    scale: int | None = None, batch_size: int = 16, shuffle: bool = True,
                    repeat: bool = True, seed: int = 0, drop_remainder: bool = True,
                    shuffle_buffer: int = 2048, cache: bool = False) -> tf.data.Dataset:
    """Stream one scale of a split as batches of (audio, label).

    Shards are read in parallel and interleaved; records are parsed in
    batches down to the int16 samples of the requested scale before
    shuffling, so the shuffle buffer holds ``shuffle_buffer * samples * 2``
    bytes (64 MB for 2048 clips of 16384 samples).

    Args:
        dataset_dir: A folder made by :func:`build_dataset`.
        split: ``"train"`` or ``"test"``.
        scale: Scale index (0 = coarsest); default the finest.
        batch_size: Clips per batch.
        shuffle: Shuffle shards and clips (seeded).
        repeat: Repeat forever (training); ``False`` for one pass.
        seed: Shuffle seed.
        drop_remainder: Drop a last, smaller batch (keeps shapes static).
        shuffle_buffer: Clips in the shuffle buffer.
        cache: Keep the decoded int16 clips of this scale in memory after
            the first pass (worth it for small sets and coarse scales).

    Returns:
        ``tf.data.Dataset`` of ``(audio, label)``: audio float32
        ``(batch, samples_at_scale, 1)`` in [-1, 1), label int32 ``(batch,)``.

    Notebook: chapters/02_wgan_gp.ipynb
    """
    manifest = read_manifest(dataset_dir)
    scale = _check_scale(manifest, scale)
    files = _shard_paths(manifest, split)
    samples = scale_samples(manifest, scale)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=len(files),
                                 block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                                 deterministic=True)
    dataset = (dataset.batch(256)
               .map(_parser(scale, samples), num_parallel_calls=tf.data.AUTOTUNE)
               .unbatch())
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def read_streams(dataset_dir: str | os.PathLike, split: str = "train", scale: int | None = None,
                 gain_scale: int | None = None) -> dict[str, np.ndarray]:
    """The contiguous pyramid of every file of a split at one scale (for random windows).

    Args:
        dataset_dir: A folder made by :func:`build_dataset` (format 2 or later).
        split: ``"train"`` or ``"test"``.
        scale: Scale index (0 = coarsest); default the finest.
        gain_scale: The scale whose loudness gains to return (default:
            ``scale``; the finest scale's keep the pyramid's levels consistent).

    Returns:
        Dict: ``pcm`` int16 ``(total_samples,)`` (memory-mapped, every file
        one after another at its own level), and per file (rows in manifest
        order): ``offsets``, ``lengths`` int64, ``gains`` float32 (the file's
        loudness gain at ``gain_scale``), ``labels`` int32.

    Raises:
        DatasetError: Unknown split, a dataset built before streams existed, or
            a stream file whose size does not match the manifest.
    """
    manifest = read_manifest(dataset_dir)
    scale = _check_scale(manifest, scale)
    gain_scale = scale if gain_scale is None else _check_scale(manifest, gain_scale)
    _shard_paths(manifest, split)  # checks the split name and that it has audio
    streams = manifest["splits"][split].get("streams")
    if not streams:
        raise DatasetError(f"{manifest['dataset_dir']} was built before random-window training "
                           f"existed (no audio streams in its manifest); rebuild it with "
                           f"`pggan dataset SOURCE {manifest['dataset_dir']} --overwrite`")
    path = Path(manifest["dataset_dir"]) / streams[scale]["file"]
    expected = int(streams[scale]["num_samples"])
    if not path.is_file() or path.stat().st_size != 2 * expected:
        size = path.stat().st_size if path.is_file() else "missing"
        raise DatasetError(f"{path}: stream file damaged or missing (size {size}, manifest "
                           f"says {2 * expected} bytes); rebuild the dataset with --overwrite")
    entries = [e for e in manifest["sources"] if e["split"] == split and e.get("stream")
               and e["stream"]["lengths"][scale] > 0]
    names = manifest["class_names"]
    return {"pcm": np.memmap(path, dtype="<i2", mode="r", shape=(expected,)),
            "offsets": np.array([e["stream"]["offsets"][scale] for e in entries], np.int64),
            "lengths": np.array([e["stream"]["lengths"][scale] for e in entries], np.int64),
            "gains": np.array([e["stream"]["gains"][gain_scale] for e in entries], np.float32),
            "labels": np.array([names.index(e["class"]) for e in entries], np.int32)}


def make_window_dataset(dataset_dir: str | os.PathLike, split: str = "train",
                        scale: int | None = None, batch_size: int = 16, seed: int = 0,
                        start_batch: int = 0, window_samples: int | None = None,
                        gain_scale: int | None = None) -> tf.data.Dataset:
    """Endless batches of windows at random offsets of the split's files.

    Every start position of every file is equally likely (a long file is
    drawn more often than a short one), so the critic never sees the same
    fixed clip twice. Batch ``b`` is a pure function of ``(seed, b)``
    (stateless random ops), which makes a resumed run's data equal an
    uninterrupted run's: pass ``start_batch`` instead of skipping batches.
    Each window is scaled by its file's gain (one per file and scale, see
    :func:`build_dataset`), so loudness varies between and inside pieces as
    in the music.

    Args:
        dataset_dir: A folder made by :func:`build_dataset` (format 2 or later).
        split: ``"train"`` or ``"test"``.
        scale: Scale index (0 = coarsest); default the finest.
        batch_size: Windows per batch.
        seed: Seed of the window positions.
        start_batch: Index of the first batch (resume).
        window_samples: Window length at this scale (default: the dataset's
            clip length at that scale).
        gain_scale: Whose loudness gain scales a file's windows (default:
            ``scale``, each scale normalised on its own; the finest scale's
            gain keeps every scale at the level of the finest clip, so that
            a coarse scale is that clip low-passed, not amplified).

    Returns:
        ``tf.data.Dataset`` of ``(audio, label)``: float32
        ``(batch, window_samples, 1)`` and int32 ``(batch,)``.

    Raises:
        DatasetError: As :func:`read_streams`, or no file as long as a window.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    manifest = read_manifest(dataset_dir)
    scale = _check_scale(manifest, scale)
    window = int(window_samples or scale_samples(manifest, scale))
    streams = read_streams(dataset_dir, split, scale, gain_scale)
    usable = streams["lengths"] >= window
    if not usable.any():
        raise DatasetError(f"{dataset_dir}: no {split} file holds a window of {window} samples "
                           f"at scale {scale}")
    starts = np.cumsum(np.where(usable, streams["lengths"] - window + 1, 0))
    pcm = tf.constant(np.asarray(streams["pcm"]))
    cumulative = tf.constant(starts, tf.int64)
    before = tf.constant(np.concatenate([[0], starts[:-1]]), tf.int64)  # starts before file i
    offsets = tf.constant(streams["offsets"], tf.int64)
    gains = tf.constant(streams["gains"] / 32768.0, tf.float32)
    labels = tf.constant(streams["labels"], tf.int32)
    total = int(starts[-1])

    def batch_at(index):
        position = tf.random.stateless_uniform([batch_size], seed=tf.stack(
            [tf.constant(seed, tf.int64), index]), minval=0, maxval=total, dtype=tf.int64)
        file = tf.searchsorted(cumulative, position, side="right")
        start = tf.gather(offsets, file) + position - tf.gather(before, file)
        samples = tf.gather(pcm, start[:, None] + tf.range(window, dtype=tf.int64)[None, :])
        batch = tf.cast(samples, tf.float32) * tf.gather(gains, file)[:, None]
        return batch[..., None], tf.gather(labels, file)

    dataset = tf.data.Dataset.range(int(start_batch), 2 ** 62)
    return dataset.map(batch_at, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True).prefetch(tf.data.AUTOTUNE)


def load_clips(dataset_dir: str | os.PathLike, split: str = "test", scale: int | None = None,
               max_clips: int | None = None, with_source: bool = False
               ) -> tuple[np.ndarray, ...]:
    """Read clips of one scale into numpy, in file order (for evaluation and plots).

    Args:
        dataset_dir: A folder made by :func:`build_dataset`.
        split: ``"train"`` or ``"test"``.
        scale: Scale index (0 = coarsest); default the finest.
        max_clips: Read at most this many (``None``: all).
        with_source: Also return each clip's source index (into the
            manifest's ``sources``).

    Returns:
        ``(audio, labels)``: float32 ``(N, samples_at_scale, 1)`` and int32
        ``(N,)``; with ``with_source`` a third int32 ``(N,)`` array.

    Notebook: chapters/01_audio_fundamentals.ipynb
    """
    manifest = read_manifest(dataset_dir)
    scale = _check_scale(manifest, scale)
    samples = scale_samples(manifest, scale)
    dataset = tf.data.TFRecordDataset(_shard_paths(manifest, split))
    if max_clips is not None:
        dataset = dataset.take(max_clips)
    dataset = dataset.batch(1024).map(_parser(scale, samples, with_source))
    parts = [tuple(t.numpy() for t in batch) for batch in dataset]
    if not parts:
        empty = (np.zeros((0, samples, 1), np.float32), np.zeros(0, np.int32))
        return empty + ((np.zeros(0, np.int32),) if with_source else ())
    pcm = np.concatenate([p[0] for p in parts])
    result = (pcm.astype(np.float32)[..., None] / 32768.0,
              np.concatenate([p[1] for p in parts]).astype(np.int32))
    if with_source:
        result += (np.concatenate([p[2] for p in parts]).astype(np.int32),)
    return result


def ensure_demo_dataset(corpus_dir: str | os.PathLike = DEMO_CORPUS_DIR,
                        out_dir: str | os.PathLike = DEMO_DATASET_DIR,
                        minutes_per_class: float | None = None, progress: bool = True,
                        **build_options: Any) -> Path:
    """Make the embedded demo corpus and its dataset unless they already exist.

    Args:
        corpus_dir: Where the rendered corpus lives (built if absent).
        out_dir: Where the dataset goes; built if it has no manifest.
        minutes_per_class: Corpus size; ``None`` keeps the corpus default.
        progress: Show progress bars.
        **build_options: Passed to :func:`build_dataset` (``sample_rate``, ...).

    Returns:
        ``out_dir`` as a Path.

    Notebook: chapters/01_audio_fundamentals.ipynb
    """
    from pggan_lib import corpus  # imported here: music21 is slow to import

    out_dir = Path(out_dir)
    if (out_dir / MANIFEST_NAME).is_file():
        return out_dir
    corpus_kwargs = {} if minutes_per_class is None else {"minutes_per_class": minutes_per_class}
    corpus_path = corpus.ensure_demo_corpus(corpus_dir, **corpus_kwargs)
    build_dataset(corpus_path, out_dir, progress=progress, overwrite=True, **build_options)
    return out_dir
