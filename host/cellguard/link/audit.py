"""The board's change log (``cellguard audit``): read it, check its chain, say where it breaks.

Every write the board takes or refuses is one record (``protocol.messages.AuditRecord``,
32 bytes); each record carries the first 8 bytes of the SHA-256 of the record before
(record 0: of the board's unique id), so a record changed, removed or put in between
breaks the chain at the next one. The board keeps its newest 128 to 256 records.

The chain alone cannot stop someone with the REPL from rewriting the whole log with a
new chain. A host that has read the log before remembers the newest record it saw
(its index and hash, in the key store's folder): a log rewritten since then no longer
holds that record as it was, and :func:`verify` says so.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..protocol.messages import (
    AUDIT_RECORD_BYTES,
    BY_ID,
    AuditRecord,
    NakError,
)

if TYPE_CHECKING:
    from .client import BoardClient

CHAIN_BYTES = 8
NAK_NAMES: dict[int, str] = {v: str(k) for k, v in NakError.encmapping.items()}


@dataclass(frozen=True)
class AuditEntry:
    """One record of the change log, as the board keeps it."""

    index: int
    unix_time: int  # Unix time, s (0: the board's clock was not set)
    key_id: int  # 0: a plain write (open mode, or refused for want of AUTH)
    request: str  # the write's message name
    result: str  # "accepted", or the NAK error the board refused it with
    config_key: int
    old: int
    new: int
    repeats: int
    previous: bytes  # CHAIN_BYTES of the SHA-256 of the record before
    raw: bytes

    @property
    def accepted(self) -> bool:
        return self.result == "accepted"

    def digest(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "unix_time": self.unix_time, "key_id": self.key_id,
                "request": self.request, "result": self.result,
                "config_key": self.config_key, "old": self.old, "new": self.new,
                "repeats": self.repeats, "previous": self.previous.hex()}


def parse_records(data: bytes) -> list[AuditEntry]:
    """Records from AUDIT pages' bytes (whole records only)."""
    if len(data) % AUDIT_RECORD_BYTES:
        raise ValueError(f"{len(data)} bytes is not a whole number of "
                         f"{AUDIT_RECORD_BYTES}-byte records")
    out = []
    for at in range(0, len(data), AUDIT_RECORD_BYTES):
        raw = bytes(data[at:at + AUDIT_RECORD_BYTES])
        r = AuditRecord.parse(raw)
        spec = BY_ID.get(r.request_type)
        out.append(AuditEntry(
            r.index, r.unix_time, r.key_id, spec.name if spec else f"0x{r.request_type:02x}",
            "accepted" if r.result == 0 else NAK_NAMES.get(r.result, f"error {r.result}"),
            r.config_key, r.old, r.new, r.repeats, bytes(r.previous), raw))
    return out


@dataclass
class AuditCheck:
    """What :func:`verify` found: ``breaks`` empty means the chain holds."""

    entries: list[AuditEntry]
    total: int
    oldest: int
    breaks: list[str]
    first_link_checked: bool  # record 0 is kept and chained to the unique id

    @property
    def ok(self) -> bool:
        return not self.breaks


def verify(entries: Sequence[AuditEntry], unique_id: str, total: int,
           remembered: tuple[int, str] | None = None) -> list[str]:
    """Where the chain of ``entries`` (oldest first) breaks, in words; empty if it holds.
    ``remembered``: (index, SHA-256 hex) of a record this host saw before."""
    breaks: list[str] = []
    for before, entry in itertools.pairwise(entries):
        if entry.index != before.index + 1:
            breaks.append(f"record {entry.index} follows record {before.index}: "
                          f"{entry.index - before.index - 1} missing or reordered")
        elif entry.previous != before.digest()[:CHAIN_BYTES]:
            breaks.append(f"record {entry.index} does not chain to record {before.index}: "
                          f"record {before.index} was changed, or {entry.index} put in")
    if entries and entries[0].index == 0:
        seed = hashlib.sha256(unique_id.encode()).digest()[:CHAIN_BYTES]
        if entries[0].previous != seed:
            breaks.append(f"record 0 does not chain to board {unique_id}: a log from "
                          "another board, or record 0 changed")
    if entries and entries[-1].index + 1 != total:
        breaks.append(f"the board says it logged {total} records, the last one read is "
                      f"{entries[-1].index}")
    if remembered is not None:
        index, digest = remembered
        seen = next((e for e in entries if e.index == index), None)
        if index >= total:
            breaks.append(f"this host saw record {index} before; the board now has "
                          f"only {total}: the log was cut back or replaced")
        elif seen is not None and seen.digest().hex() != digest:
            breaks.append(f"record {index} is not the one this host read before: the log "
                          "was rewritten since")
    return breaks


class SeenHeads:
    """The newest record this host has read from each board (index and SHA-256), in
    ``<folder>/<unique id>.audit`` (the key store's folder: private to the user)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, unique_id: str) -> Path:
        if not unique_id.isalnum():
            raise ValueError(f"not a board's unique id: {unique_id!r}")
        return self.folder / f"{unique_id}.audit"

    def get(self, unique_id: str) -> tuple[int, str] | None:
        try:
            data = json.loads(self._path(unique_id).read_text())
            return int(data["index"]), str(data["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, unique_id: str, entry: AuditEntry) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(unique_id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"index": entry.index, "sha256": entry.digest().hex()}))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


def check_board(client: BoardClient, heads: SeenHeads | None) -> AuditCheck:
    """Read the change log of the board on ``client``, check its chain (and against the
    newest record ``heads`` remembers), then remember the newest record read, if the
    chain holds."""
    info = client.hello()
    total, oldest, data = client.audit_log()
    entries = parse_records(data)
    remembered = heads.get(info.unique_id) if heads is not None else None
    breaks = verify(entries, info.unique_id, total, remembered)
    if heads is not None and entries and not breaks:
        heads.put(info.unique_id, entries[-1])
    return AuditCheck(entries, total, oldest, breaks,
                      bool(entries) and entries[0].index == 0)


def describe(entry: AuditEntry) -> str:
    """One line for a person: what was asked, by which key, and what came of it."""
    what = entry.request.upper()
    if entry.request == "set_config":
        from ..protocol.messages import ConfigKey

        names = {v: str(k) for k, v in ConfigKey.encmapping.items()}
        what += f" {names.get(entry.config_key, entry.config_key)} {entry.old} -> {entry.new}"
    elif entry.request in ("time_sync", "clear_faults", "set_key") and entry.accepted:
        what += f" {entry.old} -> {entry.new}"
    who = f"key {entry.key_id}" if entry.key_id else "no key"
    times = f" x{entry.repeats}" if entry.repeats > 1 else ""
    return f"{what} ({who}): {entry.result}{times}"
