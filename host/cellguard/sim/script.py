"""Timed steps for the simulated board's plant: a current profile or a step file.

Two formats, told apart by the first line that is not blank or a comment:

- a **current profile**, CSV with the header ``t_s,current_a``: each row sets
  the current (A, positive = charging) from ``t_s`` on (piecewise constant);
- a **step file**, one step per line::

      # comment (also after a step)
      at 0 current -3.0            # A, positive = charging
      at 60 ambient 40             # degC
      at 90 inject open_wire cell=2
      at +30 clear open_wire       # +T: T after the step above
      at 150 cell_temp 1 55        # hold cell 1 at 55 degC ("model": release it)
      at 160 cell_heat 1 2.5       # 2.5 W more heat inside cell 1 (0: none)
      at 200 power_cycle
      at 210 hang 5                # the firmware stops for 5 s (the watchdog resets it)
      at 2h end                    # the run ends: the board pauses (`cellguard sim` exits)

Times (and ``hang``'s duration) take the forms of every duration on the command
line (:func:`cellguard.units.parse_duration`): seconds, or with a unit
(``500ms``, ``90s``, ``2.5min``, ``15m``, ``1h``), or ``M:SS`` / ``H:MM:SS``
(``1:30`` is 90 s); ``+T`` is T after the step above. They never go backwards.
Cells and sensors count from 0, as in the Python API. A step takes effect at
the first control period that starts at or after its time (times count from
when the script was attached: the board's start for ``cellguard sim
--script``). ``repeat`` plays the script that many times back to back (0:
forever), each pass lasting until its last step's time.

:class:`ScriptRunner` is a tick hook (``SimulatedBoard.tick_hooks``);
``SimulatedBoard.run_script`` parses, checks and attaches one. Every problem
with a script is a :class:`ScriptError` naming the file and line.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import CellguardError
from ..units import parse_duration

PROFILE_HEADER = ("t_s", "current_a")
PROFILE = "profile"
STEPS = "steps"

ACTIONS: dict[str, str] = {
    "current": "AMPS",
    "ambient": "CELSIUS",
    "cell_temp": "CELL CELSIUS|model",
    "cell_heat": "CELL WATTS",
    "inject": "FAULT [NAME=VALUE ...]",
    "clear": "[FAULT]",
    "power_cycle": "",
    "hang": "DURATION",
    "end": "",
}
"""Step name -> what follows it."""



class ScriptError(CellguardError):
    """A script that cannot run: the message names the file and the line."""


@dataclass(frozen=True)
class Step:
    t_ms: int  # from the start of a pass
    action: str  # one of ACTIONS
    args: tuple[Any, ...]
    line: int  # 1-based line in the source
    text: str  # the line as written, without its comment

    @property
    def t_s(self) -> float:
        return self.t_ms / 1000.0


@dataclass(frozen=True)
class Script:
    steps: tuple[Step, ...]
    kind: str  # PROFILE or STEPS
    name: str = "<script>"

    @property
    def length_s(self) -> float:
        """One pass: up to the last step's time."""
        return self.steps[-1].t_s if self.steps else 0.0

    def error(self, step: Step, message: str) -> ScriptError:
        return ScriptError(f"{self.name}:{step.line}: {message}")


# -- parsing ---------------------------------------------------------------------------------
def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, not {text!r}")
    return value


def _index(text: str, what: str) -> int:
    if not re.fullmatch(r"\d+", text):
        raise ValueError(f"{what} must be a whole number from 0, not {text!r}")
    return int(text)


def _param_value(text: str) -> int | float:
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return _number(text, "a parameter value")


def _time_ms(text: str, previous_ms: int) -> int:
    after = text.startswith("+")
    try:
        ms = round(parse_duration(text[1:] if after else text) * 1000.0)
    except ValueError as exc:
        raise ValueError(f"{exc}; +T: T after the step above") from None
    return previous_ms + ms if after else ms


