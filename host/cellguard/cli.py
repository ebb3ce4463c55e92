"""The `cellguard` command line."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import CellguardError
from .units import DURATION_FORMS, parse_duration, plural, to_json

if TYPE_CHECKING:
    from .link.client import BoardClient

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "done",
    EXIT_ERROR: "refused or failed: one line `cellguard: error: ...` on standard error (a port "
                "that does not exist, is busy or has no board; a file that is not a log; a "
                "value the board refuses; `hil`: a test failed)",
    EXIT_USAGE: "usage error: an unknown option, a missing or malformed argument, options "
                "that do not go together (argparse's message and the command's usage)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C) where a command does not end cleanly by itself "
                      "(`log`, `monitor` and `sim` stop on Ctrl-C and exit 0)",
}
"""What each exit status of `cellguard` means (docs/cli.md lists them)."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be greater than 0 (and finite): {text}")
    return value


def _between(lo: float, hi: float, unit: str = "") -> Callable[[str], float]:
    """An argparse type: a number from ``lo`` to ``hi`` (NaN and infinities refused)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if math.isnan(value):
            raise argparse.ArgumentTypeError(f"not a number: {text!r}")
        if not lo <= value <= hi or math.isinf(value):
            if math.isinf(lo) and math.isinf(hi):
                raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
            if math.isinf(hi):
                raise argparse.ArgumentTypeError(f"must be {lo:g}{unit} or more, not {text}")
            raise argparse.ArgumentTypeError(f"must be between {lo:g} and {hi:g}{unit}, "
                                             f"not {text}")
        return value

    if math.isinf(lo) and math.isinf(hi):
        parse.type_name = "finite number"  # type: ignore[attr-defined]
    elif math.isinf(hi):
        parse.type_name = f"number >= {lo:g}{unit}"  # type: ignore[attr-defined]
    else:
        parse.type_name = f"number {lo:g}..{hi:g}{unit}"  # type: ignore[attr-defined]
    return parse


_finite = _between(-math.inf, math.inf)


def _ambient(text: str) -> float:
    from .sim.board import AMBIENT_RANGE_C  # only when the option is given

    return _between(*AMBIENT_RANGE_C, " °C")(text)


def _speed(text: str) -> float:
    try:
        return _between(0.0, math.inf)(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (0: as fast as possible)") from None


def _duration(text: str) -> float:
    """A duration greater than 0, in any form :func:`cellguard.units.parse_duration` takes."""
    if text.strip().startswith("-"):
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text}")
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text}")
    return value


def cmd_ports(args: argparse.Namespace) -> int:
    from .link.ports import command

    return command(args)


def cmd_monitor(args: argparse.Namespace) -> int:
    from .views.monitor import command

    return command(args)


def cmd_build(args: argparse.Namespace) -> int:
    from .deploy.build import command

    return command(args)


def cmd_deploy(args: argparse.Namespace) -> int:
    from .deploy.deploy import command

    return command(args)


def cmd_signing_key(args: argparse.Namespace) -> int:
    from .deploy.signing import command

    return command(args)


def _check_deploy(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.lock and args.dry_run:
        parser.error("--lock writes a key to the board; a --dry-run writes nothing")


def cmd_info(args: argparse.Namespace) -> int:
    from .link.client import BoardClient

    with BoardClient(args.port) as client:
        info = client.hello(timeout_s=args.timeout)
        mode = _mode_line(client)
    fields = info.to_dict()
    _emit(fields, args.json, [f"{k:24} {', '.join(v) if isinstance(v, list | tuple) else v}"
                              for k, v in fields.items()] + [f"{'mode':24} {mode}"])
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    from .link.client import BoardClient
    from .link.locking import lock

    with BoardClient(args.port) as client:
        key = lock(client, rotate=args.rotate)
        assert client.info is not None
        print(f"board {client.info.unique_id} on {args.port} locked with key {key.key_id}; "
              f"the key is in {client.keys.folder}")
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    from .link.client import BoardClient
    from .link.locking import ask_for_presence, unlock

    with BoardClient(args.port) as client:
        ask_for_presence(client)
        unlock(client)
        assert client.info is not None
        print(f"board {client.info.unique_id} on {args.port} is in open mode: any host "
              "with the port may change it")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from .link.audit import SeenHeads, check_board, describe

    client = _connect(args.port)
    with client:
        check = check_board(client, SeenHeads(client.keys.folder))
    lines = []
    for e in check.entries:
        when = _utc(e.unix_time) if e.unix_time else "clock not set"
        lines.append(f"{e.index:6}  {when:19}  {describe(e)}")
    kept = (f"records {check.oldest}-{check.total - 1} of {check.total}" if check.total
            else "no records")
    if check.ok:
        start = ("from the board's first record" if check.first_link_checked else
                 f"from record {check.oldest} on (older ones made room)")
        lines.append(f"chain holds: {kept}, checked {start}")
    _emit({"total": check.total, "oldest": check.oldest, "chain_ok": check.ok,
           "breaks": check.breaks, "records": [e.as_dict() for e in check.entries]},
          args.json, lines)
    for b in check.breaks:
        print(f"chain BROKEN: {b}", file=sys.stderr)
    return 0 if check.ok else 1


def _mode_line(client: BoardClient) -> str:
    """Who may write to the board (docs/security.md), in words."""
    info = client.info
    assert info is not None
    if not info.locked:
        return "open: any host with the port may change it (`cellguard lock` locks it)"
    try:
        client.board_key()
        held = "the key store holds its key"
    except CellguardError as exc:
        held = f"no key here ({exc.__class__.__name__})"
    return f"locked with key {info.key_id}: writes need the key; {held}"


def cmd_log(args: argparse.Namespace) -> int:
    from .store.logger import run_log_command

    return run_log_command(args.port, args.out, duration_s=args.duration, quiet=args.quiet,
                           as_json=args.json)


def cmd_summary(args: argparse.Namespace) -> int:
    from .store import LogReader

    with LogReader(args.file) as reader:
        summary = reader.summary()
    _emit(summary.to_dict(), args.json, summary.lines())
    return 0


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text}")
    return value


def _cell_number(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"cells count from 1, not {text}")
    return value


def _every(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"keep every Nth sample: N is 1 or more, not {text}")
    return value


def _pin(text: str) -> int:
    value = _whole(text)
    if value > 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"a PIN is at most 4294967295 (32 bits), not {text}")
    return value


def _date(text: str) -> float:
    """A UTC date (YYYY-MM-DD, or an ISO date and time; "today") as Unix time, s."""
    from datetime import UTC, datetime

    if text == "today":
        now = datetime.now(UTC)
        return datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a date is YYYY-MM-DD (UTC), not {text}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def cmd_sim(args: argparse.Namespace) -> int:
    from .sim import SimulatedBoard

    if args.script is None and (args.repeat != 1 or args.exit_at_end):
        raise CellguardError("--repeat and --exit-at-end go with --script FILE")
    if args.virtual:
        return _sim_virtual(args)
    if args.flash is not None:
        raise CellguardError("--flash goes with --virtual")
    if args.silicon:
        raise CellguardError("--silicon goes with --virtual")
    args.board = args.board or "sim-4s"
    if args.plant != "pybamm" and (args.pybamm_model or args.parameter_set):
        raise CellguardError("--pybamm-model and --parameter-set go with --plant pybamm")
    script = _load_sim_script(args)  # before the pty opens
    speed = math.inf if args.speed == 0 else args.speed
    sim = SimulatedBoard(board=args.board, runtime=args.runtime, seed=args.seed, speed=speed,
                         initial_soc_pct=args.soc, ambient_c=args.ambient, link=args.link,
                         plant=args.plant, pybamm_model=args.pybamm_model,
                         parameter_set=args.parameter_set)
    _set_sim_current(sim, args.current)
    runner = None
    if script is not None:
        runner = _start_sim_script(sim, script, args)
        sim.pause()  # until the port is printed: the script starts at board time 0
    stop = _stop_on_sigterm()
    with sim:
        print(f"port: {sim.port}", flush=True)
        if args.link:  # SIGUSR1 pulls the USB cable, SIGUSR2 plugs it back in
            signal.signal(signal.SIGUSR1, lambda *_: sim.unplug())
            signal.signal(signal.SIGUSR2, lambda *_: sim.replug())
            print(f"link: {args.link} (kill -USR1 {os.getpid()} unplugs, -USR2 replugs)",
                  flush=True)
        plant = ""
        if args.plant == "pybamm":
            info = sim.info()
            plant = f", PyBaMM plant ({info['pybamm_model']}, {info['parameter_set']})"
        print(f"board {sim.board['name']}, firmware under {args.runtime}{plant}, speed "
              f"{'max' if math.isinf(speed) else f'{speed:g}x'}; Ctrl-C stops", flush=True)
        sim.resume()
        _serve_sim(sim, runner, args, stop)
        sim.check()
    return 0


def _load_sim_script(args: argparse.Namespace) -> Any:
    from .sim.script import load_script

    return None if args.script is None else load_script(args.script)


def _set_sim_current(sim: Any, amps: float) -> None:
    try:
        sim._check_current(amps)
    except ValueError as exc:
        raise CellguardError(f"--current: {exc}") from None
    sim.set_current(amps)


def _start_sim_script(sim: Any, script: Any, args: argparse.Namespace) -> Any:
    """Attach the script to the board (checked against it first), printing each step
    (a step file) or each pass (a current profile) as it is applied."""
    from .sim.script import PROFILE, Step

    passes = f"/{args.repeat}" if args.repeat else ""

    def show(board: Any, step: Step, pass_index: int) -> None:
        if script.kind != PROFILE:
            print(f"{board.time_s:10.1f} s  line {step.line}: {step.text}", flush=True)
        elif step is script.steps[0]:
            print(f"{board.time_s:10.1f} s  {script.name}: pass {pass_index + 1}{passes}",
                  flush=True)

    return sim.run_script(script, repeat=args.repeat, on_step=show,
                          pause_when_done=args.exit_at_end)


def _stop_on_sigterm() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def _serve_sim(sim: Any, runner: Any, args: argparse.Namespace, stop: threading.Event) -> None:
    """Until Ctrl-C, SIGTERM, the board's end, or the script's end (``end``, or
    ``--exit-at-end``)."""
    reported = False
    try:
        while not stop.is_set() and sim.running:
            if runner is not None and runner.done.is_set():
                if not reported:
                    reported = True
                    print(f"{runner.done_s or 0.0:10.1f} s  script done", flush=True)
                if runner.ended or args.exit_at_end:
                    break
            sim.check()
            time.sleep(0.05 if runner is not None else 0.2)
    except KeyboardInterrupt:
        pass


def _sim_virtual(args: argparse.Namespace) -> int:
    """A virtual dev board on a pty until Ctrl-C (docs/virtual_board.md)."""
    from .boards import load_board
    from .sim.script import ScriptRunner
    from .sim.silicon import Silicon
    from .sim.virtual import VirtualBoard

    plain = {"runtime": "micropython", "link": None, "plant": "ecm"}
    given = [f"--{name}" for name, default in plain.items() if getattr(args, name) != default]
    if given:
        raise CellguardError(f"{', '.join(given)} do not go with --virtual (not yet)")
    if args.speed == 0:
        raise CellguardError("--speed 0 (as fast as possible) does not go with --virtual; "
                             "give a factor such as 10")
    board = args.board or "pico-4s"
    mcu = load_board(board).get("mcu")
    silicon = None
    if args.silicon:
        if mcu not in ("rp2040", "esp32"):
            raise CellguardError(f"board {board!r} has no `mcu` a virtual dev board emulates "
                                 "(rp2040, esp32): choose pico-4s or esp32-4s")
        silicon = Silicon.default(mcu).parsed(args.silicon)
    script = _load_sim_script(args)
    vb = VirtualBoard(board, flash=args.flash, speed=args.speed, seed=args.seed,
                      initial_soc_pct=args.soc, ambient_c=args.ambient, silicon=silicon)
    _set_sim_current(vb, args.current)
    if script is not None:  # every step checked before the board starts
        ScriptRunner(script, repeat=args.repeat).check(vb)
    stop = _stop_on_sigterm()
    with vb:
        print(f"port: {vb.port}", flush=True)
        print(f"virtual board {vb.board['name']} ({vb.board['mcu']}), flash in "
              f"{args.flash or 'a temporary folder'}, speed {args.speed:g}x; Ctrl-C stops",
              flush=True)
        if silicon is not None:
            default = Silicon.default(mcu)
            changed = [f"{name}={getattr(silicon, name)}" for name in Silicon.names()
                       if getattr(silicon, name) != getattr(default, name)]
            print(f"silicon: {', '.join(changed) or 'as the chip'}", flush=True)
        # The script's time 0 is the board's first plant tick from here on.
        runner = None if script is None else _start_sim_script(vb, script, args)
        _serve_sim(vb, runner, args, stop)
        if not vb.running and not stop.is_set():
            raise CellguardError("the virtual board's process stopped")
        vb.check()
    return 0


def _connect(port: str, timeout: float = 2.0) -> Any:
    from .link.client import BoardClient

    client = BoardClient(port)
    try:
        client.hello(timeout_s=timeout)
    except BaseException:
        client.close()
        raise
    return client


def parse_config_value(key: str, text: str) -> int:
    """A value in the key's wire unit ("4200"), or in SI with its unit ("4.2V")."""
    from .config.file import parse_value

    return parse_value(key, text)


