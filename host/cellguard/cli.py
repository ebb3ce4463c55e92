"""The `cellguard` command line."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import CellguardError

EXIT_ERROR = 1
EXIT_USAGE = 2


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text}")
    return value


def cmd_ports(args: argparse.Namespace) -> int:
    from serial.tools import list_ports

    ports = sorted(list_ports.comports(), key=lambda p: p.device)
    rows = [{"device": p.device, "description": p.description, "hwid": p.hwid} for p in ports]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no serial ports found (a simulated board prints its own port)")
    else:
        for r in rows:
            print(f"{r['device']:24} {r['description']}  [{r['hwid']}]")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .client import BoardClient

    with BoardClient(args.port) as client:
        info = client.hello(timeout_s=args.timeout)
    fields = info.to_dict()
    _emit(fields, args.json, [f"{k:24} {v}" for k, v in fields.items()])
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from .logfile import LogReader
    from .logger import log_board, status_printer

    def show_fault(line: str) -> None:
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[2K")
        print(line, file=sys.stderr, flush=True)

    result = log_board(args.port, args.out, duration_s=args.duration,
                       status=None if args.quiet else status_printer(), on_fault=show_fault)
    with LogReader(args.out) as reader:
        summary = reader.summary()
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(f"logged {result.samples} samples ({result.lost} lost) from {result.info.board} "
              f"to {args.out}")
        for line in summary.lines():
            print("  " + line)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_to_path

    rows = export_to_path(args.file, args.out, board_id=args.board, t_from=args.t_from,
                          t_to=args.t_to)
    if args.out not in (None, "-"):
        print(f"wrote {rows} rows to {args.out}", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot_log

    plot_log(args.file, args.output, board_id=args.board)
    print(f"wrote {args.output}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .logfile import LogReader

    with LogReader(args.file) as reader:
        summary = reader.summary()
    _emit(summary.to_dict(), args.json, summary.lines())
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from .sim import SimulatedBoard

    speed = math.inf if args.speed == 0 else args.speed
    sim = SimulatedBoard(board=args.board, runtime=args.runtime, seed=args.seed, speed=speed,
                         initial_soc_pct=args.soc, ambient_c=args.ambient)
    sim.set_current(args.current)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    with sim:
        print(f"port: {sim.port}", flush=True)
        print(f"board {sim.board['name']}, firmware under {args.runtime}, speed "
              f"{'max' if math.isinf(speed) else f'{speed:g}x'}; Ctrl-C stops", flush=True)
        try:
            while not stop and sim.running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        sim.check()
    return 0


def _connect(port: str, timeout: float = 2.0) -> Any:
    from .client import BoardClient

    client = BoardClient(port)
    try:
        client.hello(timeout_s=timeout)
    except BaseException:
        client.close()
        raise
    return client


def parse_config_value(key: str, text: str) -> int:
    """A value in the key's wire unit ("4200"), or in SI with its unit ("4.2V")."""
    from .client import key_unit

    wire, si, scale = key_unit(key)
    t = text.strip().replace(" ", "")
    if si and t.lower().endswith(si.lower()):
        number, factor = t[: -len(si)], scale
    elif si == "°C" and t.lower().endswith("c"):
        number, factor = t[:-1], scale
    elif wire and t.lower().endswith(wire):
        number, factor = t[: -len(wire)], 1.0
    else:
        number, factor = t, 1.0
    try:
        value = float(number) * factor
    except ValueError:
        raise CellguardError(
            f"not a value for {key}: {text!r} (give {wire}, e.g. 4200, or {si}, e.g. 4.2{si})"
        ) from None
    if abs(value - round(value)) > 1e-6:
        raise CellguardError(f"{key} takes whole {wire}: {text!r} is {value:g} {wire}")
    return round(value)


def _emit(data: Any, as_json: bool, lines: Sequence[str]) -> None:
    """Print ``data`` as JSON, or ``lines`` for a person."""
    print(json.dumps(data, indent=2) if as_json else "\n".join(lines))


def _entry_row(e: Any) -> dict[str, Any]:
    from .client import key_unit

    _, si, scale = key_unit(e.key)
    return {"key": e.key, "value": e.value, "unit": e.unit, "min": e.min, "max": e.max,
            "si_value": e.value / scale, "si_unit": si}


def _print_entries(entries: list[Any], as_json: bool) -> None:
    rows = [_entry_row(e) for e in entries]

    def line(r: dict[str, Any]) -> str:
        si = f"({r['si_value']:g} {r['si_unit']})" if r["si_unit"] else ""
        return (f"{r['key']:34} {r['value']:>9} {r['unit']:4} {si:16} "
                f"allowed {r['min']}..{r['max']}")

    _emit(rows, as_json, [line(r) for r in rows])


