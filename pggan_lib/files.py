"""The library's files: written atomically, read with one-line errors (no TensorFlow here).

Every file a run, a study or a dataset records is written through
:func:`atomic_write` (JSON through :func:`write_json`), so that a crash leaves
the old file or the new one, never half of one. Manifests, run configs and run
states are read through :func:`read_json_object`, so that a file that is not
what it should be is named with the field that is wrong, before any heavy import.

Notebook: chapters/01_audio_fundamentals.ipynb
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write", "write_json", "read_json_object"]


def _fsync_dir(path):
    """Make a rename durable (POSIX); a no-op where directories can't be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any],
                 suffix: str = ".tmp") -> Path:
    """Write ``path`` via a temporary file in the same folder, fsync, ``os.replace``.

    A crash at any moment leaves either the old file or the new one, never a
    half-written file (``os.replace`` is atomic within a file system). The file
    gets the permissions that ``open()`` would give it (the umask's).

    Args:
        path: The file to (re)write; its folder is created when missing.
        write: ``write(tmp_path)`` must create the temporary file.
        suffix: Suffix of the temporary file (some writers choose the format by it).

    Returns:
        ``path`` as a Path.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.",
                               suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        # mkstemp makes 0600; use what open() would
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, value: Any, allow_nan: bool = True) -> Path:
    """Write ``value`` as indented JSON, atomically (:func:`atomic_write`).

    Args:
        path: The file.
        value: JSON-ready value; other objects (paths, numpy scalars) are written as ``str``.
        allow_nan: False refuses NaN and infinities (strict JSON for committed results).

    Returns:
        ``path`` as a Path.
    """
    text = json.dumps(value, indent=1, default=str, allow_nan=allow_nan) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_json_object(path: str | os.PathLike, required: tuple = (),
                     error: type[Exception] = ValueError) -> dict[str, Any]:
    """A JSON file that must hold an object with the ``required`` fields.

    Args:
        path: The file.
        required: Field names it must have.
        error: Exception class raised (the caller's own, so that its command
            line catches it).

    Returns:
        The object as a dict.

    Raises:
        ``error``: One line naming the file and what is wrong (unreadable, not
            JSON with the parser's line and column, not an object, a missing field).
    """
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as problem:
        raise error(f"{path}: cannot be read ({' '.join(str(problem).split())})") from None
    except json.JSONDecodeError as problem:
        raise error(f"{path}: not valid JSON ({problem.msg} at line {problem.lineno}, "
                    f"column {problem.colno})") from None
    if not isinstance(value, dict):
        raise error(f"{path}: expected a JSON object, found {type(value).__name__}")
    missing = [name for name in required if name not in value]
    if missing:
        raise error(f"{path}: missing field {missing[0]!r} (the file is damaged or from "
                    f"another program)")
    return value
