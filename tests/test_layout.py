"""The host package's layout: grouped by concern, no import circles, one reader interface.

The last test is the point of ``cellguard.store``'s interface: a second log
backend (here a JSON file, defined only in this test) slots in by subclassing
:class:`~cellguard.store.LogReader`, and ``summary``, ``export``, ``plot`` and
``report`` read it exactly as they read the SQLite log it was copied from.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import pytest
from test_offline import INFO, OTHER, Row, Run, write

from cellguard import cli
from cellguard.link.client import FAULT_BITS, Info
from cellguard.store import Gap, LogEvent, LogReader, Sample, SqliteLogReader

HOST = Path(__file__).resolve().parents[1] / "host"
TOP_LEVEL = {"__init__", "cli", "demo", "errors", "paths", "boards", "files", "units"}
"""The modules that may sit directly in cellguard/: the command line on top and
what every part shares. Everything else lives in a subpackage by concern."""


def _imports(path: Path, module: str, is_package: bool) -> set[str]:
    """Every cellguard module ``module`` imports (also inside functions)."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def import_graph(root: Path = HOST) -> dict[str, set[str]]:
    modules: dict[str, tuple[Path, bool]] = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph = {}
    for name, (path, is_package) in modules.items():
        deps = _imports(path, name, is_package)
        # A package re-exporting its own children is not an edge back into them.
        graph[name] = {d for d in deps if d in modules and d != name
                       and not name.startswith(d + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_in_the_host_package() -> None:
    assert cycles(import_graph()) == []


def test_the_host_package_is_grouped_by_concern() -> None:
    top = {p.stem for p in (HOST / "cellguard").glob("*.py")}
    assert top <= TOP_LEVEL, f"modules loose in cellguard/: {sorted(top - TOP_LEVEL)}"
    for concern in ("link", "store", "formats", "views", "estimation", "hil", "sim", "config"):
        assert (HOST / "cellguard" / concern / "__init__.py").is_file(), concern


# --- a second log backend -------------------------------------------------------------------


class JsonLogReader(LogReader):
    """A log held in one JSON file: what a second backend has to implement, and no more."""

    name = "json-test"
    MAGIC: ClassVar[str] = '{"format": "cellguard-json-test"'

    @classmethod
    def recognises(cls, path: Path) -> bool:
        return path.read_text(errors="replace").startswith(cls.MAGIC)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.data = json.loads(self.path.read_text())

    def close(self) -> None:
        pass

    def meta(self) -> dict[str, str]:
        return dict(self.data["meta"])

    def boards(self) -> list[tuple[int, Info]]:
        return [(b["id"], Info(**b["info"])) for b in self.data["boards"]]

    def board_ports(self) -> dict[int, str]:
        return {b["id"]: b["port"] for b in self.data["boards"]}

    def samples(self, board_id: int | None = None, t_from: float | None = None,
                t_to: float | None = None) -> Iterator[Sample]:
        for s in self.data["samples"]:
            if ((board_id is None or s["board_id"] == board_id)
                    and (t_from is None or s["t_s"] >= t_from)
                    and (t_to is None or s["t_s"] <= t_to)):
                yield Sample(**s)

    def time_span(self, board_ids: Iterable[int]) -> tuple[float, float] | None:
        ids = set(board_ids)
        t = [s["t_s"] for s in self.data["samples"] if s["board_id"] in ids]
        return (min(t), max(t)) if t else None

    def count_samples(self, board_ids: Iterable[int], t_from: float, t_to: float) -> int:
        ids = set(board_ids)
        return sum(1 for s in self.data["samples"]
                   if s["board_id"] in ids and t_from <= s["t_s"] <= t_to)

    def lost(self, board_id: int | None = None) -> int:
        return sum(g.lost for g in self.gaps(board_id, "lost frames"))

    def gaps(self, board_id: int | None = None, reason: str | None = None) -> Iterator[Gap]:
        for g in self.data["gaps"]:
            if (board_id is None or g["board_id"] == board_id) and reason in (None, g["reason"]):
                yield Gap(**g)

    def events(self, board_id: int | None = None, t_from: float | None = None,
               t_to: float | None = None) -> Iterator[LogEvent]:
        for e in self.data["events"]:
            if ((board_id is None or e["board_id"] == board_id)
                    and (t_from is None or e["t_s"] >= t_from)
                    and (t_to is None or e["t_s"] <= t_to)):
                yield LogEvent(**e)

    def estimates(self, board_id: int | None = None) -> Iterator[dict[str, Any]]:
        return iter(())


def copy_to_json(sqlite_log: Path, out: Path) -> Path:
    """The same log, every record, as the JSON backend's file."""
    with SqliteLogReader(sqlite_log) as r:
        data = {
            "format": "cellguard-json-test",
            "meta": r.meta(),
            "boards": [{"id": b, "info": asdict(i), "port": r.board_ports()[b]}
                       for b, i in r.boards()],
            "samples": [asdict(s) for s in r.samples()],
            "gaps": [asdict(g) for g in r.gaps()],
            "events": [asdict(e) for e in r.events()],
        }
    out.write_text(json.dumps(data))
    return out


@pytest.fixture
def json_backend() -> Iterator[None]:
    assert JsonLogReader.name in LogReader.BACKENDS  # registered by defining the class
    yield


def test_a_second_backend_reads_like_the_first(tmp_path: Path, json_backend: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ov = FAULT_BITS["cell_overvoltage"]
    a = Run().add(30, 2000).add(20, -1500, skip=4).rows  # a gap of 4 lost frames
    a += [Row(a[-1].seq + 1 + k, (a[-1].seq + 1 + k) * 1000, faults=ov if k < 5 else 0,
              cells=(4260, 3710)) for k in range(10)]
    b = [Row(k, k * 500, -2000, (3300, 3400, 3500), (200, 210)) for k in range(40)]
    trip = {"event_index": 1, "board_time_ms": a[-10].ms, "kind": "trip", "severity": "fault",
            "fault": ov, "value": 4260, "faults": ov}
    sqlite_log = write(tmp_path / "run.sqlite", (INFO, a), (OTHER, b), events=[(1, trip)])
    json_log = copy_to_json(sqlite_log, tmp_path / "run.json")
    assert type(LogReader(json_log)) is JsonLogReader
    assert type(LogReader(sqlite_log)) is SqliteLogReader

    def run(*args: str) -> str:
        assert cli.main(list(args)) == 0
        return capsys.readouterr().out

    for log in (sqlite_log, json_log):
        assert LogReader(log).summary().lost == 4
    assert run("summary", str(json_log), "--json") == run("summary", str(sqlite_log), "--json")
    assert run("export", str(json_log)) == run("export", str(sqlite_log))
    assert (run("export", str(json_log), "--board", "beef", "--from", "5", "--to", "12")
            == run("export", str(sqlite_log), "--board", "beef", "--from", "5", "--to", "12"))
    from_json = json.loads(run("report", str(json_log), "--json"))
    from_sqlite = json.loads(run("report", str(sqlite_log), "--json"))
    for rep in (from_json, from_sqlite):
        rep.pop("file")
        rep.pop("generated_utc")  # the host's clock when each report was made
    assert from_json == from_sqlite
    assert [e["kind"] for e in from_json["boards"][0]["events"]] == ["trip"]
    plotted = json.loads(run("plot", str(json_log), "-o", str(tmp_path / "j.png"), "--json"))
    assert plotted["samples"] == len(a) and plotted["events"] == 1 and plotted["gaps"] >= 1


def test_a_file_no_backend_knows_is_refused_by_name(tmp_path: Path) -> None:
    from cellguard.errors import LogFileError

    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    with pytest.raises(LogFileError, match="not a cellguard log"):
        LogReader(odd)
    with pytest.raises(LogFileError, match="is a folder"):
        LogReader(tmp_path)
