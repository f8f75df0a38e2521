"""Tests of pggan_lib.runs: the run folder read without TensorFlow, one error per problem."""

import csv
import json
import subprocess
import sys

import pytest

from pggan_lib import runs

CONFIG = {"preset": {"name": "tiny"}, "model_spec": {}, "loss": "wgan-gp",
          "activation": "leaky", "dataset": {"num_scales": 3}, "schedule": []}


class Refused(Exception):
    """Stands for a caller's own error class (RunError, CommandError, ...)."""


def _run(tmp_path, config=CONFIG):
    run = tmp_path / "run"
    run.mkdir()
    (run / runs.CONFIG_FILE).write_text(json.dumps(config))
    return run


def test_not_a_run_folder_is_one_line_in_the_callers_error_class(tmp_path):
    with pytest.raises(Refused, match=r"^\S*nope: no such run folder$"):
        runs.require_run_folder(tmp_path / "nope", Refused)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Refused, match=r"empty: not a run folder \(no config.json\); train first$"):
        runs.require_run_folder(tmp_path / "empty", Refused, "train first")
    assert runs.require_run_folder(_run(tmp_path), Refused) == tmp_path / "run"


def test_read_config_names_a_missing_field_and_bad_json(tmp_path):
    run = _run(tmp_path, {k: v for k, v in CONFIG.items() if k != "schedule"})
    with pytest.raises(Refused, match="config.json: missing field 'schedule'"):
        runs.read_config(run, Refused)
    (run / runs.CONFIG_FILE).write_text("{not json")
    with pytest.raises(Refused, match="config.json: not valid JSON"):
        runs.read_config(run, Refused)
    (run / runs.CONFIG_FILE).write_text(json.dumps(CONFIG))
    assert runs.read_config(run, Refused) == CONFIG


def test_run_folder_reads_every_file_and_leaves_missing_ones_empty(tmp_path):
    run = _run(tmp_path)
    folder = runs.RunFolder.load(run)
    assert folder.config == CONFIG and folder.num_scales == 3
    assert folder.state == folder.metrics == folder.metrics_by_phase == folder.provenance == {}
    assert folder.history == {name: [] for name in runs.HISTORY_COLUMNS}
    assert not runs.has_checkpoint(run)

    (run / runs.STATE_FILE).write_text(json.dumps({"trained_scale": 2}))
    (run / runs.METRICS_FILE).write_text(json.dumps({"scales": {}}))
    with open(run / runs.HISTORY_FILE, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=runs.HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerow({**{name: 0.5 for name in runs.HISTORY_COLUMNS}, "step": 1, "phase": 0,
                         "scale": 0})
    (run / runs.CHECKPOINT_DIR).mkdir()
    (run / runs.CHECKPOINT_DIR / "ckpt-00000001.npz").write_bytes(b"")
    folder = runs.RunFolder.load(run)
    assert folder.state == {"trained_scale": 2} and folder.metrics == {"scales": {}}
    assert folder.history["step"] == [1] and folder.history["d_loss"] == [0.5]
    assert isinstance(folder.history["scale"][0], int) and runs.has_checkpoint(run)


def test_run_folder_reads_its_history_once_and_only_when_asked(tmp_path, monkeypatch):
    run = _run(tmp_path)
    calls = []
    monkeypatch.setattr(runs, "read_history", lambda run_dir: calls.append(run_dir) or {"step": [7]})
    folder = runs.RunFolder.load(run)
    assert calls == []  # the web site's start-up never pays for it
    assert folder.history == {"step": [7]} and folder.history["step"] == [7]
    assert calls == [run]


def test_reading_a_run_folder_does_not_load_tensorflow():
    code = ("import sys; from pggan_lib import runs; runs.read_optional_json('x.json'); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
