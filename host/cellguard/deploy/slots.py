"""The A/B slots on a board's flash, from the host's side (docs/firmware.md, "Slots").

A board's flash holds the stable loader ``/main.py``, the boot record ``/slots.json`` and
one build per slot folder (``/a/``, ``/b/``: ``board.json``, ``manifest.json``,
``cellguard_fw/*.mpy``). A deploy writes the new build into the slot the record does not
run, then makes the one atomic step: the record gains ``"trial": <slot>``
(:func:`switch_source`, run on the board). ``main.py`` boots the trial once; its first
full control-loop pass confirms it, else the next boot falls back.
"""

from __future__ import annotations

from typing import Any

RECORD = "/slots.json"
RECORD_NEW = "/slots.new"
SLOTS = ("a", "b")
LOADER = "main.py"  # at the root: outside the slots


def running_slot(record: dict[str, Any]) -> str:
    """The slot the record's confirmed build sits in ("" = the root, a board set up by hand)."""
    active = record.get("active", "")
    return active if isinstance(active, str) else ""


def target_slot(record: dict[str, Any]) -> str:
    """The slot a deploy writes into: never the one whose build is confirmed."""
    return "b" if running_slot(record) == "a" else "a"


def switch_record(record: dict[str, Any]) -> dict[str, str]:
    """The record after the switch: the confirmed build stays the fallback, the new one is
    on trial."""
    return {"active": running_slot(record), "trial": target_slot(record)}


def slot_path(slot: str, path: str) -> str:
    """Where a build's file goes on the board (the loader stays at the root)."""
    if path == LOADER or not slot:
        return "/" + path
    return f"/{slot}/{path}"


def switch_source(record: dict[str, str]) -> str:
    """MicroPython source that writes ``record`` as the boot record in one atomic step:
    written whole beside it, then renamed over it (LittleFS renames atomically; where a
    rename cannot replace a file the old record is removed first and ``main.py`` reads
    ``/slots.new`` when ``/slots.json`` is missing)."""
    text = "{" + ", ".join(f'"{k}": "{v}"' for k, v in sorted(record.items())) + "}"
    return (
        "import os\n"
        f"with open({RECORD_NEW!r}, 'w') as f:\n"
        f"    f.write({text!r})\n"
        "try:\n"
        f"    os.rename({RECORD_NEW!r}, {RECORD!r})\n"
        "except OSError:\n"
        f"    os.remove({RECORD!r})\n"
        f"    os.rename({RECORD_NEW!r}, {RECORD!r})\n"
    )
