"""The firmware's file-touching modules, pointed at a flash model under CPython.

The firmware writes its files through each module's own ``open`` and ``os``
(``events``, ``latches``, ``lifetime``, ``life_admin``); in the host's process those
names are patched to a :class:`cellguard.sim.flash.FlashModel`. One list of the
modules, so a new one that touches files is patched everywhere (the test fixture,
``benchmarks/flash_budget.py``, the simulated life)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

FILE_MODULES = ("admin", "app", "events", "latches", "lifetime", "life_admin")
"""``cellguard_fw`` modules that open, write, rename or remove files."""

_ABSENT = object()


def file_modules() -> list[ModuleType]:
    """The file-touching modules of the ``cellguard_fw`` on ``sys.path`` (an earlier
    firmware, such as a benchmark's baseline, may lack some)."""
    found = []
    for name in FILE_MODULES:
        try:
            found.append(importlib.import_module(f"cellguard_fw.{name}"))
        except ImportError:
            continue
    return found


def mount_flash(fs: Any) -> Callable[[], None]:
    """Make ``fs`` (a FlashModel) every file-touching module's ``open`` and ``os``;
    return the function that puts back what they had."""
    saved = []
    for module in file_modules():
        for name, value in (("open", fs.open), ("os", fs)):
            saved.append((module, name, module.__dict__.get(name, _ABSENT)))
            setattr(module, name, value)

    def unmount() -> None:
        for module, name, value in reversed(saved):
            if value is _ABSENT:
                module.__dict__.pop(name, None)
            else:
                setattr(module, name, value)
        saved.clear()

    return unmount
