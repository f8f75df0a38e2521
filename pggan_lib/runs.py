"""The run folder that ``pggan train`` writes, read without TensorFlow.

One home for the folder's layout and for the one "not a run folder" error::

    RUN/config.json            preset, model spec, loss, activation, dataset, schedule
    RUN/history.csv            one row per optimiser step (:data:`HISTORY_COLUMNS`)
    RUN/run_state.json         the last finished phase (written with generator.keras)
    RUN/generator.keras        the EMA generator at the last finished phase
    RUN/checkpoints/ckpt-*.npz both players, their optimisers and the EMA weights
    RUN/samples/*.wav          clips written at phase ends
    RUN/metrics.json           ``pggan evaluate``; RUN/metrics_by_phase.json: ``--evaluate``
    RUN/provenance.json        committed runs: the commands, the machine, the wall times

The command line checks a folder with these functions before TensorFlow loads;
the library's readers (``training``, ``evaluation``, ``reference``, the web
site) use them too, each raising its own error class.

Notebook: chapters/05_training_on_gpu.ipynb
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

from pggan_lib import files
from pggan_lib.config import RUN_CONFIG_FIELDS

__all__ = [
    "CONFIG_FILE", "STATE_FILE", "HISTORY_FILE", "GENERATOR_FILE", "CHECKPOINT_DIR",
    "METRICS_FILE", "PHASE_METRICS_FILE", "PROVENANCE_FILE",
    "METRIC_NAMES", "HISTORY_COLUMNS",
    "require_run_folder", "read_config", "read_optional_json", "read_history",
    "has_checkpoint", "CHECKPOINT_META", "checkpoint_meta", "RunFolder",
]

CONFIG_FILE = "config.json"
STATE_FILE = "run_state.json"
HISTORY_FILE = "history.csv"
GENERATOR_FILE = "generator.keras"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.json"
PHASE_METRICS_FILE = "metrics_by_phase.json"
PROVENANCE_FILE = "provenance.json"

#: Scalars logged per step (the training step's outputs).
METRIC_NAMES = ("d_loss", "g_loss", "d_real", "d_fake", "delta", "gp",
                "d_grad_norm", "g_grad_norm")
#: Columns of ``history.csv``: one row per optimiser step.
HISTORY_COLUMNS = ("step", "phase", "scale", "alpha") + METRIC_NAMES + ("elapsed_s",)


def require_run_folder(run_dir: str | os.PathLike, error: type[Exception] = ValueError,
                       hint: str = "") -> Path:
    """The folder as a Path when it holds a run, else ``error`` with one line.

    Args:
        run_dir: The folder.
        error: Exception class to raise (the caller's own: ``RunError``,
            ``CommandError``, ...).
        hint: What to do instead, appended to the "not a run folder" message.

    Returns:
        ``Path(run_dir)``.

    Raises:
        error: ``"RUN: no such run folder"`` or ``"RUN: not a run folder (no config.json)"``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise error(f"{run_dir}: no such run folder")
    if not (run_dir / CONFIG_FILE).is_file():
        raise error(f"{run_dir}: not a run folder (no {CONFIG_FILE})"
                    + (f"; {hint}" if hint else ""))
    return run_dir


def read_config(run_dir: str | os.PathLike, error: type[Exception] = ValueError,
                hint: str = "") -> dict[str, Any]:
    """``config.json`` of a run, checked for :data:`config.RUN_CONFIG_FIELDS`.

    Raises:
        error: Not a run folder (:func:`require_run_folder`), or a damaged
            ``config.json`` (named, with the missing field or the JSON error).
    """
    run_dir = require_run_folder(run_dir, error, hint)
    return files.read_json_object(run_dir / CONFIG_FILE, RUN_CONFIG_FIELDS, error)


def read_optional_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON file's content, or ``{}`` when the file is not there (not written yet)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def read_history(run_dir: str | os.PathLike) -> dict[str, list]:
    """A run's ``history.csv`` as a dict of columns (``step`` ... ``elapsed_s``).

    Returns:
        Dict column name -> list of values (ints for step/phase/scale, else
        floats); empty lists when the file is not there yet.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    path = Path(run_dir) / HISTORY_FILE
    columns: dict[str, list] = {name: [] for name in HISTORY_COLUMNS}
    if not path.exists():
        return columns
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            for name in HISTORY_COLUMNS:
                value = row[name]
                columns[name].append(int(value) if name in ("step", "phase", "scale")
                                     else float(value))
    return columns


#: Name of the JSON metadata array inside a checkpoint ``.npz`` (step, scale,
#: alpha, phase, checksum, ...; written by ``training.save_checkpoint``).
CHECKPOINT_META = "__meta__"


def checkpoint_meta(arrays) -> dict[str, Any]:
    """The metadata dict of an opened checkpoint (``np.load(path)``), decoded from its JSON bytes."""
    return json.loads(arrays[CHECKPOINT_META].tobytes().decode())


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """True when the run has a checkpoint file (intact or not) to resume or generate from."""
    return any((Path(run_dir) / CHECKPOINT_DIR).glob("ckpt-*.npz"))


@dataclasses.dataclass
class RunFolder:
    """Everything a finished (or running) run folder says, read once.

    Attributes:
        run_dir: The folder.
        config: ``config.json`` (preset, model spec, schedule, dataset).
        state: ``run_state.json`` (``{}`` before the first phase ends).
        metrics: ``metrics.json`` (``{}`` until ``pggan evaluate``).
        metrics_by_phase: ``metrics_by_phase.json`` (``{}`` without ``--evaluate``).
        provenance: ``provenance.json`` (committed runs only, else ``{}``).
    """

    run_dir: Path
    config: dict
    state: dict
    metrics: dict
    metrics_by_phase: dict
    provenance: dict

    @classmethod
    def load(cls, run_dir: str | os.PathLike, error: type[Exception] = ValueError,
             hint: str = "") -> "RunFolder":
        """Read a run folder (:func:`read_config` says why a folder is not one)."""
        run_dir = Path(run_dir)
        return cls(run_dir=run_dir, config=read_config(run_dir, error, hint),
                   state=read_optional_json(run_dir / STATE_FILE),
                   metrics=read_optional_json(run_dir / METRICS_FILE),
                   metrics_by_phase=read_optional_json(run_dir / PHASE_METRICS_FILE),
                   provenance=read_optional_json(run_dir / PROVENANCE_FILE))

    @functools.cached_property
    def history(self) -> dict:
        """``history.csv`` as columns (:func:`read_history`), read on first use:
        the web site loads run folders at start-up and never needs it."""
        return read_history(self.run_dir)

    @property
    def num_scales(self) -> int:
        """Scales of the dataset the run trained on."""
        return int(self.config["dataset"]["num_scales"])
