"""The ``pggan`` command line: corpus, dataset, train, generate.

Each subcommand is a thin layer over a library function, so everything the
command does can also be done from a notebook. Heavy imports (TensorFlow,
librosa, music21) happen inside the handlers: ``pggan --help`` is instant.

Notebook: chapters/05_training_on_gpu.ipynb
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shlex
import shutil
import tempfile
import sys
from pathlib import Path

from pggan_lib import config

__all__ = ["main", "main_entry", "build_parser", "CommandError"]


class CommandError(Exception):
    """A user-facing error: printed as ``pggan: error: <message>``, exit code 2."""


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _fft_length(text: str) -> int:
    value = int(text)
    if value and not config.is_fft_length(value):
        raise argparse.ArgumentTypeError(f"must be 0 or a power of 2 >= 4, got {text}")
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
    parser.add_argument("--minutes-per-class", type=_positive_float,
                        default=config.DEMO_MINUTES_PER_CLASS,
                        help="minutes of audio to render per class (default: %(default)s)")
    parser.add_argument("--classes", action="append", default=None,
                        help="class names, comma-separated or repeated (default: all; see "
                             "`pggan corpus --list-classes`)")
    parser.add_argument("--max-excerpt-seconds", type=_positive_float,
                        default=config.DEMO_MAX_EXCERPT_SECONDS,
                        help="longest excerpt taken from one piece, so that each class spans "
                             "many pieces (default: %(default)s)")
    parser.add_argument("--list-classes", action="store_true",
                        help="print the available classes and exit")
    parser.add_argument("--instrument", default="piano",
                        help="General MIDI instrument for every part ('piano' by default, so "
                             "that classes differ in composition, not timbre), 'genre' to play "
                             "each class with its own (organ, choir, strings, fiddle: "
                             "corpus.GENRE_INSTRUMENTS), or 'score' to keep each part's own "
                             "instrument")
    parser.add_argument("--sample-rate", type=_positive_int, default=config.DEFAULT_SAMPLE_RATE,
                        help="sample rate in Hz (default: %(default)s)")
    parser.set_defaults(handler=_run_corpus)


def _run_corpus(args: argparse.Namespace) -> int:
    from pggan_lib import corpus

    if args.list_classes:
        for name, description in corpus.CORPUS_CLASSES.items():
            print(f"{name:24s} {description}")
        return 0
    try:
        report = corpus.make_demo_corpus(
            out_dir=args.out, minutes_per_class=args.minutes_per_class, classes=args.classes,
            instrument=args.instrument, sample_rate=args.sample_rate,
            max_excerpt_seconds=args.max_excerpt_seconds)
    except ValueError as error:
        raise CommandError(str(error)) from error
    if not report.nothing_to_do:
        print(report.summary())
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
                        help="share of each class's audio (whole source files) held out for testing "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    parser.add_argument("--pad-short", type=_fraction, default=0.0, metavar="FRACTION",
                        help="zero-pad files shorter than one clip but at least FRACTION of "
                             "it (one-shot sounds); default 0: skip them")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset in OUT")
    parser.set_defaults(handler=_run_dataset)


def _run_dataset(args: argparse.Namespace) -> int:
    _import_tensorflow_quietly()
    from pggan_lib import data

    try:
        report = data.build_dataset(
            args.source, args.out, sample_rate=args.sample_rate,
            clip_samples=args.clip_samples, num_scales=args.scales,
            test_fraction=args.test_fraction, seed=args.seed, overwrite=args.overwrite,
            progress=True, pad_short=args.pad_short)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        raise CommandError(str(error)) from error
    print(report.summary())
    return 0


# ----------------------------------------------------------- train / generate

_TRAIN_EPILOG = """\
examples:
  pggan dataset data/demo_corpus data/demo_dataset        # once: build a dataset
  pggan train --data data/demo_dataset --out runs/quick    # every scale, ~3 min on a CPU
  pggan train --data data/demo_dataset --out runs/quick --resume   # continue after a stop
  tensorboard --logdir runs/quick/tb                       # watch D(x), D(G(z)), Delta

