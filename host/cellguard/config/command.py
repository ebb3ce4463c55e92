"""`cellguard config get|set|dump|load|diff`: the board's configuration, typed.

Keys are the board's (``cell_ov_mv``) or a configuration file's
(``cell_overvoltage.trip_v``); values are the key's wire unit (``4200``), SI with
the unit (``4.2V``), a file key's SI unit when bare (``cell_overvoltage.trip_v
4.2``), and a severity also as a word (``alarm``). See config_file.py for the
file format.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any

from ..errors import CellguardError
from ..link.client import CONFIG_KEYS, BoardClient, ConfigEntry, Info
from ..units import to_json, wire_unit_name
from . import file as cf

FILE_ACTIONS = ("dump", "load", "diff")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors (exit 2) that argparse cannot see by itself."""
    action = args.action
    if action in ("get", "set") and not args.key:
        parser.error(f"config {action} needs a KEY")
    if action == "set" and args.value is None:
        parser.error("config set needs a KEY and a VALUE")
    if action in ("load", "diff") and not args.key:
        parser.error(f"config {action} needs a FILE")
    if action in FILE_ACTIONS and args.value is not None:
        parser.error(f"config {action} takes one FILE, not {args.value!r} as well")
    if action == "get" and args.value is not None:
        parser.error("config get takes one KEY")
    if args.yes and action != "load":
        parser.error("--yes goes with config load")
    if getattr(args, "force", False) and (action != "dump" or args.key in (None, "-")):
        parser.error("--force goes with config dump FILE")


