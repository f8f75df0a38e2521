"""Benchmark: what does a corpus need for the per-scale classifiers to reach 0.80?

For each corpus variant (an instrument and minutes per class) this renders
the embedded corpus into a scratch folder (never ``data/``), builds its
dataset with the parameters of ``make demo-data`` (``pggan dataset`` defaults:
16 kHz, 16384-sample clips, 7 scales, test fraction 0.2, split seed 0), trains
the per-scale classifiers with chapter 6's fixed recipe
(``evaluation.ClassifierRecipe()``) and reports, per scale, the test accuracy
and the confusion matrix, with the number of test pieces per class and the
wall time of each step. The default variants:

* ``piano:4``: the default corpus (every class on the piano, 4 min per class);
* ``genre:4``: each class with its own instrument (``corpus.GENRE_INSTRUMENTS``:
  organ, choir, strings, fiddle), 4 min per class;
* ``piano:8`` / ``genre:8``: the same with 8 min per class.

Rerunnable: the corpus renderer reuses every file it already rendered into the
scratch folder (the JSON then says how many files it rendered: build times are
those of a first run only when that count is the whole corpus); datasets and
classifiers are always built again.

Usage::

    nice -n 10 python benchmarks/bench_classifier_corpus.py \\
        --json results/classifiers/corpus_instruments.json
    python benchmarks/bench_classifier_corpus.py --variants piano:4,genre:4

Notebook: chapters/06_evaluation.ipynb
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pggan_lib import config, corpus, data, evaluation  # noqa: E402

DEFAULT_VARIANTS = "piano:4,genre:4,piano:8,genre:8"
THRESHOLD = 0.80  # the target test accuracy
FROM_HZ = 1000  # ... at every scale from this rate up


def parse_variants(text: str) -> list[tuple[str, float]]:
    """``"piano:4,genre:8"`` -> ``[("piano", 4.0), ("genre", 8.0)]``."""
    variants = []
    for item in text.split(","):
        instrument, _, minutes = item.strip().partition(":")
        try:
            variants.append((instrument, float(minutes)))
        except ValueError:
            raise SystemExit(f"--variants: {item!r} is not INSTRUMENT:MINUTES") from None
    return variants


def machine() -> dict:
    """The CPU this ran on and how busy it was when the run started."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import tensorflow as tf

    return {"cpu": model, "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "load_average_at_start": list(os.getloadavg())}


def run_variant(instrument: str, minutes: float, work: Path, demo_dataset: Path) -> dict:
    """Corpus -> dataset -> classifiers for one variant; the JSON entry."""
    name = f"{instrument}_{minutes:g}min"
    corpus_dir, dataset_dir = work / name / "corpus", work / name / "dataset"
    print(f"\n== {name}: corpus in {corpus_dir}", flush=True)
    report = corpus.make_demo_corpus(corpus_dir, minutes_per_class=minutes,
                                     instrument=instrument, progress=False)
    print(report.summary(), flush=True)
    started = time.perf_counter()
    data.build_dataset(corpus_dir, dataset_dir, overwrite=True, progress=False)
    dataset_s = time.perf_counter() - started
    manifest = data.read_manifest(dataset_dir)
    started = time.perf_counter()
    summary = evaluation.classifier_summary(dataset_dir, retrain=True, save=False,
                                            progress=True)
    classifiers_s = time.perf_counter() - started
    try:  # the default corpus's dataset, when built: is this variant the same split?
        same = data.dataset_fingerprint(data.read_manifest(demo_dataset)) == \
            summary["dataset_fingerprint"]
    except FileNotFoundError:
        same = None
    parameters = {key: value for key, value in manifest["build_parameters"].items()
                  if key != "source_dir"}
    return {
        "name": name, "instrument": instrument, "minutes_per_class": minutes,
        "instruments_per_class": {
            cls: (corpus.GENRE_INSTRUMENTS[cls] if instrument == corpus.GENRE else instrument)
            for cls in summary["class_names"]},
        "corpus_seconds_per_class": report.seconds_per_class,
        "corpus_files": len(report.files_written) + len(report.files_reused),
        "corpus_files_rendered": len(report.files_written),
        "corpus_skipped_works": len(report.skipped),
        "corpus_wall_s": round(report.wall_seconds, 1),
        "dataset_wall_s": round(dataset_s, 1),
        "classifiers_wall_s": round(classifiers_s, 1),
        "dataset_parameters": parameters,
        "same_dataset_as_demo_dataset": same,
        **summary,
    }


def print_table(variants: list[dict]) -> None:
    """Accuracy per scale and variant, the verdict, and the worst confusion from FROM_HZ up."""
    rates = [entry["sample_rate"] for entry in variants[0]["scales"]]
    print(f"\ntest accuracy per scale (chapter 6's recipe); target {THRESHOLD:.2f} "
          f"at every scale from {FROM_HZ} Hz up")
    print(f"{'variant':16s} {'test pieces':>11} " + " ".join(f"{r:>6g}" for r in rates)
          + "  reached  build s")
    for v in variants:
        accuracy = [entry["test_accuracy"] for entry in v["scales"]]
        upper = [a for a, r in zip(accuracy, rates) if r >= FROM_HZ]
        pieces = min(v["pieces_per_class"]["test"].values())
        build = v["corpus_wall_s"] + v["dataset_wall_s"]
        print(f"{v['name']:16s} {f'>= {pieces}':>11} " + " ".join(f"{a:6.3f}" for a in accuracy)
              + f"  {'yes' if min(upper) >= THRESHOLD else 'no':>7}  {build:7.0f}")
    for v in variants:
        upper = [e for e in v["scales"] if e["sample_rate"] >= FROM_HZ]
        worst = min(upper, key=lambda e: e["test_accuracy"])
        short = [name[:6] for name in v["class_names"]]
        print(f"\n{v['name']}: confusion at {worst['sample_rate']:g} Hz (its lowest from "
              f"{FROM_HZ} Hz up, accuracy {worst['test_accuracy']:.3f}); rows true, "
              f"columns predicted")
        print(" " * 8 + " ".join(f"{s:>6}" for s in short))
        for label, row in zip(short, worst["confusion"]):
            print(f"{label:>8}" + " ".join(f"{n:6d}" for n in row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help="comma-separated INSTRUMENT:MINUTES (default: %(default)s)")
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "pggan_classifier_corpus",
                        help="scratch folder for the corpora and datasets (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    variants = parse_variants(args.variants)
    if args.work.resolve().is_relative_to((REPO / "data").resolve()):
        raise SystemExit("--work: use a scratch folder, not data/ (the default corpus lives there)")

    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "threshold": THRESHOLD, "from_hz": FROM_HZ,
        "recipe": evaluation.ClassifierRecipe().to_dict(),
        "genre_instruments": dict(corpus.GENRE_INSTRUMENTS),
        "variants": [],
    }
    started = time.perf_counter()
    for instrument, minutes in variants:
        result["variants"].append(run_variant(instrument, minutes, args.work,
                                              REPO / config.DEMO_DATASET_DIR))
        if args.json:  # after each variant, so that a stopped run keeps what it measured
            result["total_wall_s"] = round(time.perf_counter() - started, 1)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    print_table(result["variants"])
    if args.json:
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