The run folder gets config.json, history.csv (one row per step), checkpoints/,
samples/ (WAV at each phase end), tb/ (TensorBoard) and generator.keras.
A stopped or killed run loses at most one checkpoint interval: rerun the same
command with --resume.
"""


def _add_train_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a progressive GAN on a dataset, scale by scale",
        description=(
            "Train a progressive GAN on a dataset made by `pggan dataset`: the coarsest "
            "scale first, then each finer scale fades in (alpha 0 -> 1) and trains stable. "
            "The number of scales and the clip length come from the dataset; the preset "
            "sets sizes, step counts and the optimiser."),
        epilog=_TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True,
                        help="dataset folder (holds manifest.json; made by `pggan dataset`)")
    parser.add_argument("--out", type=Path, required=True,
                        help="run folder to create (or to continue with --resume)")
    parser.add_argument("--preset", default=None,
                        help="quick (every scale in ~3 min on a CPU), reference (~1 h on 2 "
                             "CPU cores), colab (one GPU for hours; needs a dataset built "
                             "with --clip-samples 65536), tiny (tests). Default: quick")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its newest checkpoint")
    parser.add_argument("--loss", choices=("wgan-gp", "report"), default=None,
                        help="wgan-gp (WGAN-GP + PGGAN drift) or report (the project "
                             "report's loss). Default: the preset's (wgan-gp)")
    parser.add_argument("--activation", choices=("report", "leaky", "linear", "tanh"),
                        default=None,
                        help="hidden activation; 'report' = tanh(x) + x/alpha, also at the "
                             "critic's output. Default: the preset's (leaky)")
    parser.add_argument("--conditional", action="store_true",
                        help="condition both networks on the class (e.g. the author)")
    parser.add_argument("--representation", choices=config.REPRESENTATIONS, default=None,
                        help="what the GAN grows over: waveform (the report's sample-rate "
                             "pyramid), spectral (log magnitude + instantaneous frequency, "
                             "GANSynth) or magnitude (log magnitude, Griffin-Lim phase; "
                             "chapter 8). Default: the preset's (waveform)")
    parser.add_argument("--architecture", choices=config.ARCHITECTURES, default=None,
                        help="progressive (grows scale by scale) or wavegan (WaveGAN's "
                             "players at the finest scale only, for as many steps as the "
                             "preset's whole schedule; chapter 5). Default: progressive")
    parser.add_argument("--penalty", choices=config.PENALTIES, default=None,
                        help="the critic's penalty: gp (WGAN-GP's, on interpolates) or r1 "
                             "(on real clips, towards zero). Default: the preset's (gp)")
    parser.add_argument("--no-growing", action="store_true",
                        help="train the finest scale alone from the first step, for as many "
                             "steps as the preset's whole schedule (chapter 5's direct arms; "
                             "--architecture wavegan always does)")
    parser.add_argument("--silent-heads", action="store_true",
                        help="start the generator's to-waveform heads at zero: it starts "
                             "silent instead of as a loud low hum (chapter 5; best with "
                             "--no-growing)")
    parser.add_argument("--head-std", type=_non_negative_float, default=None,
                        help="the heads' initial standard deviation, as a fraction of He's "
                             "(default: the preset's, 0.1 in quick, reference and colab; "
                             "chapter 5: 0.1 with PGGAN's head won the growth study)")
    parser.add_argument("--critic-emphasis", type=_fraction, default=None,
                        help="coefficient a of a pre-emphasis filter x[t] - a x[t-1] in front "
                             "of the critic, which lifts each scale's top octave (default: the "
                             "preset's, 0 = none; chapter 5)")
    parser.add_argument("--critic-spectrum", type=_fft_length, default=None,
                        help="FFT length of a log-spectrogram branch beside the critic's "
                             "waveform path (default: the preset's, 0 = none; chapter 5)")
    parser.add_argument("--upsample", choices=config.UPSAMPLERS, default=None,
                        help="how each generator block doubles the rate: low-passed zero "
                             "insertion or a sub-pixel convolution (default: the preset's; "
                             "chapter 5)")
    parser.add_argument("--spectrum-match", type=_non_negative_float, default=None,
                        help="weight of the gap between generated and real mean log "
                             "spectra in the generator's loss (default: the preset's, "
                             "0 = none; chapter 5)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of weights, latents and data order (default 0)")
    parser.add_argument("--max-minutes", type=_positive_float, default=None,
                        help="stop cleanly after this many minutes (resume later)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--evaluate", action="store_true",
                        help="at the end of every stable phase, score the EMA generator at "
                             "that scale (IS, Frechet distance, NDB, nearest neighbours; see "
                             "`pggan evaluate`) into RUN/metrics_by_phase.json")
    parser.set_defaults(handler=_run_train)


def _check_dataset_dir(path: Path) -> None:
    if not (path / "manifest.json").is_file():
        raise CommandError(f"{path} is not a built dataset: {path / 'manifest.json'} not "
                           f"found. Build one with `pggan dataset SOURCE {path}`")


def _run_train(args: argparse.Namespace) -> int:
    # Cheap checks first, so that mistakes are reported before TensorFlow loads.
    _check_dataset_dir(args.data)
    if args.preset is not None:
        try:
            config.get_preset(args.preset)
        except ValueError as error:
            raise CommandError(str(error)) from error
    if args.resume:
        if not args.out.is_dir():
            raise CommandError(f"{args.out}: no such run folder to resume; drop --resume to "
                               f"start a new run")
        if not any((args.out / "checkpoints").glob("ckpt-*.npz")):
            raise CommandError(f"{args.out}: no checkpoint to resume from "
                               f"({args.out / 'checkpoints'} is empty or missing); start a new "
                               f"run in a new folder")
        for flag in ("representation", "architecture", "penalty", "no_growing",
                     "silent_heads", "head_std", "critic_emphasis", "critic_spectrum",
                     "spectrum_match", "upsample"):
            if getattr(args, flag) not in (None, False):
                name = flag.replace("_", "-")
                raise CommandError(f"--{name} applies to new runs; a resumed run keeps "
                                   f"its own (drop --{name})")
    elif args.out.exists() and any(args.out.iterdir()):
        raise CommandError(f"{args.out} already exists; use --resume to continue that run, or "
                           f"choose a new --out folder")

    _import_tensorflow_quietly()
    from pggan_lib import training

    def evaluate_stable_phase(run_dir, phase):
        from pggan_lib import evaluation

        if phase.kind == "stable":
            evaluation.record_phase_metrics(run_dir, args.data, phase.scale, phase.index)

    try:
        history = training.train(
            args.data, args.out, preset=args.preset, resume=args.resume, loss=args.loss,
            activation=args.activation, conditional=args.conditional or None, seed=args.seed,
            max_minutes=args.max_minutes, progress=not args.no_progress,
            overrides=_train_overrides(args),
            on_phase_end=evaluate_stable_phase if args.evaluate else None)
    except training.TrainingDiverged as error:
        print(f"pggan train: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        raise CommandError(str(error)) from error
    if history["step"]:
        last = {k: history[k][-1] for k in ("step", "scale", "d_loss", "g_loss", "delta")}
        print(f"pggan train: {args.out} at step {last['step']} (scale {last['scale']}): "
              f"d_loss {last['d_loss']:.4g}, g_loss {last['g_loss']:.4g}, "
              f"delta {last['delta']:.4g}")
    return 0


def _train_overrides(args: argparse.Namespace) -> dict | None:
    """The preset fields that `pggan train`'s flags change (None: none)."""
    overrides = {flag: getattr(args, flag) for flag in ("representation", "penalty",
                                                        "head_std", "critic_emphasis",
                                                        "critic_spectrum", "spectrum_match",
                                                        "upsample")
                 if getattr(args, flag) is not None}
    if args.silent_heads:
        overrides["silent_heads"] = True
    if args.architecture == "wavegan" or args.no_growing:
        from pggan_lib import data

        num_scales = int(data.read_manifest(args.data)["num_scales"])
        finest = config.get_preset(args.preset or "quick").finest_scale_only(num_scales)
        overrides.update(stable_steps=finest.stable_steps, fade_steps=finest.fade_steps)
    if args.architecture == "wavegan":
        overrides["architecture"] = "wavegan"
    return overrides or None