def _parse_step(words: list[str], previous_ms: int) -> tuple[int, str, tuple[Any, ...]]:
    if words[0] != "at" or len(words) < 3:
        raise ValueError("a step reads `at TIME ACTION ...` (actions: "
                         f"{', '.join(ACTIONS)})")
    t_ms = _time_ms(words[1], previous_ms)
    action, rest = words[2], words[3:]
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
    usage = f"`at TIME {action} {ACTIONS[action]}`".replace(" `", "`")

    def need(count: int) -> None:
        if len(rest) != count:
            raise ValueError(f"{action} takes {count or 'no'} value{'s' * (count != 1)}: "
                             f"{usage}")

    args: tuple[Any, ...]
    match action:
        case "current" | "ambient":
            need(1)
            args = (_number(rest[0], {"current": "amps", "ambient": "celsius"}[action]),)
        case "hang":
            need(1)
            value = parse_duration(rest[0])
            if value <= 0:
                raise ValueError(f"hang needs seconds above 0, not {rest[0]!r}")
            args = (value,)
        case "cell_temp":
            need(2)
            celsius = None if rest[1] in ("model", "none") else _number(rest[1], "celsius")
            args = (_index(rest[0], "cell"), celsius)
        case "cell_heat":
            need(2)
            args = (_index(rest[0], "cell"), _number(rest[1], "watts"))
        case "inject":
            if not rest:
                raise ValueError(f"inject needs a fault: {usage}")
            params: dict[str, int | float] = {}
            for word in rest[1:]:
                key, eq, value = word.partition("=")
                if not eq or not key or not value:
                    raise ValueError(f"inject parameters read NAME=VALUE, not {word!r}")
                if key in params:
                    raise ValueError(f"inject: {key} given twice")
                params[key] = _param_value(value)
            args = (rest[0], params)
        case "clear":
            if len(rest) > 1:
                raise ValueError(f"clear takes at most one fault: {usage}")
            args = (rest[0] if rest else None,)
        case _:  # power_cycle, end
            need(0)
            args = ()
    return t_ms, action, args


def _parse_row(words: list[str]) -> tuple[int, tuple[Any, ...]]:
    if len(words) != 2:
        raise ValueError(f"a profile row is `t_s,current_a`, not {len(words)} field"
                         f"{'s' * (len(words) != 1)}")
    t_s = _number(words[0], "t_s")
    if t_s < 0:
        raise ValueError(f"t_s must be 0 or more, not {words[0]!r}")
    return round(t_s * 1000.0), (_number(words[1], "current_a"),)


def parse_script(text: str, name: str = "<script>") -> Script:
    """Parse a current profile or a step file (see the module doc)."""
    steps: list[Step] = []
    kind = ""
    previous_ms = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            if not kind:
                fields = [f.strip().lower() for f in line.split(",")]
                if fields[0] == "t_s" or name.lower().endswith(".csv"):
                    if tuple(fields) != PROFILE_HEADER:
                        raise ValueError("a current profile starts with the header "
                                         f"`{','.join(PROFILE_HEADER)}`, not {line!r}")
                    kind = PROFILE
                    continue
                kind = STEPS
            if kind == PROFILE:
                t_ms, args = _parse_row([f.strip() for f in line.split(",")])
                action = "current"
            else:
                t_ms, action, args = _parse_step(line.split(), previous_ms)
            if t_ms < previous_ms:
                raise ValueError(f"time goes backwards: {t_ms / 1000:g} s after "
                                 f"{previous_ms / 1000:g} s")
        except ValueError as exc:
            raise ScriptError(f"{name}:{lineno}: {exc}") from None
        previous_ms = t_ms
        steps.append(Step(t_ms, action, args, lineno, line))
    if not steps:
        raise ScriptError(f"{name}: no steps (a current profile needs rows under its "
                          f"`{','.join(PROFILE_HEADER)}` header)")
    return Script(tuple(steps), kind, name)