def _emit(data: Any, as_json: bool, lines: Sequence[str]) -> None:
    """Print ``data`` as JSON, or ``lines`` for a person."""
    print(to_json(data) if as_json else "\n".join(lines))


def cmd_config(args: argparse.Namespace) -> int:
    from .config.command import run

    return run(args)


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


def cmd_lifetime(args: argparse.Namespace) -> int:
    client = _connect(args.port)
    with client:
        record = client.lifetime()
    fields = dataclasses.asdict(record)
    lines = [f"{k:26} {v}" for k, v in fields.items()
             if k not in ("histogram_s", "words", "last_harmful", "snapshots", "history")]
    lines.append(f"{'histogram_s':26} " + " | ".join(" ".join(str(x) for x in row)
                                                     for row in record.histogram_s))
    for e in record.last_harmful:
        when = _utc(e.unix_time) if e.unix_time else "clock not set"
        lines.append(f"{'harmful event':26} {e.kind} {e.value:g} {e.unit} at "
                     f"{e.operating_s} s of operation ({when})")
    for h in record.snapshots:
        when = _utc(h.unix_time) if h.unix_time else "clock not set"
        lines.append(f"{'health snapshot':26} {h.capacity_ah:.3f} Ah ({h.relearns} relearns), "
                     f"R0 {h.r0_growth_pct:.1f} %, {h.power_w:.0f} W at {h.soc_pct:.0f} % SoC; "
                     f"{h.operating_s} s of operation ({when})")
    if record.history is not None:
        lines.append(f"{'previous lives':26} {record.lives}: {record.history}")
    _emit(fields, args.json, lines)
    return 0