def _add_generate_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="write WAV files generated by a trained run",
        description=(
            "Generate clips with a run's generator (by default the EMA generator at the "
            "finest scale trained so far) and write them as 16-bit WAV files at that "
            "scale's sample rate."),
        epilog="example:\n  pggan generate --run runs/quick --n 8 --out generated/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run folder made by `pggan train`")
    parser.add_argument("--n", type=_positive_int, default=8, help="number of clips (default 8)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder (created; refused when it holds files)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an output folder that already holds files")
    parser.add_argument("--class", dest="class_name", default=None,
                        help="class to generate (runs trained with --conditional only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent vectors")
    parser.add_argument("--scale", type=int, default=None,
                        help="scale to generate at (0 = coarsest; default: finest trained)")
    parser.add_argument("--no-ema", action="store_true",
                        help="use the raw generator instead of its moving average")
    parser.set_defaults(handler=_run_generate)


def _check_trained_run(run: Path) -> None:
    """A run folder with something to generate from, or a one-line CommandError."""
    from pggan_lib import runs

    runs.require_run_folder(run, CommandError)
    if not runs.has_checkpoint(run) and not (run / runs.GENERATOR_FILE).is_file():
        raise CommandError(f"{run}: no checkpoint yet; train first (`pggan train --out {run} "
                           f"--resume` to continue)")


