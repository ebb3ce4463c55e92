"""Where the firmware, board files and the MicroPython runtime live.

In a development checkout (``pip install -e .``) everything is found relative
to the repository root. ``CELLGUARD_ROOT`` overrides that root.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SetupError


def repo_root() -> Path:
    env = os.environ.get("CELLGUARD_ROOT")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2]


def firmware_dir() -> Path:
    return repo_root() / "firmware"


def boards_dir() -> Path:
    return repo_root() / "boards"


MICROPYTHON_PACKAGE = "@micropython/micropython-webassembly-pyscript"


def micropython_mjs() -> Path:
    """The MicroPython WebAssembly module installed by ``npm ci``."""
    path = repo_root() / "node_modules" / MICROPYTHON_PACKAGE / "micropython.mjs"
    if not path.exists():
        raise SetupError(
            f"the MicroPython WebAssembly runtime is not installed ({MICROPYTHON_PACKAGE}); "
            "run `npm ci` in the repository root (make demo and make test do it)"
        )
    return path


def mp_runner() -> Path:
    return Path(__file__).resolve().parent / "sim" / "mp_runner.mjs"
