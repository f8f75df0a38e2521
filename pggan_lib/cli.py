"""The ``pggan`` command line: corpus, dataset, train, generate.

Each subcommand is a thin layer over a library function, so everything the
command does can also be done from a notebook. Heavy imports (TensorFlow,
librosa, music21) happen inside the handlers: ``pggan --help`` is instant.

Notebook: chapters/05_training_on_gpu.ipynb
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pggan_lib import config

__all__ = ["main", "main_entry", "build_parser", "CommandError"]


class CommandError(Exception):
    """A user-facing error: printed as ``pggan: error: <message>``, exit code 2."""


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


# --------------------------------------------------------------------- corpus
def _add_corpus_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "corpus",
        help="render the embedded default corpus (music21 scores -> 16 kHz audio)",
        description=(
            "Render 'songs that share an author' from the score corpus that ships with "
            "music21: one folder per class (composer or genre) of 16 kHz mono WAV files and "
            "a manifest.json. Offline, deterministic; a second run with the same options "
            "does no work."),
    )
    parser.add_argument("--out", type=Path, default=config.DEMO_CORPUS_DIR,
                        help="output folder (default: %(default)s)")
    parser.add_argument("--minutes-per-class", type=_positive_float, default=2.0,
                        help="minutes of audio to render per class (default: %(default)s)")
    parser.add_argument("--classes", default=None,
                        help="comma-separated class names (default: all; see `pggan corpus "
                             "--list-classes`)")
    parser.add_argument("--list-classes", action="store_true",
                        help="print the available classes and exit")
    parser.add_argument("--instrument", default="piano",
                        help="General MIDI instrument for every part ('piano' by default, so "
                             "that classes differ in composition, not timbre), or 'score' to "
                             "keep each part's own instrument")
    parser.add_argument("--sample-rate", type=_positive_int, default=config.DEFAULT_SAMPLE_RATE,
                        help="sample rate in Hz (default: %(default)s)")
    parser.set_defaults(handler=_run_corpus)


def _run_corpus(args: argparse.Namespace) -> int:
    from pggan_lib import corpus

    if args.list_classes:
        for name, description in corpus.CORPUS_CLASSES.items():
            print(f"{name:24s} {description}")
        return 0
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    try:
        report = corpus.make_demo_corpus(
            out_dir=args.out, minutes_per_class=args.minutes_per_class, classes=classes,
            instrument=args.instrument, sample_rate=args.sample_rate)
    except ValueError as error:
        raise CommandError(str(error)) from error
    print(report.summary() if hasattr(report, "summary") else report)
    return 0


# -------------------------------------------------------------------- dataset
def _add_dataset_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "dataset",
        help="cut a folder of class subfolders into clips and the sample-rate pyramid",
        description=(
            "Turn SOURCE (one subfolder per class, e.g. per author, holding WAV/FLAC/OGG/MP3 "
            "files at any rate, mono or stereo) into fixed-length clips, loudness-normalised, "
            "split into train/test by source file, with every clip stored at each progressive "
            "scale (scale k = sample rate / 2**(K-1-k)). Bad files are listed with the reason "
            "and skipped."),
    )
    parser.add_argument("source", type=Path, help="folder with one subfolder per class")
    parser.add_argument("out", type=Path, help="output dataset folder")
    parser.add_argument("--sample-rate", type=_positive_int, default=config.DEFAULT_SAMPLE_RATE,
                        help="rate of the finest scale in Hz (default: %(default)s)")
    parser.add_argument("--clip-samples", type=_positive_int, default=config.DEFAULT_CLIP_SAMPLES,
                        help="clip length at the finest scale, in samples; divisible by "
                             "2**(scales-1) (default: %(default)s)")
    parser.add_argument("--scales", type=_positive_int, default=config.DEFAULT_NUM_SCALES,
                        help="number of progressive scales K (default: %(default)s)")
    parser.add_argument("--test-fraction", type=_fraction, default=0.2,
                        help="fraction of each class's source files held out for testing "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset in OUT")
    parser.set_defaults(handler=_run_dataset)


def _run_dataset(args: argparse.Namespace) -> int:
    from pggan_lib import data

    try:
        report = data.build_dataset(
            args.source, args.out, sample_rate=args.sample_rate,
            clip_samples=args.clip_samples, num_scales=args.scales,
            test_fraction=args.test_fraction, seed=args.seed, overwrite=args.overwrite,
            progress=True)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        raise CommandError(str(error)) from error
    print(report.summary())
    return 0


# ------------------------------------------------ train / generate (training)
# Section owned by the training module's author: _add_train_parser,
# _add_generate_parser and their handlers.


# ----------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """Build the ``pggan`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="pggan",
        description="Progressive GANs for music audio: build data, train, generate.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _add_corpus_parser(subparsers)
    _add_dataset_parser(subparsers)
    for name in ("_add_train_parser", "_add_generate_parser"):
        adder = globals().get(name)
        if adder is not None:
            adder(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``pggan`` command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code: 0 on success, 2 on a user error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CommandError as error:
        print(f"pggan {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pggan {args.command}: interrupted", file=sys.stderr)
        return 130


def main_entry() -> None:
    """Console-script entry point of ``pggan``."""
    sys.exit(main())


if __name__ == "__main__":
    main_entry()
