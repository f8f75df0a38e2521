"""The library's JSON files, read with one-line errors (no TensorFlow here).

Manifests, run configs and run states are read through :func:`read_json_object`,
so that a file that is not what it should be is named with the field that is
wrong, before any heavy import.

Notebook: chapters/01_audio_fundamentals.ipynb
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["read_json_object"]


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
