"""Damaged checkpoints: every reader skips them with one line and falls back to an intact one."""

import json
import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pggan_lib import training  # noqa: E402


def _train_runs(tone_dataset, root):
    """An uninterrupted tiny run (20 steps) and one stopped at step 10, in ``root``.

    Returns:
        ``(root, history of the uninterrupted run)``.
    """
    straight = training.train(tone_dataset, root / "straight", preset="tiny", progress=False)
    training.train(tone_dataset, root / "stopped", preset="tiny", max_steps=10, progress=False)
    return root, straight


@pytest.fixture(scope="module")
def runs(tone_dataset, tmp_path_factory):
    """:func:`_train_runs` in a folder of the module."""
    return _train_runs(tone_dataset, tmp_path_factory.mktemp("ckpt"))


def _truncate(path):
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)


def _empty(path):
    path.write_bytes(b"")


def _flip_bit(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [_truncate, _empty, _flip_bit], ids=["truncated", "empty",
                                                                       "bit-flipped"])
def test_resume_skips_a_damaged_newest_checkpoint(tone_dataset, runs, tmp_path, capsys, damage,
                                                  compare_runs_retrying):
    def check(attempt):
        root, straight = (runs if attempt == 0
                          else _train_runs(tone_dataset, tmp_path / f"runs{attempt}"))
        run = tmp_path / f"run{attempt}"
        shutil.copytree(root / "stopped", run)
        newest = run / "checkpoints" / "ckpt-00000010.npz"
        assert training.latest_checkpoint(run) == newest
        damage(newest)
        capsys.readouterr()
        history = training.train(tone_dataset, run, resume=True, progress=False)
        warning = [line for line in capsys.readouterr().err.splitlines() if "damaged" in line]
        assert (len(warning) == 1 and "ckpt-00000010.npz" in warning[0]
                and "Traceback" not in warning[0])
        # Resumed from step 9 (the previous checkpoint) and ended where the straight run did.
        assert history["step"] == list(range(1, 21))
        for name in training.METRIC_NAMES:
            np.testing.assert_allclose(history[name], straight[name], rtol=1e-5, atol=1e-6,
                                       err_msg=name)

    compare_runs_retrying(check)


def test_checksum_catches_changed_arrays_in_a_valid_archive(runs, tmp_path):
    root, _ = runs
    path = tmp_path / "ckpt-00000010.npz"
    shutil.copy(root / "stopped" / "checkpoints" / path.name, path)
    meta = training.verify_checkpoint(path)
    assert len(meta["checksum"]) == 64 and meta["global_step"] == 10
    with np.load(path) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["generator/0"] = arrays["generator/0"] + 1e-3  # zip CRCs stay valid: only the checksum sees it
    np.savez(path, **arrays)
    with pytest.raises(training.CheckpointDamaged, match=r"ckpt-00000010\.npz.*checksum"):
        training.verify_checkpoint(path)
    # A checkpoint from before checksums (no "checksum" in its meta) still loads.
    old_meta = {k: v for k, v in meta.items() if k != "checksum"}
    arrays["__meta__"] = np.frombuffer(json.dumps(old_meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    assert training.verify_checkpoint(path)["global_step"] == 10


def test_generator_falls_back_and_all_damaged_is_a_clear_error(tone_dataset, runs, tmp_path,
                                                               capsys):
    root, _ = runs
    run = tmp_path / "run"
    shutil.copytree(root / "stopped", run)
    checkpoints = sorted((run / "checkpoints").glob("ckpt-*.npz"))
    _truncate(checkpoints[-1])
    _, info = training.load_generator(run, use_ema=False)
    assert info["source"] == str(checkpoints[-2])
    assert "ckpt-00000010.npz" in capsys.readouterr().err
    for path in checkpoints:
        _empty(path)
    with pytest.raises(training.CheckpointDamaged, match=r"all \d+ checkpoints are damaged"):
        training.latest_checkpoint(run, warn=False)
    with pytest.raises(training.RunError, match="damaged"):
        training.train(tone_dataset, run, resume=True, progress=False)