def _utc(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix))


def cmd_commission(args: argparse.Namespace) -> int:
    if args.manufactured is None and args.in_service is None and not args.identity:
        raise CellguardError("give at least one of --manufactured, --in-service, --identity")
    client = _connect(args.port)
    with client:
        client.commission(args.manufactured, args.in_service, args.identity or "", args.pin)
        record = client.lifetime()
    data = {"manufactured": record.manufactured, "in_service": record.in_service,
            "identity": record.identity}
    _emit(data, args.json, [
        f"manufactured {_utc(record.manufactured) if record.manufactured else 'not given'}",
        f"in service   {_utc(record.in_service) if record.in_service else 'not given'}",
        f"identity     {record.identity or 'not given'}"])
    return 0


def cmd_second_life(args: argparse.Namespace) -> int:
    client = _connect(args.port)
    with client:
        info = client.hello()
        if args.confirm != info.unique_id:
            raise CellguardError(f"--confirm must be this board's unique id ({info.unique_id}), "
                                 f"not {args.confirm!r}: a second-life reset is deliberate")
        if info.locked:  # without its key, a new owner holds the presence button
            from .link.locking import ask_for_presence

            ask_for_presence(client)
        client.second_life(args.confirm, args.pin)
        record = client.lifetime()
    history = record.history
    data = {"unique_id": info.unique_id, "lives": record.lives,
            "history": None if history is None else dataclasses.asdict(history)}
    _emit(data, args.json, [
        f"board {info.unique_id} starts life {(record.lives or 0) + 1}; the ended lives' "
        f"totals stay in the record's history",
        "" if history is None else
        f"history: {history.charge_in_ah:.3f} Ah in, {history.charge_out_ah:.3f} Ah out, "
        f"{history.operating_s / 3600:.1f} h of operation"])
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    client = _connect(args.port)
    with client:
        stats = client.stats()

    def shown(value: object) -> object:
        if isinstance(value, dict):  # the sensor chip's bus errors, by kind
            return " ".join(f"{k}={v}" for k, v in value.items())
        return "none (no sensor chip)" if value is None else value

    _emit(stats, args.json, [f"{k:18} {shown(v)}" for k, v in stats.items()])
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(out_dir=args.out, runtime=args.runtime, board=args.board, seed=args.seed,
                    force=args.force)