def _run_generate(args: argparse.Namespace) -> int:
    run = args.run
    _check_trained_run(run)
    from pggan_lib import audio, runs

    run_config = runs.read_config(run, CommandError)
    classes = run_config["dataset"]["class_names"]
    if args.class_name is not None:
        if not run_config["conditional"]:
            raise CommandError(f"--class {args.class_name}: the model in {run} is unconditional "
                               f"(train with --conditional to choose classes)")
        if args.class_name not in classes:
            raise CommandError(f"unknown class {args.class_name!r}; classes: {', '.join(classes)}")

    try:
        audio.check_output_folder(args.out, args.overwrite)
    except FileExistsError as error:
        raise CommandError(f"--out {error}") from None
    # Upper bound: 16-bit PCM at the finest scale (a coarser --scale writes less).
    megabytes = args.n * (2 * run_config["model_spec"]["clip_samples"] + 44) / 1e6
    print(f"pggan generate: {args.n} clips, up to {megabytes:.3g} MB", flush=True)

    _import_tensorflow_quietly()
    from pggan_lib import training

    try:
        paths = training.write_generated(run, args.n, args.out, class_name=args.class_name,
                                         seed=args.seed, scale=args.scale,
                                         use_ema=not args.no_ema, overwrite=args.overwrite,
                                         progress=args.n > 16)
    except ValueError as error:
        raise CommandError(str(error)) from error
    print(f"pggan generate: wrote {len(paths)} files to {args.out}")
    return 0


# ------------------------------------------------------------------ serve

def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {value}")
    return value


