"""The committed reference run: where it came from, what it learned, how long it took.

``results/reference/`` holds a full run of the ``reference`` preset on the demo
corpus, made by ``python data_scripts/make_reference_run.py``. That script runs
``pggan train --preset reference --evaluate`` (resuming when a checkpoint is
there) and ``pggan evaluate``, then writes ``provenance.json``: the commands,
the machine, the wall times. Chapters load the run with
:func:`load_reference_run` and print :meth:`ReferenceRun.caption` beside every
figure they draw from it, so that a reader always knows which command made a
result and on what.

Notebook: chapters/05_training_on_gpu.ipynb
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import subprocess
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pggan_lib import audio, config, files, runs, training
from pggan_lib.runs import PROVENANCE_FILE
from pggan_lib.profiling import machine_description

__all__ = [
    "PROVENANCE_FILE",
    "ReferenceRun",
    "load_reference_run",
    "phase_times",
    "write_provenance",
    "SUMMARY_FILE",
    "summary_markdown",
    "compare_runs",
    "format_comparison",
]

#: The run's results as Markdown, written by ``make_reference_run.py`` (README links it).
SUMMARY_FILE = "SUMMARY.md"


def phase_times(history: dict[str, Sequence], schedule: Sequence[dict]) -> list[dict[str, Any]]:
    """Wall time of each training phase, split into steps and overhead.

    A phase's *step time* is ``steps x median step interval`` (one history row
    per step); its *overhead* is the rest of the wall time between the end of
    the previous phase and its own end: graph tracing, sample writing and, with
    ``--evaluate``, scoring the phase.

    Args:
        history: Columns of ``history.csv`` (:func:`runs.read_history`);
            needs ``step``, ``phase`` and ``elapsed_s``.
        schedule: The run's phases (``config.json["schedule"]``), dicts with
            ``index``, ``scale``, ``kind``, ``steps`` and ``batch_size``.

    Returns:
        One dict per phase present in the history: ``phase``, ``scale``,
        ``kind``, ``steps``, ``batch_size``, ``wall_s``, ``step_s`` (median
        seconds per step), ``overhead_s``, ``steps_per_s`` and ``clips_per_s``
        (from the median step).

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    phases = np.asarray(history["phase"], dtype=np.int64)
    elapsed = np.asarray(history["elapsed_s"], dtype=np.float64)
    rows, previous_end = [], 0.0
    for phase in schedule:
        mask = phases == int(phase["index"])
        if not mask.any():
            continue
        times = elapsed[mask]
        intervals = np.diff(np.concatenate([[previous_end], times]))
        step_s = float(np.median(intervals[1:])) if len(intervals) > 1 else float(intervals[0])
        wall_s = float(times[-1] - previous_end)
        steps = int(mask.sum())
        rows.append({"phase": int(phase["index"]), "scale": int(phase["scale"]),
                     "kind": phase["kind"], "steps": steps,
                     "batch_size": int(phase["batch_size"]), "wall_s": wall_s, "step_s": step_s,
                     "overhead_s": max(wall_s - steps * step_s, 0.0),
                     "steps_per_s": 1.0 / step_s if step_s > 0 else float("inf"),
                     "clips_per_s": int(phase["batch_size"]) / step_s if step_s > 0
                     else float("inf")})
        previous_end = float(times[-1])
    return rows


