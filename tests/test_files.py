"""files: atomic writes (a crash leaves the old file) and one-line read errors."""

import json
import math

import pytest

from pggan_lib import files


def test_a_crash_while_writing_leaves_the_old_file_and_no_temporary(tmp_path):
    path = files.write_json(tmp_path / "state.json", {"step": 1})

    def crash(tmp):
        with open(tmp, "w") as handle:
            handle.write('{"step": 2, "half')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(path, crash)
    assert json.loads(path.read_text()) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_write_json_round_trips_and_refuses_nan_when_strict(tmp_path):
    value = {"fd": 1.5, "path": tmp_path, "scales": [0, 1]}
    path = files.write_json(tmp_path / "sub" / "metrics.json", value)
    assert files.read_json_object(path, required=("fd",)) == {**value, "path": str(tmp_path)}
    with pytest.raises(ValueError):
        files.write_json(tmp_path / "results.json", {"fd": math.nan}, allow_nan=False)
    assert not (tmp_path / "results.json").exists()