def resolve_key(text: str) -> tuple[str, cf.FileKey | None]:
    """(the board's key, its file key) for a board key or a file key ``table.name``."""
    if text in CONFIG_KEYS:
        return text, cf.file_key(text)
    table, _, name = text.partition(".")
    fk = cf.BY_PATH.get((table, name))
    if fk is not None:
        return fk.wire_key, fk
    known = [*CONFIG_KEYS, *(fk.path for fk in cf.LAYOUT)]
    close = difflib.get_close_matches(text, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise CellguardError(
        f"unknown configuration key {text!r}{hint} (`cellguard config dump --port PORT` lists "
        "every key with its value and range)")


def parse_key_value(key_text: str, text: str) -> tuple[str, int]:
    """The board's key and the wire value for what a person typed."""
    key, fk = resolve_key(key_text)
    if fk is not None and key_text != key and fk.kind == cf.NUMBER:
        try:  # a bare number for a file key is in the file's unit (SI)
            return key, fk.to_wire(float(text))
        except ValueError:
            pass
        except cf.BeyondWireRange:
            raise
        except cf.ConfigFileError as exc:
            raise CellguardError(str(exc)) from None
    return key, cf.parse_value(key, text)


# -- entries as rows and lines -----------------------------------------------------------
def entry_unit(key: str) -> str:
    """The key's wire unit as people write it: mV, mA, 0.1 °C, ms, mAh, samples, or ""."""
    if key.endswith("_debounce"):
        return "samples"
    suffix = key.rsplit("_", 1)[-1]
    return wire_unit_name(suffix) if suffix in ("mv", "ma", "dc", "ms", "mah") else ""


def entry_row(e: ConfigEntry) -> dict[str, Any]:
    from ..link.client import key_unit

    _, si, scale = key_unit(e.key)
    fk = cf.file_key(e.key)
    row: dict[str, Any] = {"key": e.key, "value": e.value, "unit": entry_unit(e.key),
                           "min": e.min, "max": e.max, "si_value": e.value / scale,
                           "si_unit": si}
    if fk is not None:
        row["file_key"] = fk.path
        if fk.kind == cf.SEVERITY:
            row["severity"] = fk.to_file(e.value)
    return row


def _columns(e: ConfigEntry) -> tuple[str, str, str, str, str]:
    """(key, value, unit, SI form, allowed range) of one entry."""
    fk = cf.file_key(e.key)
    if fk is not None and fk.kind in (cf.NUMBER, cf.SEVERITY):
        shown = f"({fk.describe(e.value)})"
        allowed = f"allowed {e.min}..{e.max} ({fk.range_text(e.min, e.max)})"
    else:
        shown, allowed = "", f"allowed {e.min}..{e.max}"
    unit = entry_unit(e.key)
    if unit == "samples" and e.value == 1:
        unit = "sample"
    return e.key, str(e.value), unit, shown, allowed


def entry_lines(entries: list[ConfigEntry]) -> list[str]:
    """One line per entry, in columns: key, value (right-aligned), unit, SI form, range."""
    rows = [_columns(e) for e in entries]
    if not rows:
        return []
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    unit = (lambda u: f" {u:{w[2]}}") if w[2] else (lambda u: "")
    return [f"{k:{w[0]}}  {v:>{w[1]}}{unit(u)} {si:{w[3]}}  {allowed}"
            for k, v, u, si, allowed in rows]


def entry_line(e: ConfigEntry) -> str:
    return entry_lines([e])[0]


def print_entries(entries: list[ConfigEntry], as_json: bool) -> None:
    if as_json:
        print(to_json([entry_row(e) for e in entries]))
    else:
        print("\n".join(entry_lines(entries)))


# -- the command ---------------------------------------------------------------------------
def _connect(port: str) -> tuple[BoardClient, Info]:
    from ..link.locking import ask_for_presence

    client = BoardClient(port)
    ask_for_presence(client)
    try:
        info = client.hello()
    except BaseException:
        client.close()
        raise
    return client, info


def _note_origin(f: cf.ConfigFile, info: Info) -> None:
    uid = f.board.get("unique_id")
    if uid is not None and str(uid) != info.unique_id:
        print(f"note: {f.path} was dumped from board {f.board.get('name', '?')} ({uid}); "
              f"this is {info.board} ({info.unique_id})", file=sys.stderr)


def _confirm(question: str) -> bool:
    sys.stderr.write(question)
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        return False
    return answer.strip().lower() in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    action = args.action
    if action == "dump" and args.key not in (None, "-"):
        cf.check_writable(args.key, force=args.force)  # say so before talking to the board
    config_file = cf.read_file(args.key) if action in ("load", "diff") else None
    # The key and the value are judged before the port is opened; a value beyond
    # what any board holds is refused once the board has said what it allows.
    key = resolve_key(args.key)[0] if action == "get" else ""
    value, beyond = 0, None
    if action == "set":
        try:
            key, value = parse_key_value(args.key, args.value)
        except cf.BeyondWireRange as exc:
            beyond = exc
    client, info = _connect(args.port)
    with client:
        if action == "get":
            print_entries([client.get_config(key)], args.json)
            return 0
        if beyond is not None:
            raise CellguardError(f"{beyond}; {_allowed(client, beyond.key)}") from None
        if action == "set":
            print_entries([client.set_config(key, value, pin=args.pin)], args.json)
            return 0
        entries = client.config_dump()
        if action == "dump":
            return _dump(args, entries, info)
        assert config_file is not None
        _note_origin(config_file, info)
        changes = cf.diff(config_file.values, entries)
        if action == "diff":
            return _show_diff(args, config_file, changes, info)
        return _load(args, client, config_file, changes, info)


def _allowed(client: BoardClient, key: str) -> str:
    """What the board allows for ``key`` now, for a refusal."""
    e = client.get_config(key)
    fk = cf.file_key(key)
    si = f" ({fk.range_text(e.min, e.max)})" if fk is not None and fk.kind == cf.NUMBER else ""
    return f"the board allows {e.min}..{e.max} {entry_unit(key)}".rstrip() + si


def _dump(args: argparse.Namespace, entries: list[ConfigEntry], info: Info) -> int:
    if args.key is None:
        print_entries(entries, args.json)
        return 0
    text = cf.dump_text(entries, info)
    if args.key == "-":
        sys.stdout.write(text)
        return 0
    cf.write_file(args.key, text, force=args.force)
    if args.json:
        print(to_json({"file": args.key, "keys": len(entries), "board": info.board,
                          "unique_id": info.unique_id}))
    else:
        print(f"wrote {len(entries)} keys of board {info.board} ({info.unique_id}) to "
              f"{args.key}")
    return 0


def _show_diff(args: argparse.Namespace, f: cf.ConfigFile, changes: list[cf.Change],
               info: Info) -> int:
    if args.json:
        print(to_json([c.to_dict() for c in changes]))
    elif not changes:
        print(f"no differences: board {info.board} has every value of {f.path} "
              f"({len(f.values)} keys)")
    else:
        print(f"{len(changes)} of {len(f.values)} keys differ (board -> {f.path}):")
        for c in changes:
            print("  " + c.line())
    return 0


def _load(args: argparse.Namespace, client: BoardClient, f: cf.ConfigFile,
          changes: list[cf.Change], info: Info) -> int:
    if not changes:
        if args.json:
            print(to_json({"changes": [], "written": [], "refused": []}))
        else:
            print(f"nothing to write: board {info.board} already has every value of {f.path}")
        return 0
    out = sys.stderr if args.json else sys.stdout
    print(f"{len(changes)} of {len(f.values)} keys differ (board -> {f.path}):", file=out)
    for c in changes:
        print("  " + c.line(), file=out)
    out.flush()
    if not args.yes:
        if not sys.stdin.isatty():
            raise CellguardError(
                f"not writing {len(changes)} changes without confirmation: standard input "
                f"is not a terminal; check them with `config diff` and pass --yes")
        if not _confirm(f"write {len(changes)} keys to board {info.board} "
                        f"({info.unique_id})? [y/N] "):
            raise CellguardError("cancelled: nothing written")
    written, refused = cf.apply_changes(client, changes, pin=args.pin)
    if args.json:
        print(to_json({"changes": [c.to_dict() for c in changes],
                          "written": [c.key for c in written],
                          "refused": [r.to_dict() for r in refused]}))
    else:
        print(f"wrote {len(written)} of {len(changes)} keys to board {info.board}")
    for r in refused:
        print(f"cellguard: refused: {r.line()}", file=sys.stderr)
    if refused:
        print(f"cellguard: error: the board refused {len(refused)} of {len(changes)} keys "
              f"(the others were written)", file=sys.stderr)
        return 1
    return 0