def load_script(path: str | Path) -> Script:
    """Read and parse a script file; any problem is a :class:`ScriptError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"cannot read script {p}: {exc}") from None
    return parse_script(text, str(p))


# -- running ---------------------------------------------------------------------------------
class ScriptTarget(Protocol):
    """What a script drives: the plant controls of a simulated board
    (:class:`~cellguard.sim.board.SimulatedBoard` is one). Scripts know the
    board only through this, so the board can import its scripts."""

    plant: Any
    time_ms: int

    @property
    def time_s(self) -> float: ...
    def set_current(self, amps: float) -> None: ...
    def set_ambient(self, celsius: float) -> None: ...
    def set_cell_temperature(self, cell: int, celsius: float | None) -> None: ...
    def set_cell_heat(self, cell: int, watts: float) -> None: ...
    def inject(self, name: str, **params: float) -> None: ...
    def clear(self, name: str | None = None) -> None: ...
    def power_cycle(self) -> None: ...
    def hang(self, seconds: float) -> None: ...
    def pause(self) -> None: ...
    def wait_for(self, event: threading.Event, timeout_s: float | None = None) -> bool: ...
    def _check_index(self, key: str, value: Any, count: int) -> None: ...
    def _check_current(self, amps: float) -> None: ...
    def _check_ambient(self, celsius: float) -> None: ...
    def _check_injection(self, name: str, params: dict[str, Any]) -> dict[str, Any]: ...
    def _check_name(self, name: str) -> None: ...


StepCallback = Callable[[ScriptTarget, "Step", int], None]


class ScriptRunner:
    """A tick hook that plays a :class:`Script` on a simulated board.

    Times count from the first tick the runner sees. ``done`` is set once every
    step of every pass has been applied, or at an ``end`` step, which also
    pauses a free-running board (``pause_when_done``: pause it when done in any
    case); ``done_s`` is the board time then. ``on_step(sim, step,
    pass_index)`` is called after each step, under the board's lock.
    """

    def __init__(self, script: Script, repeat: int = 1,
                 on_step: StepCallback | None = None, pause_when_done: bool = False) -> None:
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 0:
            raise ScriptError(f"repeat must be a whole number, 0 for forever, not {repeat!r}")
        if repeat != 1 and script.steps[-1].t_ms <= 0:
            raise ScriptError(f"{script.name}: repeat needs a script whose last step comes "
                              "after 0 s (a pass lasts until its last step)")
        self.script = script
        self.repeat = repeat
        self.on_step = on_step
        self.pause_when_done = pause_when_done
        self.done = threading.Event()
        self.done_s: float | None = None
        self.ended = False  # an `end` step was reached
        self.start_ms: int | None = None
        self.applied = 0  # steps applied so far
        self._pass = 0
        self._index = 0

    @property
    def duration_s(self) -> float:
        """Simulated seconds from the start to the last step (inf: forever)."""
        if self.repeat == 0:
            return math.inf
        return self.script.length_s * self.repeat

    @property
    def pass_index(self) -> int:
        """The pass being played (0-based)."""
        return self._pass

    def check(self, sim: ScriptTarget) -> None:
        """Check every step against the board (cells, sensors, faults and their
        parameters) without changing anything; raise ScriptError on the first bad one."""
        n_cells = len(sim.plant.cells)
        for step in self.script.steps:
            try:
                match step.action:
                    case "current":
                        sim._check_current(step.args[0])
                    case "ambient":
                        sim._check_ambient(step.args[0])
                    case "cell_temp" | "cell_heat":
                        sim._check_index("cell", step.args[0], n_cells)
                    case "inject":
                        sim._check_injection(step.args[0], dict(step.args[1]))
                    case "clear" if step.args[0] is not None:
                        sim._check_name(step.args[0])
            except ValueError as exc:
                raise self.script.error(step, str(exc)) from None

    def __call__(self, sim: ScriptTarget) -> None:
        if self.done.is_set():
            return
        if self.start_ms is None:
            self.start_ms = sim.time_ms
        now_ms = sim.time_ms - self.start_ms
        steps = self.script.steps
        pass_ms = steps[-1].t_ms
        while not self.done.is_set():
            step = steps[self._index]
            if self._pass * pass_ms + step.t_ms > now_ms:
                return
            self._apply(sim, step)
            self.applied += 1
            if self.on_step is not None:
                self.on_step(sim, step, self._pass)
            if step.action == "end":
                self.ended = True
            self._index += 1
            if self._index == len(steps):
                self._index = 0
                self._pass += 1
            if self.ended or self._pass == self.repeat:
                self._finish(sim)

    def _finish(self, sim: ScriptTarget) -> None:
        if self.done.is_set():
            return
        self.done_s = sim.time_s
        if self.ended or self.pause_when_done:
            sim.pause()
        self.done.set()

    def _apply(self, sim: ScriptTarget, step: Step) -> None:
        a = step.args
        try:
            match step.action:
                case "current":
                    sim.set_current(a[0])
                case "ambient":
                    sim.set_ambient(a[0])
                case "cell_temp":
                    sim.set_cell_temperature(a[0], a[1])
                case "cell_heat":
                    sim.set_cell_heat(a[0], a[1])
                case "inject":
                    sim.inject(a[0], **a[1])
                case "clear":
                    sim.clear(a[0])
                case "power_cycle":
                    sim.power_cycle()
                case "hang":
                    sim.hang(a[0])
                case "end":
                    pass
        except ValueError as exc:
            raise self.script.error(step, str(exc)) from None

    def wait(self, sim: ScriptTarget, timeout_s: float | None = None) -> bool:
        """Block until the script is done: a lock-step board is advanced, a
        free-running one waited for. True if done (False: timed out)."""
        if self.repeat == 0 and not any(s.action == "end" for s in self.script.steps):
            raise ScriptError("a script repeated forever (repeat=0) is never done")
        return sim.wait_for(self.done, timeout_s)