def _add_serve_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a run's generator from a web site and JSON API (Django + waitress)",
        description=(
            "Start the Django site behind the book's chapter 7 under the waitress WSGI "
            "server: a page to generate clips and tracks, a page to interpolate between "
            "seeds, and a JSON API (/api/info, /api/generate?seed=N&seconds=S). The "
            "generator is loaded once, at start."),
        epilog="example:\n  pggan serve --run results/reference --port 8765\n"
               "  curl -o seed3.wav 'http://127.0.0.1:8765/api/generate?seed=3&seconds=5'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run folder made by `pggan train`")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--threads", type=_positive_int, default=8,
                        help="requests served at once (default 8)")
    parser.set_defaults(handler=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    _check_trained_run(args.run)
    try:
        import django  # noqa: F401
        import waitress  # noqa: F401
    except ModuleNotFoundError as error:
        raise CommandError(f"{error.name} is not installed; install the web extra: "
                           f"pip install 'pggan-lib[web]'") from None
    from pggan_lib import web

    try:
        web.serve(args.run, host=args.host, port=args.port, threads=args.threads,
                  before_load=_import_tensorflow_quietly)
    except OSError as error:
        raise CommandError(f"--host {args.host} --port {args.port}: cannot listen there "
                           f"({error.strerror or error})") from None
    return 0


# ------------------------------------------------------ evaluate / classifiers

def _add_classifiers_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "classifiers",
        help="train (or show) the per-scale classifiers that evaluation scores with",
        description=(
            "Train one classifier per progressive scale on the dataset's train split (it "
            "tells clips apart by class, e.g. author), test it on the test split and save it "
            "in DATA/classifiers/ (scale_<k>.keras + scale_<k>.json with accuracy and "
            "confusion matrix). Saved classifiers made with the same recipe are reused."),
        epilog="example:\n  pggan classifiers --data data/demo_dataset",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset folder")
    parser.add_argument("--retrain", action="store_true",
                        help="train again even when matching saved classifiers exist")
    parser.set_defaults(handler=_run_classifiers)


def _run_classifiers(args: argparse.Namespace) -> int:
    _check_dataset_dir(args.data)
    _import_tensorflow_quietly()
    from pggan_lib import evaluation

    try:
        classifiers = evaluation.load_or_train_classifiers(args.data, retrain=args.retrain,
                                                           progress=True)
    except ValueError as error:
        raise CommandError(str(error)) from error
    names = next(iter(classifiers.values())).class_names
    print(f"classes: {', '.join(names)}; saved in {args.data / evaluation.CLASSIFIER_DIR_NAME}")
    return 0


def _add_evaluate_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a run's generated audio per scale (IS, Fréchet distance, NDB, neighbours)",
        description=(
            "For every scale the run has trained: generate N clips, score them with the "
            "scale's classifier (Inception Score; Fréchet distance on the classifier's "
            "hidden features; NDB on log spectra; distance to the nearest training clip) and "
            "put the same measures of the real test clips beside them. Writes RUN/metrics.json "
            "and prints a table. Classifiers are trained on first use and saved with the "
            "dataset."),
        epilog="example:\n  pggan evaluate --run runs/quick --data data/demo_dataset",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run folder made by `pggan train`")
    parser.add_argument("--data", type=Path, required=True,
                        help="the dataset the run was trained on")
    parser.add_argument("--n", type=_positive_int, default=None,
                        help="generated clips per scale (default: as many as the test split)")
    parser.add_argument("--no-ema", action="store_true",
                        help="evaluate only the raw generator (default: the EMA generator and, "
                             "when a checkpoint exists, the raw one too)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent vectors")
    parser.set_defaults(handler=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from pggan_lib import runs

    runs.require_run_folder(args.run, CommandError)
    _check_dataset_dir(args.data)
    _import_tensorflow_quietly()
    from pggan_lib import evaluation

    try:
        metrics = evaluation.evaluate_run(args.run, args.data, n=args.n,
                                          use_ema=(False,) if args.no_ema else (True, False),
                                          seed=args.seed, progress=True)
    except ValueError as error:
        raise CommandError(str(error)) from error
    print(evaluation.format_metrics_table(metrics))
    print(f"pggan evaluate: wrote {args.run / evaluation.METRICS_FILE_NAME}")
    return 0


# --------------------------------------------------------------------- ablate

def _selected_arms(arms, names):
    """The arms called ``names`` (all when ``names`` is empty); an unknown name is an error."""
    arms = list(arms)
    if not names:
        return arms
    unknown = sorted(set(names) - {a.name for a in arms})
    if unknown:
        raise CommandError(f"unknown arm(s) {', '.join(unknown)}; arms: "
                           f"{', '.join(a.name for a in arms)}")
    return [a for a in arms if a.name in names]


def _add_ablate_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ablate",
        help="run the report's activation x loss ablation grid (chapter 4)",
        description=(
            "Train every arm of the grid hidden activation {leaky, linear, report} x loss "
            "{wgan-gp, report} (plus critic-output arms) for several seeds on the first "
            "scales, with the same budget per arm; probe every checkpoint (sign bias, "
            "saturation, activation magnitudes, spectral distance to real test clips; with "
            "the learn budget also FD, IS, NDB/K and tonality of the EMA generator) and "
            "write OUT/runs/*.json, OUT/results.json (machine, wall time, summary, verdicts "
            "on the report's claims) and PNG figures. Finished runs are skipped, so a "
            "stopped grid resumes. A diverged (NaN) run is recorded and the grid goes on."),
        epilog="example:\n  pggan ablate --data data/demo_dataset --out results/ablation "
               "--seeds 3 --scales 2 --budget learn",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset folder")
    parser.add_argument("--out", type=Path, required=True,
                        help="results folder (small JSON + PNG; committed)")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="scratch folder for the training runs (default: a temporary "
                             "folder, deleted afterwards)")
    parser.add_argument("--seeds", type=_positive_int, default=3,
                        help="seeds per arm, 0 .. N-1 (default 3)")
    parser.add_argument("--scales", type=_positive_int, default=2,
                        help="scales trained per run, from the coarsest (default 2)")
    parser.add_argument("--budget", default="learn",
                        help="steps per phase and scoring: learn | full | quick | tiny "
                             "(default learn)")
    parser.add_argument("--arms", nargs="*", default=None,
                        help="only these arm names (default: the whole grid)")
    parser.set_defaults(handler=_run_ablate)


@contextlib.contextmanager
def _scratch_runs_dir(runs_dir: Path | None, prefix: str):
    """``runs_dir``, or a temporary folder deleted afterwards; a ValueError becomes a CommandError."""
    folder = runs_dir or Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    except ValueError as error:
        raise CommandError(str(error)) from error
    finally:
        if runs_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


def _arms_flag(arms) -> str:
    return " --arms " + " ".join(arms) if arms else ""


def _run_ablate(args: argparse.Namespace) -> int:
    _check_dataset_dir(args.data)
    _import_tensorflow_quietly()
    from pggan_lib import ablation

    if args.budget not in ablation.BUDGETS:
        raise CommandError(f"unknown --budget {args.budget!r}; choose one of "
                           f"{', '.join(ablation.BUDGETS)}")
    arms = _selected_arms(ablation.default_arms(), args.arms)
    command = (f"pggan ablate --data {shlex.quote(str(args.data))} "
               f"--out {shlex.quote(str(args.out))} --seeds {args.seeds} "
               f"--scales {args.scales} --budget {args.budget}" + _arms_flag(args.arms))
    with _scratch_runs_dir(args.runs_dir, "pggan-ablate-") as runs_dir:
        results = ablation.run_grid(args.data, args.out, runs_dir, arms=arms,
                                    seeds=range(args.seeds), budget=args.budget,
                                    scales=args.scales, command=command)
    for verdict in results["verdicts"]:
        print(f"({verdict['claim']}) {verdict['verdict']}: {verdict['statement']}")
    print(f"pggan ablate: {len(results['runs'])} runs in {args.out} "
          f"({results['meta']['grid_wall_s']:.0f} s)")
    return 0


def _add_study_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "study",
        help="quality per CPU-second of training recipes at the coarsest scale (chapter 5)",
        description=(
            "Train each arm (a preset plus changes: data, augmentation, EMA, optimiser, "
            "penalty, width) for a fixed budget of training CPU-seconds at the coarsest "
            "scale, several seeds, scoring the EMA and raw generators at doubling points "
            "(FD, IS, NDB/K, spectral flatness against the real test split). Writes "
            "OUT/runs/ARM_seedS.json, OUT/study.json (summary with seed spread) and "
            "OUT/study.png. Finished runs are skipped, so a stopped study resumes."),
        epilog="example:\n  pggan study --data data/demo_dataset --out results/study "
               "--seeds 2 --budget-cpu-s 240",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="results folder (committed)")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="scratch folder for training runs (default: a temporary folder)")
    parser.add_argument("--seeds", type=_positive_int, default=2,
                        help="seeds per arm, 0 .. N-1 (default 2)")
    parser.add_argument("--budget-cpu-s", type=_positive_float, default=240.0,
                        help="training CPU-seconds per run (default 240)")
    parser.add_argument("--first-cpu-s", type=_positive_float, default=30.0,
                        help="first scoring point; then doubling (default 30; with "
                             "--representations: score every this many CPU-seconds)")
    parser.add_argument("--arms", nargs="*", default=None,
                        help="only these arm names (default: all)")
    parser.add_argument("--growth", action="store_true",
                        help="the growth study instead: the architecture arms trained through "
                             "scales 0-3 on one fixed schedule, every scale scored "
                             "(OUT/growth.json, OUT/growth/ARM_seedS.json)")
    parser.add_argument("--representations", action="store_true",
                        help="the representation study instead (chapter 8): waveform, "
                             "spectral and magnitude arms grown to the finest scale and "
                             "trained there until --budget-cpu-s, scored there "
                             "(OUT/representations.json, OUT/runs/, OUT/clips/)")
    parser.set_defaults(handler=_run_study)