@dataclasses.dataclass
class ReferenceRun(runs.RunFolder):
    """A committed run folder, loaded: :class:`runs.RunFolder` with what a chapter asks of it.

    The fields are :class:`runs.RunFolder`'s (``metrics`` from ``pggan evaluate``:
    final weights, every scale; ``metrics_by_phase`` from ``--evaluate``: each
    scale when its stable phase ended; ``provenance``: commands, machine, wall times).

    Notebook: chapters/05_training_on_gpu.ipynb
    """

    @property
    def commands(self) -> list[str]:
        """The shell commands that made the run, in order."""
        return [entry["command"] for entry in self.provenance.get("commands", [])]

    @property
    def train_hours(self) -> float:
        """Wall time of training in hours (``elapsed_s`` of the last step; sums resumes)."""
        elapsed = self.history["elapsed_s"]
        return float(elapsed[-1]) / 3600.0 if elapsed else 0.0

    def caption(self) -> str:
        """One line for beside a result: commands, machine, training wall time.

        Returns:
            e.g. ``"Reference run: `pggan train ...` then `pggan evaluate ...`;
            1.52 h of training on 2 x AMD EPYC ... (CPU), TensorFlow 2.21.0"``.
        """
        if not self.provenance:
            steps = self.history["step"][-1] if self.history["step"] else 0
            return (f"Reference run in {self.run_dir} ({steps} steps, {self.train_hours:.2f} h "
                    f"so far): provenance.json not written yet, the run is unfinished")
        machine = self.provenance.get("machine", {})
        device = (", ".join(machine["gpus"]) if machine.get("gpus")
                  else f"{machine.get('cpu_count', '?')} x {machine.get('cpu', 'unknown CPU')} (CPU)")
        commands = " then ".join(f"`{c}`" for c in self.commands)
        return (f"Reference run: {commands}; {self.train_hours:.2f} h of training on {device}, "
                f"TensorFlow {machine.get('tensorflow', '?')}")

    def phase_times(self) -> list[dict[str, Any]]:
        """:func:`phase_times` of this run."""
        return phase_times(self.history, self.config["schedule"])

    def curves(self, scale: int | None = None) -> dict[str, np.ndarray]:
        """History columns as arrays, optionally only the steps at one scale.

        Args:
            scale: Keep rows of this scale (fade and stable phases); None keeps all.

        Returns:
            Column name -> ``float64`` array of shape ``(steps,)``.
        """
        columns = {name: np.asarray(values, dtype=np.float64)
                   for name, values in self.history.items()}
        if scale is None:
            return columns
        keep = columns["scale"] == scale
        return {name: values[keep] for name, values in columns.items()}

    def sample_files(self, scale: int, kind: str = "stable") -> list[Path]:
        """The clips training wrote at the end of ``scale``'s ``kind`` phase.

        They come from the EMA generator and the same fixed latent vectors at
        every phase end, so clip ``i`` of two scales is the same draw, grown.

        Returns:
            Paths sorted by clip index (empty if the phase never ended).
        """
        files = self.run_dir.glob(f"samples/step*_scale{int(scale)}_{kind}_*.wav")
        return sorted(files, key=lambda p: int(p.stem.rsplit("_", 1)[1]))

    def samples(self, scale: int, n: int | None = None, kind: str = "stable"
                ) -> tuple[np.ndarray, int]:
        """Load the phase-end clips of ``scale`` (see :meth:`sample_files`).

        Args:
            scale: Scale index.
            n: At most this many clips (default: all, 8 for the reference preset).
            kind: ``"stable"`` (end of the scale's training) or ``"fade"``.

        Returns:
            ``(clips, sample_rate)``: ``float32`` array of shape ``(n, samples)``
            and the scale's rate in Hz.

        Raises:
            training.RunError: The run has no such clips.
        """
        files = self.sample_files(scale, kind)[:n]
        if not files:
            raise training.RunError(f"{self.run_dir}: no {kind} samples of scale {scale} "
                                    f"in {self.run_dir / 'samples'}")
        rate = config.scale_sample_rate(scale, self.num_scales,
                                        int(self.config["dataset"]["sample_rate"]))
        return np.stack([audio.load_audio(path) for path in files]).astype(np.float32), rate


