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


def minimum(record: dict[str, Any]) -> str:
    """The oldest firmware version the board may boot (``"min"``: the version of the last
    build it confirmed; "" = none recorded). ``main.py`` refuses a slot whose manifest
    says an older ``firmware_version`` (docs/firmware.md, "Verified at boot")."""
    floor = record.get("min", "")
    return floor if isinstance(floor, str) else ""


def version_key(version: str) -> tuple[int, ...]:
    """A firmware version as the board compares it: dotted integers, part by part
    ("0.10.0" is above "0.9.1"). ValueError for anything else."""
    return tuple(int(p) for p in version.split("."))


def is_downgrade(version: str, record: dict[str, Any]) -> bool:
    """Whether the board would refuse ``version`` as a rollback (older than its minimum;
    a version or minimum that is not dotted integers is refused there too)."""
    floor = minimum(record)
    if not floor:
        return False
    try:
        return version_key(version) < version_key(floor)
    except ValueError:
        return True


def switch_record(record: dict[str, Any], lower_minimum_to: str | None = None
                  ) -> dict[str, str]:
    """The record after the switch: the confirmed build stays the fallback, the new one is
    on trial; the minimum version carries over, or is lowered to ``lower_minimum_to`` (a
    downgrade the person deploying asked for: ``cellguard deploy --allow-downgrade``)."""
    out = {"active": running_slot(record), "trial": target_slot(record)}
    floor = minimum(record) if lower_minimum_to is None else lower_minimum_to
    if floor:
        out["min"] = floor
    return out


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
