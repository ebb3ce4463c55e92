"""The offline analysis commands of the command line: ``export``, ``plot`` and ``report``.

They read a finished (or still growing) log file and never talk to a board.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .errors import CellguardError


def _time(text: str) -> float:
    try:
        from .logdata import parse_time_s  # numpy: loaded only by the offline commands

        return parse_time_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _selection(s: argparse.ArgumentParser, board_help: str) -> None:
    s.add_argument("--board", metavar="ID", help=board_help)
    s.add_argument("--from", dest="t_from", type=_time, metavar="T",
                   help="from this board time t_s (90, 15m, 1.5h, 1:30:00)")
    s.add_argument("--to", dest="t_to", type=_time, metavar="T", help="up to this t_s")


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    result = export(args.file, args.out, args.format, board=args.board, t_from=args.t_from,
                    t_to=args.t_to)
    if args.json and result.out is not None:
        print(json.dumps(result.to_dict(), indent=2))
    elif result.out is not None:
        print(f"wrote {result.rows} rows to {result.out}", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from . import logdata
    from .plot import load_plot_data, write_html, write_png

    if not args.output and not args.html:
        raise CellguardError("give -o FILE.png, --html FILE.html or both")
    data = load_plot_data(args.file, args.board, args.t_from, args.t_to)
    written: list[str] = []
    if args.output:
        write_png(data, args.output)
        written.append(args.output)
    if args.html:
        write_html(data, args.html)
        written.append(args.html)
    s = data.series
    if args.json:
        print(json.dumps({"files": written, "board_id": s.board_id, "board": s.info.board,
                          "unique_id": s.info.unique_id, "samples": len(s),
                          "t_first_s": float(s.t[0]), "t_last_s": float(s.t[-1]),
                          "protections": len(data.protections), "events": len(data.events),
                          "gaps": len(data.gaps)}, indent=2))
    else:
        for path in written:
            print(f"wrote {path}")
    if data.boards_in_log > 1 and args.board is None:
        print(f"note: the log holds {data.boards_in_log} boards; plotted "
              f"{logdata.describe_board(s.board_id, s.info)} (choose one with --board)",
              file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report, render, write_text

    fmt = "json" if args.json else args.format
    if fmt is None:
        fmt = "html" if args.out and args.out.lower().endswith((".html", ".htm")) else "md"
    rep, series = build_report(args.file, args.board, args.t_from, args.t_to)
    text = render(rep, series, fmt)
    if args.out in (None, "-"):
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        write_text(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def add_commands(sub: Any) -> None:
    """Add ``export``, ``plot`` and ``report`` to the subcommand parsers ``sub``."""
    board_help = "only this board: a board id, unique id or board name (default: all)"
    s = sub.add_parser("export", help="export a log to CSV or Parquet (SI units)")
    s.add_argument("file", help="cellguard SQLite log")
    s.add_argument("--format", choices=["csv", "parquet"], default="csv",
                   help="output format (default csv)")
    s.add_argument("--out", "-o", help="output file (default: standard output; CSV only)")
    _selection(s, board_help)
    s.add_argument("--json", action="store_true",
                   help="with -o: print what was written (file, rows, columns) as JSON")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("plot", help="plot a log to a PNG and/or an interactive HTML page")
    s.add_argument("file", help="cellguard SQLite log")
    s.add_argument("-o", "--output", help="PNG file to write (or .svg/.pdf)")
    s.add_argument("--html", metavar="FILE", help="interactive page to write (works offline)")
    _selection(s, "board id, unique id or name (default: the first board)")
    s.add_argument("--json", action="store_true", help="print what was plotted as JSON")
    s.set_defaults(func=cmd_plot)

    s = sub.add_parser("report", help="a run summary to hand in (Markdown, HTML or JSON)")
    s.add_argument("file", help="cellguard SQLite log")
    s.add_argument("--format", choices=["md", "html", "json"],
                   help="md (default), html (self-contained) or json; -o FILE.html picks html")
    s.add_argument("--out", "-o", help="output file (default: standard output)")
    _selection(s, board_help)
    s.add_argument("--json", action="store_true", help="the same as --format json")
    s.set_defaults(func=cmd_report)