def cmd_config(args: argparse.Namespace) -> int:
    client = _connect(args.port)
    with client:
        if args.action == "dump":
            _print_entries(client.config_dump(), args.json)
        elif args.action == "get":
            _print_entries([client.get_config(args.key)], args.json)
        else:
            value = parse_config_value(args.key, args.value)
            _print_entries([client.set_config(args.key, value, pin=args.pin)], args.json)
    return 0


def cmd_faults(args: argparse.Namespace) -> int:
    client = _connect(args.port)
    with client:
        if args.clear:
            client.clear_faults()
        state = client.fault_state()
    _emit(state, args.json, [f"{k:8} {', '.join(v) or 'none'}" for k, v in state.items()])
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    client = _connect(args.port)
    with client:
        events = client.events()

    def line(e: Any) -> str:
        when = (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.unix_time))
                if e.unix_time else "clock not set")
        return f"{e.index:6} {e.board_time_s:12.1f} s  {when:19}  {e.kind:9} {e.describe()}"

    _emit([e.__dict__ for e in events], args.json, [line(e) for e in events])
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    client = _connect(args.port)
    with client:
        stats = client.stats()
    _emit(stats, args.json, [f"{k:18} {v}" for k, v in stats.items()])
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(out_dir=args.out, runtime=args.runtime, board=args.board, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellguard", description="cellguard BMS host tool")
    p.add_argument("--version", action="version", version=f"cellguard {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("ports", help="list serial ports")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_ports)

    s = sub.add_parser("info", help="ask a board who it is (HELLO -> INFO)")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--timeout", type=_positive, default=2.0, help="seconds to wait (default 2)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("log", help="log telemetry to a SQLite file")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--out", required=True, help="SQLite file to write (appended if it exists)")
    s.add_argument("--duration", type=_positive, help="stop after this many seconds of board time")
    s.add_argument("--quiet", action="store_true", help="no live status line")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=cmd_log)

    s = sub.add_parser("export", help="export a log to CSV")
    s.add_argument("file", help="cellguard SQLite log")
    s.add_argument("--format", choices=["csv"], default="csv", help="output format (csv)")
    s.add_argument("--out", "-o", help="output file (default: standard output)")
    s.add_argument("--board", type=int, help="only this board id")
    s.add_argument("--from", dest="t_from", type=float, help="from this t_s")
    s.add_argument("--to", dest="t_to", type=float, help="up to this t_s")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("plot", help="plot a log to a PNG")
    s.add_argument("file", help="cellguard SQLite log")
    s.add_argument("-o", "--output", required=True, help="PNG file to write")
    s.add_argument("--board", type=int, help="board id (default: the first)")
    s.set_defaults(func=cmd_plot)

    s = sub.add_parser("summary", help="summarise a log")
    s.add_argument("file", help="cellguard SQLite log")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_summary)

    s = sub.add_parser("sim", help="run a simulated board on a pseudo-terminal")
    s.add_argument("--board", default="sim-4s", help="board name or JSON file (default sim-4s)")
    s.add_argument("--runtime", choices=["micropython", "cpython"], default="micropython",
                   help="interpreter for the firmware (default micropython)")
    s.add_argument("--speed", type=float, default=1.0,
                   help="simulated seconds per wall second (0: as fast as possible)")
    s.add_argument("--seed", type=int, default=1, help="plant seed (default 1)")
    s.add_argument("--soc", type=float, default=50.0, help="initial SoC in percent")
    s.add_argument("--ambient", type=float, default=25.0, help="ambient temperature, degC")
    s.add_argument("--current", type=float, default=0.0,
                   help="constant current, A, positive = charging (default 0)")
    s.set_defaults(func=cmd_sim)

    s = sub.add_parser("config", help="read and write the board's configuration")
    s.add_argument("action", choices=["get", "set", "dump"])
    s.add_argument("key", nargs="?", help="configuration key (see `config dump`)")
    s.add_argument("value", nargs="?", help="new value: 4200 (the key's unit) or 4.2V")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--pin", type=int, default=0, help="configuration PIN, if the board has one")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_config)

    s = sub.add_parser("faults", help="show (and clear) the board's faults")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--clear", action="store_true", help="clear latched faults first")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_faults)

    s = sub.add_parser("events", help="read the board's event log")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_events)

    s = sub.add_parser("stats", help="link and control-loop counters of the board")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("demo", help="charge/rest/discharge a simulated board, log and plot it")
    s.add_argument("--out", default="demo", help="output folder (default demo/)")
    s.add_argument("--runtime", choices=["micropython", "cpython"], default="micropython")
    s.add_argument("--board", default="sim-4s")
    s.add_argument("--seed", type=int, default=1)
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is cmd_config:
        if args.action in ("get", "set") and not args.key:
            parser.error(f"config {args.action} needs a KEY")
        if args.action == "set" and args.value is None:
            parser.error("config set needs a KEY and a VALUE")
    try:
        return int(args.func(args))
    except CellguardError as exc:
        print(f"cellguard: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("cellguard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