def load_reference_run(run_dir: str | os.PathLike | None = None) -> ReferenceRun:
    """Load a committed run folder (default: ``results/reference``).

    Args:
        run_dir: The folder; default :data:`config.REFERENCE_RUN_DIR`.

    Returns:
        A :class:`ReferenceRun`.

    Raises:
        training.RunError: No run there (with the command that makes one).

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    run_dir = Path(run_dir) if run_dir is not None else config.REFERENCE_RUN_DIR
    if not (run_dir / runs.CONFIG_FILE).is_file() or not (run_dir / runs.HISTORY_FILE).is_file():
        raise training.RunError(
            f"{run_dir}: no reference run (config.json and history.csv missing); it is "
            f"committed under results/reference in the book's repository, or make it with "
            f"`python data_scripts/make_reference_run.py`")
    return ReferenceRun.load(run_dir, training.RunError)


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=config.REPO_ROOT, check=True,
                              capture_output=True, text=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def write_provenance(run_dir: str | os.PathLike, commands: Sequence[str],
                     sessions: Sequence[dict[str, Any]] = (),
                     environment: Sequence[str] = ("TF_ENABLE_ONEDNN_OPTS", "KERAS_BACKEND",
                                                   "PGGAN_QUICK")) -> dict[str, Any]:
    """Write ``RUN/provenance.json``: what made the run, where, and how long it took.

    Sessions already recorded in an existing file are kept, the new ones
    appended, so that a run resumed three times says so.

    Args:
        run_dir: The run folder.
        commands: The shell commands that make the run from scratch, in order
            (what a reader would type).
        sessions: What this invocation actually ran: dicts with ``command``
            (the exact line, ``--resume`` included) and ``wall_s``.
        environment: Environment variables worth recording (those set are kept).

    Returns:
        The provenance dict written: ``commands``, ``sessions``, ``machine``
        (:func:`profiling.machine_description`), ``environment``,
        ``train_elapsed_s`` (from the history: training time over all sessions),
        ``git_commit`` of the code and ``written`` (UTC time).
    """
    run_dir = Path(run_dir)
    path = run_dir / PROVENANCE_FILE
    history = runs.read_history(run_dir)
    provenance = {
        "commands": [{"command": command} for command in commands],
        "sessions": runs.read_optional_json(path).get("sessions", []) + list(sessions),
        "machine": machine_description(),
        "environment": {k: os.environ[k] for k in environment if k in os.environ},
        "train_elapsed_s": float(history["elapsed_s"][-1]) if history["elapsed_s"] else 0.0,
        "git_commit": _git_commit(),
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    files.write_json(path, provenance)
    return provenance


def summary_markdown(run: ReferenceRun, previous: ReferenceRun | None = None) -> str:
    """The run's results against the targets as Markdown (``SUMMARY.md``), composed from its files.

    Args:
        run: A loaded run with ``metrics.json``.
        previous: An earlier reference run evaluated on the same dataset: adds a
            before/after table (FD over the floor per scale, both sources).

    Returns:
        Markdown: the caption, then one table row per scale (classifier
        accuracy, IS ratio, FD over the real floor with its limit, spectral
        flatness over the real clips', and whether each target is met), once
        for each scale's own output and once for the finest output taken down
        to each scale (``finest``, when ``metrics.json`` has it).
    """
    from pggan_lib import evaluation

    lines = [
        "# Reference run: results",
        "",
        f"Written by `python data_scripts/make_reference_run.py` from `metrics.json` "
        f"(`reference.summary_markdown`); do not edit. {run.caption()}.",
        "",
        f"Targets ({', '.join(f'{k} {v:g}' for k, v in evaluation.TARGETS.items())}): "
        f"IS gen / IS real at least the ratio; FD gen / real floor at most the low limit "
        f"up to the low rate and the high limit above; finest-scale flatness within the "
        f"tolerance of the real clips'.",
    ]
    sources = [("ema", "each scale's own output (EMA generator)")]
    if all("finest" in entry for entry in run.metrics["scales"].values()):
        sources.append(("finest", "the finest output downsampled to each scale"))
    for source, title in sources:
        lines += ["", f"## Scored on {title}", ""] + _targets_rows(run, source)
    if previous is not None:
        lines += ["", f"## Before and after: {previous.run_dir.name} -> {run.run_dir.name}", "",
                  f"Before: {previous.caption()}.", ""] + _comparison_rows(previous, run)
    return "\n".join(lines) + "\n"


def _flag(met):
    return "-" if met is None else ("yes" if met else "no")


def _targets_rows(run: ReferenceRun, source: str) -> list[str]:
    from pggan_lib import evaluation

    lines = ["| scale | rate (Hz) | classifier accuracy | IS gen / real | met | FD gen / floor | "
             "limit | met | flatness gen / real | met |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in evaluation.check_targets(run.metrics, source):
        entry = run.metrics["scales"][str(row["scale"])]
        flat = "-" if row["flatness_ratio"] is None else f"{row['flatness_ratio']:.2f}"
        lines.append(
            f"| {row['scale']} | {row['sample_rate']:g} | "
            f"{entry['classifier_test_accuracy']:.2f} | {row['is_ratio']:.2f} | "
            f"{_flag(row['is_met'])} | {row['fd_ratio']:.1f} | {row['fd_limit']:g} | "
            f"{_flag(row['fd_met'])} | {flat} | {_flag(row['flatness_met'])} |")
    return lines


def compare_runs(before: ReferenceRun, after: ReferenceRun) -> list[dict[str, Any]]:
    """Two evaluated runs side by side, scale by scale (:func:`evaluation.check_targets` ratios).

    Returns:
        One dict per scale both runs scored: ``scale``, ``sample_rate``, and
        ``(before, after)`` pairs ``own_fd`` (FD / floor of the scale's own
        output), ``finest_fd``, ``finest_is`` and ``finest_flatness`` (FD / floor,
        IS / real IS and spectral flatness / real flatness of the finest output
        downsampled to the scale; None where a run lacks it).

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    from pggan_lib import evaluation

    def by_scale(run, source):
        if not all(source in e for e in run.metrics["scales"].values()):
            return {}
        return {r["scale"]: r for r in evaluation.check_targets(run.metrics, source)}

    own = by_scale(before, "ema"), by_scale(after, "ema")
    finest = by_scale(before, "finest"), by_scale(after, "finest")
    rows = []
    for scale in sorted(set(own[0]) & set(own[1])):
        def pair(side, key):
            return tuple(s[scale][key] if scale in s else None for s in side)

        rows.append({"scale": scale, "sample_rate": own[1][scale]["sample_rate"],
                     "own_fd": pair(own, "fd_ratio"), "finest_fd": pair(finest, "fd_ratio"),
                     "finest_is": pair(finest, "is_ratio"),
                     "finest_flatness": pair(finest, "flatness_ratio")})
    return rows


def _cells(pair, digits):
    return [("-" if v is None else f"{v:.{digits}f}") for v in pair]


def format_comparison(rows: list[dict[str, Any]]) -> str:
    """:func:`compare_runs` as plain text, at most 76 characters wide.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    header = (f"{'scale':>5} {'rate':>5} | {'FD own':>13} | {'FD finest':>13} | "
              f"{'IS/real':>13} | {'flat/real':>13}")
    lines = [header, f"{'':11} | {'before':>6} {'after':>6} | {'before':>6} {'after':>6} | "
                     f"{'before':>6} {'after':>6} | {'before':>6} {'after':>6}",
             "-" * len(header)]
    for r in rows:
        own, fin = _cells(r["own_fd"], 1), _cells(r["finest_fd"], 1)
        is_, flat = _cells(r["finest_is"], 2), _cells(r["finest_flatness"], 2)
        lines.append(f"{r['scale']:>5} {r['sample_rate']:>5g} | {own[0]:>6} {own[1]:>6} | "
                     f"{fin[0]:>6} {fin[1]:>6} | {is_[0]:>6} {is_[1]:>6} | "
                     f"{flat[0]:>6} {flat[1]:>6}")
    lines.append("FD: over the real floor; own: each scale's output; finest, IS/real and")
    lines.append("flat/real: the finished clip taken down to each scale")
    return "\n".join(lines)


def _comparison_rows(before: ReferenceRun, after: ReferenceRun) -> list[str]:
    lines = ["| scale | rate (Hz) | FD / floor, own: before | after | FD / floor, finest: "
             "before | after | IS gen / real, finest: before | after | flatness gen / real, "
             "finest: before | after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in compare_runs(before, after):
        cells = (_cells(r["own_fd"], 1) + _cells(r["finest_fd"], 1) + _cells(r["finest_is"], 2)
                 + _cells(r["finest_flatness"], 2))
        lines.append(f"| {r['scale']} | {r['sample_rate']:g} | " + " | ".join(cells) + " |")
    return lines
