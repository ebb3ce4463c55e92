"""Generate the command reference (docs/cli.md) from the `cellguard` argument parser.

    .venv/bin/python tools/gen_cli_reference.py          # rewrite docs/cli.md
    .venv/bin/python tools/gen_cli_reference.py --check  # exit 1 if it is stale

Everything on the page comes from the code: the commands, their arguments,
types, choices, defaults and help from ``cellguard.cli.build_parser()``; the
exit statuses from ``cellguard.cli.EXIT_CODES``; the forms of a duration from
``cellguard.units``; the JSON layouts from ``cellguard.views.outputs``.
``tests/test_cli_reference.py`` fails while the page is out of date.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host"))

from cellguard import cli, units  # noqa: E402
from cellguard.views import outputs  # noqa: E402

DOC_PATH = ROOT / "docs" / "cli.md"
COMMAND = ".venv/bin/python tools/gen_cli_reference.py"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    if action.option_strings:
        return action.dest.upper()
    return action.dest


def _usage_part(action: argparse.Action) -> str:
    """One argument as the usage line shows it."""
    if not action.option_strings:
        name = _metavar(action)
        if action.nargs == "?":
            return f"[{name}]"
        if action.nargs == "*":
            return f"[{name} ...]"
        if action.nargs == "+":
            return f"{name} [{name} ...]"
        return name
    flag = min(action.option_strings, key=len)  # the short form, as argparse's usage does
    text = flag if action.nargs == 0 else f"{flag} {_metavar(action)}"
    return text if action.required else f"[{text}]"


def usage(name: str, parser: argparse.ArgumentParser) -> str:
    """`cellguard NAME ...`: options first, then positionals, as argparse prints them.

    Built here rather than by argparse, whose line wrapping follows the terminal
    and whose layout changes between Python versions."""
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    grouped: dict[int, list[argparse.Action]] = {}
    required: set[int] = set()
    for group in parser._mutually_exclusive_groups:
        for a in group._group_actions:
            grouped[id(a)] = group._group_actions
            if group.required:
                required.add(id(a))
    parts: list[str] = []
    done: set[int] = set()
    for a in [a for a in actions if a.option_strings] + [a for a in actions
                                                          if not a.option_strings]:
        if id(a) in done:
            continue
        members = grouped.get(id(a), [a])
        done.update(id(m) for m in members)
        if len(members) > 1:
            inner = " | ".join(_usage_part(m).strip("[]") for m in members)
            parts.append(f"({inner})" if id(a) in required else f"[{inner}]")
        else:
            parts.append(_usage_part(a))
    return f"cellguard {name} " + " ".join(parts)


def _value(action: argparse.Action) -> str:
    """What the argument takes."""
    if action.nargs == 0:
        return "flag"
    if action.choices is not None:
        return "one of " + ", ".join(f"`{c}`" for c in action.choices)
    kind = "text" if action.type is None else (cli.type_name(action.type) or getattr(
        action.type, "__name__", "value").strip("_").replace("_", " "))
    if action.type in (cli._duration, cli._time):
        kind += " ([forms](#durations-and-times))"
    if isinstance(action, argparse._AppendAction):
        kind += "; repeatable"
    if action.nargs == "*":
        kind += "; any number"
    return kind


def _default(action: argparse.Action) -> str:
    if action.required and not (not action.option_strings and action.nargs in ("?", "*")):
        return "required"
    if action.nargs == 0:
        return "off"
    if action.default is None or action.default == argparse.SUPPRESS:
        return "—"
    default = action.default
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    if action.type is cli._duration:
        return f"{default} s"
    return f"`{default}`"


def _argument(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{_metavar(action)}`"
    names = ", ".join(f"`{o}`" for o in action.option_strings)
    return names if action.nargs == 0 else f"{names} {_metavar(action)}"


def command_section(name: str, parser: argparse.ArgumentParser, summary: str) -> list[str]:
    lines = [f"## `cellguard {name}`", "", summary[:1].upper() + summary[1:] + ".", "",
             "```", usage(name, parser), "```", "",
             "| argument | takes | default | meaning |", "|---|---|---|---|"]
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    positionals = [a for a in actions if not a.option_strings]
    for a in positionals + [a for a in actions if a.option_strings]:
        lines.append(f"| {_cell(_argument(a))} | {_cell(_value(a))} | {_cell(_default(a))} | "
                     f"{_cell(a.help or '')} |")
    for group in parser._mutually_exclusive_groups:
        names = " and ".join(f"`{min(a.option_strings, key=len)}`"
                             for a in group._group_actions)
        lines += ["", f"{names} do not go together" + (
            ": give one of them." if group.required else ".")]
    for out in outputs.outputs_of(name):
        lines += ["", *outputs.render_markdown(out)]
    return [*lines, ""]


def _duration_lines() -> list[str]:
    units_text = ", ".join(f"`{u}`" for u in units.DURATION_UNITS)
    return [
        "## Durations and times", "",
        "Every option that takes a duration or a time (`--duration`, `--timeout`, "
        "`--interval`, `--from`, `--to`; also the `at` times of a `sim --script` step "
        "file) takes the same forms:", "",
        f"- a number of seconds with an optional unit ({units_text}; any case): "
        "`90`, `90s`, `1500ms`, `15m`, `1.5h`, `2d`;",
        "- `M:SS`, two fields: minutes and seconds (`1:30` is 90 s, `90:00` is 90 min);",
        "- `H:MM:SS`, three fields: hours, minutes, seconds (`1:30:00` is 5400 s).", "",
        "In the clock forms every field after the first is below 60 and only the seconds "
        "may have decimals (`0:00:01.5`). Anything else is a usage error (exit 2) that "
        "names the forms. `--from` and `--to` are board time `t_s` of the log (seconds "
        "since the first sample of each connection); `log --duration` counts board time "
        "(wall time on a real board), `monitor --duration` wall time.", "",
    ]


def _json_lines() -> list[str]:
    by_digits: dict[int, list[str]] = {}
    for suffix, digits in units.JSON_DECIMALS:
        by_digits.setdefault(digits, []).append(f"`{suffix}`")
    rows = [f"| {', '.join(sfx)} | {d} |" for d, sfx in by_digits.items()]
    return [
        "## JSON output", "",
        "`--json` prints data instead of text wherever a command's output is data; the "
        "layouts are listed with each command below (checked against what the commands "
        "print by `tests/test_cli_reference.py`). Values are in SI units (V, A, °C, s, Ah, "
        "Wh), SoC in percent, current positive when charging; the unit is the end of the "
        "key's name. Floats are rounded to the resolution of that unit: one digit finer "
        "than the wire's (1 mV, 1 mA, 0.1 °C, 1 ms, 0.01 %), so a mean keeps a digit. "
        "Values in a list or object under a key take its unit (`cells_v`, "
        f"`percentiles_mv`); other floats get {units.JSON_DEFAULT_DECIMALS} decimals. "
        "NaN and infinities are printed as `null`.", "",
        "| key ends with | decimals |", "|---|---|", *rows, "",
    ]


def render() -> str:
    parser = cli.build_parser()
    commands = cli.subcommands(parser)
    helps = {a.dest: a.help or "" for a in parser._subparsers._group_actions[0]._choices_actions}
    lines = [
        "# Command reference", "",
        f"<!-- Generated by `{COMMAND}`; do not edit by hand. -->", "",
        "Every `cellguard` command with all its arguments, generated from the argument "
        "parser (`cellguard.cli.build_parser()`) by `tools/gen_cli_reference.py`; "
        "`tests/test_cli_reference.py` fails while this page is out of date. "
        "[host-tools.md](host-tools.md) says what to do with them, task by task.", "",
        "```", "cellguard [--version] [-h] COMMAND ...", "cellguard COMMAND -h    "
        "# the same help for one command", "```", "",
        "| command | what it does |", "|---|---|",
    ]
    lines += [f"| [`{n}`](#cellguard-{n}) | {_cell(helps.get(n, ''))} |" for n in commands]
    lines += ["", "## Exit status", "", "| status | meaning |", "|---|---|"]
    lines += [f"| {code} | {_cell(text)} |" for code, text in cli.EXIT_CODES.items()]
    lines += [""]
    lines += _duration_lines()
    lines += _json_lines()
    for name, sub in commands.items():
        lines += command_section(name, sub, helps.get(name, ""))
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write docs/cli.md from the cellguard parser.")
    ap.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    ap.add_argument("--out", type=Path, default=DOC_PATH, help="the page (default docs/cli.md)")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        old = args.out.read_text() if args.out.is_file() else ""
        if old == text:
            print(f"{args.out} is up to date")
            return 0
        diff = difflib.unified_diff(old.splitlines(), text.splitlines(), str(args.out),
                                    "generated", lineterm="", n=1)
        print("\n".join(list(diff)[:40]))
        print(f"{args.out} is out of date: run `{COMMAND}`")
        return 1
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