def cmd_hil(args: argparse.Namespace) -> int:
    from .hil import cli_hil

    return cli_hil(args)


def cmd_characterize(args: argparse.Namespace) -> int:
    from .estimation.characterize import command

    return command(args)


def cmd_estimate(args: argparse.Namespace) -> int:
    from .estimation.estimate import command

    return command(args)


def _time(text: str) -> float:
    """A time on a log's t_s axis (0 allowed), in any form of :func:`parse_duration`."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _selection(s: argparse.ArgumentParser, board_help: str) -> None:
    s.add_argument("--board", metavar="ID", help=board_help)
    s.add_argument("--from", dest="t_from", type=_time, metavar="T",
                   help=f"from this board time t_s: {DURATION_FORMS}")
    s.add_argument("--to", dest="t_to", type=_time, metavar="T",
                   help="up to this t_s (the same forms)")


def cmd_export(args: argparse.Namespace) -> int:
    from .formats.export import export

    def note(text: str) -> None:
        print(f"note: {text}", file=sys.stderr)

    result = export(args.file, args.out, args.format, board=args.board, t_from=args.t_from,
                    t_to=args.t_to, force=args.force, every=args.every, sep=args.sep,
                    decimal=args.decimal, no_row_limit=args.no_row_limit,
                    per_cell=args.per_cell, extra=args.extra,
                    rest_current_a=args.rest_current, min_step_s=args.min_step, note=note)
    if args.json and result.out is not None:
        print(to_json(result.to_dict()))
    elif result.out is not None:
        files = result.extra.get("files") or [result.out]
        data = [f for f in files if not f.endswith(".metadata.json")]
        each = " each" if len(data) > 1 else ""
        print(f"wrote {plural(result.rows, 'row')}{each} to {', '.join(data)}", file=sys.stderr)
        if len(files) > len(data):
            print(f"wrote {plural(len(files) - len(data), 'metadata sidecar')} "
                  "(<file>.metadata.json)", file=sys.stderr)
    return 0


def cmd_passport(args: argparse.Namespace) -> int:
    from .formats.passport import passport

    result = passport(args.file, args.out, args.format, board=args.board, force=args.force,
                      port=args.port)
    if args.json:
        print(to_json(result.to_dict()))
    else:
        source = "the board" if args.port else "a log"
        print(f"wrote the {result.board} {result.unique_id} passport to {result.out} "
              f"({result.unavailable} attributes not available from {source})",
              file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .files import check_outputs
    from .store import query as logdata
    from .views.plot import load_plot_data, write_html, write_png

    check_outputs([args.output, args.html], inputs=[args.file], force=args.force)
    data = load_plot_data(args.file, args.board, args.t_from, args.t_to)
    written: list[str] = []
    if args.output:
        write_png(data, args.output, inputs=[args.file], force=args.force)
        written.append(args.output)
    if args.html:
        write_html(data, args.html, inputs=[args.file], force=args.force)
        written.append(args.html)
    s = data.series
    if args.json:
        print(to_json({"files": written, "board_id": s.board_id, "board": s.info.board,
                       "unique_id": s.info.unique_id, "samples": len(s),
                       "t_first_s": float(s.t[0]), "t_last_s": float(s.t[-1]),
                       "protections": len(data.protections), "events": len(data.events),
                       "gaps": len(data.gaps), "estimates": len(data.estimates)}))
    else:
        for path in written:
            print(f"wrote {path}")
    if data.boards_in_log > 1 and args.board is None:
        print(f"note: the log holds {data.boards_in_log} boards; plotted "
              f"{logdata.describe_board(s.board_id, s.info)} (choose one with --board)",
              file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .files import check_outputs, check_stdout, write_text
    from .views.report import build_report, render

    fmt = "json" if args.json else args.format
    if fmt is None:
        fmt = "html" if args.out and args.out.lower().endswith((".html", ".htm")) else "md"
    if args.out in (None, "-"):
        check_stdout([args.file])
    else:
        check_outputs([args.out], inputs=[args.file], force=args.force)
    rep, series, estimates = build_report(args.file, args.board, args.t_from, args.t_to)
    text = render(rep, series, fmt, estimates)
    if args.out in (None, "-"):
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        write_text(args.out, text, inputs=[args.file], force=args.force)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _force(s: argparse.ArgumentParser) -> None:
    s.add_argument("--force", action="store_true",
                   help="replace an existing output file (never one of the inputs)")


def _check_plot(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.output and not args.html:
        parser.error("give -o FILE.png, --html FILE.html or both")


def _check_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from .config.command import check_args

    check_args(parser, args)


def _add_offline_commands(sub: Any) -> None:
    """``export``, ``plot`` and ``report``: they read a log file and never talk to a board."""
    from .views.outputs import key_list

    board_help = "only this board: a board id, unique id or board name (default: all)"
    s = sub.add_parser("export", help="export a log to CSV, Parquet or the Battery Data "
                                      "Format (BDF; SI units)")
    s.add_argument("file", metavar="LOG", help="cellguard log file (SQLite)")
    s.add_argument("--format", choices=["csv", "parquet", "bdf"], default="csv",
                   help="output format (default csv); bdf: CSV or Parquet by the name of -o "
                        "(FILE.bdf.csv, FILE.bdf.parquet), one board, with a "
                        "FILE.metadata.json sidecar (docs/logging.md)")
    s.add_argument("--out", "-o", help="output file (default: standard output; CSV only)")
    _selection(s, board_help)
    s.add_argument("--every", type=_every, default=1, metavar="N",
                   help="keep the first sample and every Nth after it (default 1: all); BDF "
                        "capacities and energies are still integrated over every sample")
    s.add_argument("--sep", default=",", metavar="SEP",
                   help="CSV column separator: ',' (default), ';' or tab")
    s.add_argument("--decimal", default=".", metavar="MARK",
                   help="CSV decimal mark: '.' (default) or ',' (needs --sep ';' or tab)")
    s.add_argument("--no-row-limit", action="store_true",
                   help="write a CSV longer than a spreadsheet's 1,048,576 rows (refused "
                        "otherwise: use Parquet or --every N)")
    s.add_argument("--per-cell", action="store_true",
                   help="bdf: one file per cell (FILE.cell01.bdf.csv ...) instead of the pack")
    s.add_argument("--extra", action="store_true",
                   help="bdf: add columns beyond BDF, named 'cellguard ...' (SoC, state, "
                        "faults, sequence, step type, cell voltages of a pack file)")
    s.add_argument("--rest-current", type=_positive, metavar="A",
                   help="bdf: below this |current|, A, a sample is at rest (default C/100 of "
                        "the board's capacity, at least 0.02 A)")
    s.add_argument("--min-step", type=_between(0.0, math.inf, " s"), metavar="S",
                   help="bdf: shortest step, s; a shorter run joins the step before "
                        "(default 10)")
    s.add_argument("--json", action="store_true",
                   help=f"with -o: print what was written as JSON ({key_list('export')})")
    _force(s)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("plot", help="plot a log to a PNG and/or an interactive HTML page")
    s.add_argument("file", metavar="LOG", help="cellguard log file (SQLite)")
    s.add_argument("-o", "--output", help="PNG file to write (or .svg/.pdf)")
    s.add_argument("--html", metavar="FILE", help="interactive page to write (works offline)")
    _selection(s, "board id, unique id or name (default: the first board)")
    s.add_argument("--json", action="store_true", help="print what was plotted as JSON")
    _force(s)
    s.set_defaults(func=cmd_plot, usage_check=_check_plot)

    s = sub.add_parser("report", help="a run summary to hand in (Markdown, HTML or JSON)")
    s.add_argument("file", metavar="LOG", help="cellguard log file (SQLite)")
    s.add_argument("--format", choices=["md", "html", "json"],
                   help="md (default), html (self-contained) or json; -o FILE.html picks html")
    s.add_argument("--out", "-o", help="output file (default: standard output)")
    _selection(s, board_help)
    s.add_argument("--json", action="store_true", help="the same as --format json")
    _force(s)
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("passport", help="the pack's Battery Pass performance and durability "
                                        "data (1.2.1) from its board or a log")
    s.add_argument("file", metavar="LOG", nargs="?",
                   help="cellguard log file (SQLite); or --port")
    s.add_argument("--port", "-p", help="read the board's lifetime record instead (open to "
                                        "anyone: no key, no configuration mode)")
    s.add_argument("--out", "-o", required=True, help="output file (passport.json)")
    s.add_argument("--format", choices=["json", "md", "html"], default="json",
                   help="json (the Battery Pass model, default); md or html: a one-page "
                        "health report for a person (a buyer, a technician), the histogram "
                        "drawn")
    s.add_argument("--board", metavar="ID",
                   help="the pack: a board id, unique id or board name (needed when the log "
                        "holds several packs)")
    s.add_argument("--json", action="store_true",
                   help=f"print what was written as JSON ({key_list('passport')})")
    _force(s)
    s.set_defaults(func=cmd_passport)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellguard", description="cellguard BMS host tool")
    p.add_argument("--version", action="version", version=f"cellguard {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("ports", help="list serial ports and the cellguard boards on them")
    s.add_argument("extra", nargs="*", metavar="PORT",
                   help="more ports to probe (a simulated board's pty, a by-id path)")
    s.add_argument("--timeout", type=_duration, default=1.0, metavar="DURATION",
                   help="how long to wait for each board's answer (default 1 s)")
    s.add_argument("--no-probe", action="store_true", help="list only; send nothing")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_ports)

    s = sub.add_parser("monitor", help="live view of a board: cells, faults, link health")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--duration", type=_duration, metavar="DURATION",
                   help="stop after this long, wall time (default: until q or Ctrl-C)")
    s.add_argument("--interval", type=_duration, default=5.0, metavar="DURATION",
                   help="time between snapshots when not on a terminal (default 5 s)")
    s.add_argument("--json", action="store_true",
                   help="print snapshots as JSON lines instead of the live view")
    s.set_defaults(func=cmd_monitor)

    s = sub.add_parser("info", help="ask a board who it is (HELLO -> INFO)")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--timeout", type=_duration, default=2.0, metavar="DURATION",
                   help="how long to wait for the answer (default 2 s)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("lock", help="give a board a key: from then on only this host's "
                       "key store may change it (reads stay open)")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--rotate", action="store_true",
                   help="the board is locked: replace its key with a new one")
    s.set_defaults(func=cmd_lock)

    s = sub.add_parser("unlock", help="put a locked board back in open mode (needs its key)")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.set_defaults(func=cmd_unlock)

    s = sub.add_parser("audit", help="read a board's change log (every write, taken or "
                       "refused) and check its hash chain")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("build", help="compile the firmware a board runs, with its manifest")
    s.add_argument("--board", required=True, metavar="NAME",
                   help="board name (boards/NAME.json) or a board file with an mcu")
    s.add_argument("--out", metavar="DIR",
                   help="output folder (default build/NAME); an existing build there is "
                        "replaced whole")
    s.add_argument("--no-heap", action="store_true",
                   help="skip the heap measurement (MicroPython WebAssembly runtime)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_build)

    s = sub.add_parser("signing-key", help="this host's key for signing builds, and the keys "
                       "whose builds `cellguard deploy` accepts")
    s.add_argument("action", choices=["new", "show", "trust", "list"],
                   help="new: make the signing key; show: print its public key; trust FILE: "
                        "accept builds signed by the public key in FILE; list: the trusted "
                        "keys")
    s.add_argument("file", nargs="?", metavar="FILE",
                   help="trust: a file holding a public key (what `signing-key show` prints)")
    s.add_argument("--force", action="store_true",
                   help="new: make a new key even though one exists (the old one is moved "
                        "aside, never deleted)")
    s.set_defaults(func=cmd_signing_key)

    s = sub.add_parser("deploy", help="build the firmware and put it on a board (A/B slots)")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--board", metavar="NAME",
                      help="build for this board (boards/NAME.json, or a board file with an "
                           "mcu), signed with this host's signing key, and deploy that")
    what.add_argument("--bundle", metavar="DIR",
                      help="deploy this build folder (`cellguard build --out DIR`, a "
                           "release) as it is")
    s.add_argument("--port", required=True, help="the board's serial port")
    s.add_argument("--allow-unsigned", action="store_true",
                   help="deploy a build no trusted key signed (warns; development only); a "
                        "build whose files do not match its manifest is refused all the same")
    s.add_argument("--allow-downgrade", action="store_true",
                   help="deploy a build older than the board's minimum version (the last "
                        "build it confirmed), lowering the minimum to its version; without "
                        "it such a build is refused before anything is written")
    s.add_argument("--lock", action="store_true",
                   help="once the new build runs, lock the board with a key made here (kept "
                        "in the key store, as `cellguard lock`); a locked board keeps its key")
    s.add_argument("--manufactured", type=_date, metavar="DATE",
                   help="the pack's date of manufacture, YYYY-MM-DD (UTC), into its lifetime "
                        "record; the date of the first deploy that gives one is kept")
    s.add_argument("--dry-run", action="store_true",
                   help="list what would change; write nothing (a running firmware is "
                        "stopped to read the flash, then reset)")
    s.add_argument("--json", action="store_true", help="print JSON (no progress bar)")
    s.set_defaults(func=cmd_deploy, usage_check=_check_deploy)

    s = sub.add_parser("log", help="log telemetry of one or more boards to a SQLite file")
    s.add_argument("--port", required=True, action="append",
                   help="serial port or pyserial URL; repeat for more boards (a vanished port "
                        "is retried: prefer stable names such as /dev/serial/by-id/...)")
    s.add_argument("--out", required=True, help="SQLite file to write (appended if it exists)")
    s.add_argument("--duration", type=_duration, metavar="DURATION",
                   help="stop once each connected board logged this much board time "
                        "(default: until Ctrl-C or SIGTERM)")
    s.add_argument("--quiet", action="store_true", help="no live status lines")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=cmd_log)

    _add_offline_commands(sub)

    s = sub.add_parser("summary", help="summarise a log")
    s.add_argument("file", metavar="LOG", help="cellguard log file (SQLite)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_summary)

    s = sub.add_parser("sim", help="run a simulated board on a pseudo-terminal")
    s.add_argument("--board", help="board name or JSON file (default sim-4s; pico-4s with "
                                   "--virtual)")
    s.add_argument("--runtime", choices=["micropython", "cpython"], default="micropython",
                   help="interpreter for the firmware (default micropython)")
    s.add_argument("--speed", type=_speed, default=1.0,
                   help="simulated seconds per wall second (default 1: real time; "
                        "0: as fast as possible)")
    s.add_argument("--seed", type=_whole, default=1, help="plant seed, 0 or more (default 1)")
    s.add_argument("--soc", type=_between(0.0, 100.0), default=50.0,
                   help="initial SoC in percent, 0 to 100 (default 50)")
    s.add_argument("--ambient", type=_ambient, default=25.0,
                   help="ambient temperature, °C, -55 to 125 (default 25)")
    s.add_argument("--current", type=_finite, default=0.0,
                   help="constant current, A, positive = charging (default 0)")
    s.add_argument("--script", metavar="FILE",
                   help="timed steps: a CSV current profile (header t_s,current_a) or a step "
                        "file (`at 90 inject open_wire cell=2`; see docs/simulator.md)")
    s.add_argument("--repeat", type=_whole, default=1, metavar="N",
                   help="play the script N times back to back (0: forever; default 1)")
    s.add_argument("--exit-at-end", action="store_true",
                   help="exit once the script has played (a step file's `end` always exits)")
    s.add_argument("--link", metavar="PATH",
                   help="keep PATH a symlink to the board's pty, re-pointed on replug (a stable "
                        "name like /dev/serial/by-id/...)")
    s.add_argument("--plant", choices=["ecm", "pybamm"], default="ecm",
                   help="the cells: the built-in equivalent circuit (default) or a PyBaMM cell "
                        "(needs `make pybamm-setup`; see docs/simulator.md)")
    s.add_argument("--pybamm-model", choices=["spme", "dfn"],
                   help="with --plant pybamm: the PyBaMM model (default spme; dfn is slower)")
    s.add_argument("--parameter-set", choices=["chen2020", "prada2013", "chayambuka2022"],
                   help="with --plant pybamm: PyBaMM's LG M50 NMC (chen2020, default), A123 "
                        "LFP (prada2013) or NVPF sodium-ion (chayambuka2022) cell")
    s.add_argument("--virtual", action="store_true",
                   help="a virtual dev board instead: MicroPython's REPL on the pty, as a board "
                        "with an `mcu` presents it over USB (default board pico-4s; "
                        "see docs/virtual_board.md)")
    s.add_argument("--flash", metavar="DIR",
                   help="with --virtual: the folder that holds the board's filesystem, kept "
                        "across its resets and restarts (default: a temporary folder)")
    s.add_argument("--silicon", action="append", default=[], metavar="NAME=VALUE",
                   help="with --virtual: change one of the chip's behaviours, such as "
                        "usb_write_timeout_ms=0 or watchdog_survives_soft_reset=off (repeatable; "
                        "see docs/virtual_board.md)")
    s.set_defaults(func=cmd_sim)

    s = sub.add_parser("config", help="read and write the board's configuration")
    s.add_argument("action", choices=["get", "set", "dump", "load", "diff"],
                   help="get KEY, set KEY VALUE, dump [FILE|-] (TOML), load FILE, diff FILE")
    s.add_argument("key", nargs="?", metavar="KEY|FILE",
                   help="configuration key (cell_ov_mv or cell_overvoltage.trip_v), or a file")
    s.add_argument("value", nargs="?",
                   help="new value: 4200 (the key's unit), 4.2V, or a severity word (alarm)")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--pin", type=_pin, default=0, help="configuration PIN, if the board has one")
    s.add_argument("--yes", action="store_true", help="load without asking")
    s.add_argument("--json", action="store_true", help="print JSON")
    _force(s)
    s.set_defaults(func=cmd_config, usage_check=_check_config)

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

    s = sub.add_parser("lifetime", help="the battery's lifetime record from its board: "
                                        "throughput, times, harmful events (open to anyone)")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_lifetime)

    s = sub.add_parser("commission", help="write the pack's date of manufacture, date of "
                                          "putting into service and identity into its "
                                          "lifetime record (each once)")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--manufactured", type=_date, help="date of manufacture, YYYY-MM-DD (UTC)")
    s.add_argument("--in-service", type=_date,
                   help="date of putting into service, YYYY-MM-DD (UTC) or today")
    s.add_argument("--identity", help="pack identity (serial number), up to 24 bytes")
    s.add_argument("--pin", type=_pin, default=0, help="configuration PIN, if the board has one")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_commission)

    s = sub.add_parser("second-life", help="start a new lifetime record for a second life: "
                                           "the ended lives' totals stay as history (logged)")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--confirm", required=True, metavar="UNIQUE_ID",
                   help="the board's unique id (cellguard info shows it), as a confirmation")
    s.add_argument("--pin", type=_pin, default=0, help="configuration PIN, if the board has one")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_second_life)

    s = sub.add_parser("demo", help="charge/rest/discharge a simulated board, log and plot it")
    s.add_argument("--out", default="demo",
                   help="output folder for run.sqlite and run.png (default demo)")
    s.add_argument("--runtime", choices=["micropython", "cpython"], default="micropython",
                   help="interpreter for the firmware (default micropython)")
    s.add_argument("--board", default="sim-4s",
                   help="simulated board: name or JSON file (default sim-4s)")
    s.add_argument("--seed", type=_whole, default=1, help="plant seed, 0 or more (default 1)")
    s.add_argument("--force", action="store_true",
                   help="replace run.sqlite and run.png of an earlier demo in the folder")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("characterize", help="fit a cell model (cell.json) from a pulse test "
                                            "and a low-rate test (docs/cell-model.md)")
    s.add_argument("--input", action="append", required=True, metavar="CSV",
                   help="trace CSV (t_s,current_a,cell1_v[,temp1_c]): an HPPC-style pulse test "
                        "or a low-rate (C/20) test; repeat for several, at several "
                        "temperatures for a temperature axis")
    s.add_argument("--out", required=True, help="cell file to write (cell.json)")
    s.add_argument("--chemistry", choices=["nmc", "lfp", "sodium_ion"],
                   help="the cell's chemistry (default: guessed from the OCV)")
    s.add_argument("--capacity-ah", type=_positive,
                   help="capacity, Ah (default: what the low-rate discharge delivered)")
    s.add_argument("--name", help="the model's name")
    s.add_argument("--initial-soc", type=_between(0.0, 100.0), metavar="PCT",
                   help="SoC at every trace's start (default: a discharge starts full, "
                        "a charge starts where the low-rate discharge ended)")
    s.add_argument("--cell", type=_cell_number, default=1, metavar="N",
                   help="fit cellN_v of a multi-cell trace (default 1)")
    s.add_argument("--validate", action="append", metavar="CSV",
                   help="replay the fitted model over this trace and print its voltage error")
    s.add_argument("--json", action="store_true", help="print JSON")
    _force(s)
    s.set_defaults(func=cmd_characterize)

    s = sub.add_parser("hil", help="run the hardware-in-the-loop suite on a simulated or real "
                                   "board and print a summary table")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--port", help="a real board on this serial port or pyserial URL")
    where.add_argument("--board", help="a simulated board: name or JSON file (default sim-4s)")
    s.add_argument("--runtime", choices=["micropython", "cpython"],
                   help="firmware interpreter of the simulated board (default micropython)")
    s.add_argument("-k", dest="keyword", metavar="EXPR",
                   help="only the tests matching this pytest -k expression")
    s.add_argument("--junitxml", metavar="FILE", help="also write JUnit XML to FILE")
    s.add_argument("--operator", action="store_true",
                   help="real board: ask the operator at this terminal to set plant conditions")
    s.add_argument("--rig", metavar="RIG.toml",
                   help="lab instruments set plant conditions, as this rig file says "
                        "(docs/hil.md); a rig file of emulated instruments on a simulated board")
    s.add_argument("--tests", metavar="DIR",
                   help="run this copy of the suite instead of the source tree's hil_tests/")
    s.set_defaults(func=cmd_hil)

    s = sub.add_parser("estimate", help="run the firmware's state estimator over a recorded "
                       "trace (SoC, health, current limits per row)")
    s.add_argument("--input", required=True, metavar="CSV",
                   help="trace: t_s, current_a (+ = charging), cell1_v.., temp1_c..")
    s.add_argument("--cell", required=True, metavar="JSON", help="cell model (cell.json)")
    s.add_argument("--out", required=True, metavar="CSV",
                   help="where to write the estimates (soc_std_pct: the SoC's 1σ band, "
                        "one standard deviation; -1 with the coulomb baseline)")
    s.add_argument("--initial-soc", type=_between(0.0, 100.0), metavar="PCT",
                   help="start from this SoC (0 to 100) instead of the first sample's OCV")
    s.add_argument("--estimator", choices=("ekf", "coulomb"), default="ekf",
                   help="the model-based filter (default) or the coulomb-counting baseline")
    s.add_argument("--runtime", choices=("cpython", "micropython", "float32"),
                   default="cpython",
                   help="interpreter for the firmware's code (default cpython); float32: "
                        "CPython with every float rounded to single precision, as on an "
                        "RP2040 or ESP32, and says whether the filter's covariance stayed "
                        "positive definite and its numbers finite")
    _force(s)
    s.set_defaults(func=cmd_estimate)
    return p


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's commands by name, in the order they were added."""
    for action in parser._actions:  # argparse keeps no public list of them
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


TYPE_NAMES: dict[Any, str] = {
    _positive: "number > 0",
    _whole: "whole number >= 0",
    _duration: "duration > 0",
    _time: "time",
    _speed: "number >= 0",
    _ambient: "number -55..125 °C",
    _cell_number: "whole number >= 1",
    _every: "whole number >= 1",
    _pin: "whole number 0..4294967295",
    _date: "date YYYY-MM-DD (UTC)",
    int: "integer",
    float: "number",
}
"""How docs/cli.md names an option's type (a new type function belongs here too;
one made by :func:`_between` names itself)."""


def type_name(kind: Any) -> str | None:
    """The name docs/cli.md gives an option's type; None for a type nobody named."""
    return TYPE_NAMES.get(kind) or getattr(kind, "type_name", None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    usage_check = getattr(args, "usage_check", None)
    if usage_check is not None:  # usage errors argparse cannot see by itself: exit 2
        usage_check(subcommands(parser)[args.command], args)
    try:
        return int(args.func(args))
    except CellguardError as exc:
        print(f"cellguard: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("cellguard: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