def _run_study(args: argparse.Namespace) -> int:
    _check_dataset_dir(args.data)
    if args.first_cpu_s > args.budget_cpu_s:
        raise CommandError(f"--first-cpu-s {args.first_cpu_s:g} is larger than "
                           f"--budget-cpu-s {args.budget_cpu_s:g}")
    _import_tensorflow_quietly()
    from pggan_lib import plots, study

    if args.growth:
        return _run_growth_study(args)
    if args.representations:
        return _run_representation_study(args)
    arms = _selected_arms(study.DEFAULT_ARMS, args.arms)
    command = _study_command(args)
    with _scratch_runs_dir(args.runs_dir, "pggan-study-") as runs_dir:
        summary = study.run_study(args.data, args.out, runs_dir, arms, range(args.seeds),
                                  args.budget_cpu_s, args.first_cpu_s, command=command)
    plots.plot_study_curves(summary["runs"]).savefig(args.out / "study.png", dpi=80,
                                                     bbox_inches="tight")
    print(study.format_study_table(summary))
    print(f"pggan study: {len(summary['runs'])} runs in {args.out}")
    return 0


def _study_command(args: argparse.Namespace, flag: str = "") -> str:
    """The ``pggan study`` command line of a budgeted study, as stored with its results."""
    return (f"pggan study {flag}--data {shlex.quote(str(args.data))} "
            f"--out {shlex.quote(str(args.out))} --seeds {args.seeds} "
            f"--budget-cpu-s {args.budget_cpu_s:g} --first-cpu-s {args.first_cpu_s:g}"
            + _arms_flag(args.arms))


