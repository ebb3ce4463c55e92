"""Writing the files the commands make, without ever losing one.

Every output is written to a temporary name beside its target and renamed into
place, so a failure (a full disk, Ctrl-C, an exception half-way) never leaves a
half-written file where the user expects a whole one.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .errors import LogFileError


def write_text(out: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``out`` through a temporary file renamed into place."""
    path = Path(out)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise LogFileError(f"cannot write {out}: {exc.strerror or exc}") from None