def _run_growth_study(args: argparse.Namespace) -> int:
    from pggan_lib import study

    arms = _selected_arms(study.GROWTH_ARMS, args.arms)
    command = (f"pggan study --growth --data {shlex.quote(str(args.data))} "
               f"--out {shlex.quote(str(args.out))} --seeds {args.seeds}" + _arms_flag(args.arms))
    with _scratch_runs_dir(args.runs_dir, "pggan-growth-") as runs_dir:
        summary = study.run_growth_study(args.data, args.out, runs_dir, arms, range(args.seeds),
                                         command=command)
    print(study.format_growth_table(summary))
    print(f"pggan study --growth: {len(summary['runs'])} runs in {args.out}")
    return 0


def _run_representation_study(args: argparse.Namespace) -> int:
    from pggan_lib import plots, representation_study as rs

    arms = _selected_arms(rs.ARMS, args.arms)
    command = _study_command(args, "--representations ")
    with _scratch_runs_dir(args.runs_dir, "pggan-representations-") as runs_dir:
        summary = rs.run_representation_study(
            args.data, args.out, runs_dir, arms, tuple(range(args.seeds)), args.budget_cpu_s,
            args.first_cpu_s, command=command)
    figure = plots.plot_study_curves(summary["runs"], metric="frechet_distance")
    figure.savefig(args.out / "representations.png", dpi=80, bbox_inches="tight")
    print(rs.format_representation_table(summary))
    print(f"pggan study --representations: {len(summary['runs'])} runs in {args.out}")
    return 0


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
    for add_parser in (_add_train_parser, _add_generate_parser, _add_evaluate_parser,
                       _add_classifiers_parser, _add_ablate_parser, _add_study_parser,
                       _add_serve_parser):
        add_parser(subparsers)
    return parser


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up lines silenced.

    TensorFlow prints a line about oneDNN (and, in GPU builds, CUDA probing) to
    file descriptor 2 before its own logging starts, so ``TF_CPP_MIN_LOG_LEVEL``
    cannot hide it. Errors still surface: they are Python exceptions.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    except ModuleNotFoundError as error:
        if error.name != "tensorflow":
            raise
        raise CommandError(
            "TensorFlow is not installed. Install the library with one of its extras: "
            "pip install 'pggan-lib[cpu]' (CPU only) or 'pggan-lib[gpu]' (CUDA); in Colab "
            "TensorFlow is already there") from None
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)


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
        # Each handler checks paths and arguments first, then loads TensorFlow.
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
