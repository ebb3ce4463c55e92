"""Mutation testing of the safety path with mutmut (pinned in pyproject.toml).

    python tools/mutation.py                  # every target module, then the table
    python tools/mutation.py --module contactor --module latches
    python tools/mutation.py --retest build/mutation/results.json   # survivors only
    python tools/mutation.py --report build/mutation/results.json   # table only

The working tree is never mutated: the repository's files (tracked and untracked,
not ignored) are copied to a temporary folder and mutmut runs there, with that
copy's ``firmware/`` first on ``PYTHONPATH`` so the tests import the mutated
firmware. A crash leaves at worst a mutated file in the temporary copy.

Each module is tested by the safety tests that exercise it (``TARGETS``), under
CPython, stopping at the first failure. For ``app.py`` only the output and
protection logic is mutated (``APP_SCOPE``). A surviving mutant that cannot
change behaviour is listed in ``tests/mutation_equivalent.toml`` with the reason;
the report counts it as equivalent, not survived. Score: (killed + timeout) /
(mutants - equivalent).

Results go to ``build/mutation/results.json`` (one row per mutant: module, line
number, original and mutated line, status) and the table is printed.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FW = "firmware/cellguard_fw"
EQUIVALENT_FILE = "tests/mutation_equivalent.toml"
RESULTS = ROOT / "build" / "mutation" / "results.json"
TEST_TIMEOUT_S = 60  # per test (pytest-timeout): a mutant that loops forever is caught

# The one MicroPython run: Measurement.update (with the front end's conversions)
# under heap_lock, so a mutant that allocates on the safety path (a float from
# `/` instead of `//`) is caught where CPython cannot see it. Last in its lists:
# -x stops at the first failure, so only mutants the CPython tests miss run it.
HEAP_LOCKED = "tests/test_firmware_micropython.py::test_measurement_update_allocates_nothing"

# module -> the tests that kill its mutants (CPython, fast, and HEAP_LOCKED).
TARGETS: dict[str, list[str]] = {
    "protection": ["tests/test_protection.py", "tests/test_safety_mutants.py"],
    "contactor": ["tests/test_contactor.py", "tests/test_safety_mutants.py",
                  "tests/test_protection.py"],
    "latches": ["tests/test_latches.py", "tests/test_flash_policy.py",
                "tests/test_safety_mutants.py"],
    "measurement": ["tests/test_protection.py", "tests/test_safety_mutants.py", HEAP_LOCKED],
    "frontend": ["tests/test_frontend.py", "tests/test_safety_mutants.py", HEAP_LOCKED],
    "app": ["tests/test_safety_mutants.py", "tests/test_protection.py",
            "tests/test_flash_policy.py", "tests/test_requests.py", "tests/test_board_main.py"],
}

# app.py: the output and protection logic only (whole functions, and the
# "protect" part of ``step`` between its "# protect" and "# estimate" comments).
APP_FUNCTIONS = ("_drive_output", "_report_changes", "clear_faults", "output_closed")
APP_STEP_MARKS = ("# protect", "# estimate")


def module_path(module: str) -> str:
    return f"{FW}/{module}.py"


def app_scope(source: str) -> set[int]:
    """0-based line indexes of app.py that are mutated."""
    lines: set[int] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in APP_FUNCTIONS:
            lines.update(range(node.lineno - 1, node.end_lineno or node.lineno))
        if isinstance(node, ast.FunctionDef) and node.name == "step":
            text = source.split("\n")
            body = range(node.lineno - 1, node.end_lineno or node.lineno)
            start = next(i for i in body if text[i].strip() == APP_STEP_MARKS[0])
            end = next(i for i in body if text[i].strip() == APP_STEP_MARKS[1])
            lines.update(range(start, end))
    return lines


_SCOPE: dict[str, set[int]] = {}


def in_scope(module: str, source: str, line_index: int) -> bool:
    if module != "app":
        return True
    if source not in _SCOPE:
        _SCOPE[source] = app_scope(source)
    return line_index in _SCOPE[source]


# -- the mutants, without running anything -------------------------------------
def mutants(module: str, root: Path = ROOT, text: bool = False) -> list[dict]:
    """Every mutant mutmut makes of ``module`` (in scope): line number, index on
    the line, the enclosing class or function, the original line and its
    occurrence (the n-th mutant with that line and index in that function).
    With ``text``, the mutated line too (one parse per mutant: slow)."""
    from mutmut import ALL, Context, mutate

    path = root / module_path(module)
    source = path.read_text()
    ctx = Context(source=source, filename=str(path), mutation_id=ALL, dict_synonyms=[])
    mutate(ctx)
    where = enclosing(source)
    scope = app_scope(source) if module == "app" else None
    out = []
    seen: dict[tuple[str, str, int], int] = {}
    for mid in ctx.performed_mutation_ids:
        if scope is not None and mid.line_number not in scope:
            continue
        m = {"module": module, "line_number": mid.line_number + 1, "index": mid.index,
             "where": where.get(mid.line_number + 1, "<module>"), "line": mid.line.strip()}
        same = (m["where"], m["line"], m["index"])
        seen[same] = m["occurrence"] = seen.get(same, 0) + 1
        if text:
            m["mutant"] = mutant_text(root, m)
        out.append(m)
    return out


def mutate_module(root: Path, m: dict) -> tuple[Path, str, str, int]:
    """Mutant ``m`` of its module in the copy at ``root``: the file, its source,
    the mutated source and how many mutations were made (1 when it was found)."""
    from mutmut import Context, RelativeMutationID, mutate

    path = root / module_path(m["module"])
    source = path.read_text()
    line = source.split("\n")[m["line_number"] - 1]
    ctx = Context(source=source, filename=str(path), dict_synonyms=[],
                  mutation_id=RelativeMutationID(line, m["index"], m["line_number"] - 1))
    mutated, n = mutate(ctx)
    return path, source, mutated, n


def mutant_text(root: Path, m: dict) -> str:
    """The mutated line of mutant ``m`` (stripped)."""
    _, source, mutated, _ = mutate_module(root, m)
    return changed_line(source, mutated, m["line_number"] - 1)


def enclosing(source: str) -> dict[int, str]:
    """Line number -> the qualified name of the innermost class or function around it."""
    names: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                for n in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                    names[n] = name
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return names


def changed_line(source: str, mutated: str, line_index: int) -> str:
    a = source.split("\n")
    b = mutated.split("\n")
    if len(a) != len(b):  # a deleted or added line: say what was there
        return f"<{len(b) - len(a)} lines>"
    return b[line_index].strip()


def apply_mutant(root: Path, m: dict) -> str:
    """Write mutant ``m`` into the copy at ``root``; return the original source."""
    path, source, mutated, n = mutate_module(root, m)
    if n != 1:
        raise ValueError(f"mutant not found: {m!r}")
    path.write_text(mutated)
    return source


# -- equivalent mutants -------------------------------------------------------
def load_equivalent(root: Path = ROOT) -> list[dict]:
    """The reviewed list: ``[[equivalent]]`` tables with module, where (the class
    or function), line (stripped), index (mutmut's number of the mutant on that
    line), mutant (the mutated line, for the reader; checked by the smoke test),
    reason, and optionally occurrence (the n-th such mutant in that function;
    default 1)."""
    path = root / EQUIVALENT_FILE
    if not path.exists():
        return []
    data = tomllib.loads(path.read_text())
    rows = data.get("equivalent", [])
    for row in rows:
        for field in ("module", "where", "line", "index", "mutant", "reason"):
            if not str(row.get(field, "")).strip():
                raise ValueError(f"{EQUIVALENT_FILE}: an entry has no {field}: {row!r}")
    return rows


def key(m: dict) -> tuple[str, str, str, int, int]:
    """What names a mutant across edits elsewhere in its module (the index is
    the mutant's number on its line: fixed for a given line and mutmut version)."""
    return (m["module"], m["where"], m["line"], m["index"], m.get("occurrence", 1))


# -- the copy and the run ------------------------------------------------------
def copy_repo(dest: Path, exclude: tuple[str, ...] = ()) -> None:
    """The working tree's files (tracked and untracked, not ignored) into ``dest``,
    less ``exclude`` (paths relative to the repository)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for name in files:
        src = ROOT / name
        if not name or not src.is_file() or name in exclude:  # deleted but still tracked
            continue
        out = dest / name
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out)
    if (ROOT / "node_modules").is_dir():  # the MicroPython runtime (npm ci), not copied
        (dest / "node_modules").symlink_to(ROOT / "node_modules", target_is_directory=True)


def runner_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy / "firmware") + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def test_command(module: str, root: Path) -> list[str]:
    """The pytest command for ``module``'s tests (those present under ``root``)."""
    tests = [t for t in TARGETS[module] if (root / t.split("::")[0]).exists()]
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
            "-o", f"timeout={TEST_TIMEOUT_S}", "-o", "addopts=", *tests]


def run_tests(copy: Path, module: str) -> int:
    """0 when the module's tests pass in the copy."""
    return subprocess.run(test_command(module, copy), cwd=copy, env=runner_env(copy),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


# What mutmut runs in the copy: the tests of the module being mutated (chosen in
# the pre_mutation hook), any failure (also a collection error) exiting 1, which
# is what mutmut reads as "killed".
_RUNNER = '''\
import subprocess, sys
sys.exit(0 if subprocess.run(sys.argv[1:]).returncode == 0 else 1)
'''

_CONFIG = '''\
import json, sys
from pathlib import Path
sys.path.insert(0, "tools")
import mutation

_ONLY = json.loads(%r)  # {module: [[line_number, index], ...]} or None: every mutant


def pre_mutation(context):
    module = context.filename.replace("\\\\", "/").rsplit("/", 1)[-1][:-3]
    if not mutation.in_scope(module, context.source, context.current_line_index):
        context.skip = True
        return
    if _ONLY is not None:
        wanted = _ONLY.get(module, [])
        if [context.current_line_index + 1, context.mutation_id.index] not in wanted:
            context.skip = True
            return
    context.config.test_command = " ".join(
        [sys.executable, "mutation_runner.py"] + mutation.test_command(module, Path(".")))
'''


def run_mutmut(copy: Path, modules: list[str], only: dict | None) -> None:
    (copy / "mutation_runner.py").write_text(_RUNNER)
    (copy / "mutmut_config.py").write_text(_CONFIG % json.dumps(only))
    paths = ",".join(module_path(m) for m in modules)
    # The baseline (its time sets mutmut's per-mutant timeout: 10 times it) is the
    # largest test set of the modules run.
    biggest = max(modules, key=lambda m: len(TARGETS[m]))
    baseline = " ".join([sys.executable, "mutation_runner.py", *test_command(biggest, copy)])
    subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--paths-to-mutate", paths,
         "--runner", baseline, "--tests-dir", "tests", "--no-progress", "--simple-output"],
        cwd=copy, env=runner_env(copy), check=False)


def read_cache(copy: Path, modules: list[str]) -> dict[tuple[str, int, int], str]:
    """(module, line number, index) -> mutmut status, from the copy's cache."""
    db = sqlite3.connect(copy / ".mutmut-cache")
    rows = db.execute(
        "SELECT SourceFile.filename, Line.line_number, Mutant.'index', Mutant.status "
        "FROM Mutant JOIN Line ON Mutant.line = Line.id "
        "JOIN SourceFile ON Line.sourcefile = SourceFile.id").fetchall()
    out = {}
    for filename, line_number, index, status in rows:
        module = Path(filename).stem
        if module in modules:
            out[(module, line_number + 1, index)] = status
    return out


STATUS = {"ok_killed": "killed", "ok_suspicious": "killed", "bad_timeout": "timeout",
          "bad_survived": "survived", "skipped": "skipped", "untested": "untested"}


def run(modules: list[str], only: dict | None, keep: bool,
        exclude: tuple[str, ...] = ()) -> list[dict]:
    copy = Path(tempfile.mkdtemp(prefix="cellguard-mutation-"))
    try:
        copy_repo(copy, exclude)
        for module in modules:  # the tests must pass on the unmutated copy
            if run_tests(copy, module) != 0:
                raise SystemExit(f"the tests of {module} fail without a mutant: "
                                 + " ".join(TARGETS[module]))
        run_mutmut(copy, modules, only)
        statuses = read_cache(copy, modules)
        rows = []
        for module in modules:
            for m in mutants(module, copy):
                if only is not None and [m["line_number"], m["index"]] not in only.get(module, []):
                    continue
                m["status"] = STATUS.get(
                    statuses.get((module, m["line_number"], m["index"]), "untested"), "untested")
                rows.append(m)
        return rows
    finally:
        if keep:
            print("copy kept at", copy)
        else:
            shutil.rmtree(copy, ignore_errors=True)


# -- the report ---------------------------------------------------------------
def table(rows: list[dict], equivalent: list[dict]) -> tuple[str, list[dict], list[dict]]:
    """The per-module table, the unexplained survivors and the stale equivalents
    (listed but killed, or no longer generated)."""
    listed = {key(e): e for e in equivalent}
    seen = set()
    lines = ["| module | mutants | killed | survived | timeout | equivalent | score |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    survivors = []
    stale = []
    modules = list(dict.fromkeys(r["module"] for r in rows))
    for module in modules:
        mine = [r for r in rows if r["module"] == module]
        count = {"killed": 0, "survived": 0, "timeout": 0, "equivalent": 0, "untested": 0,
                 "skipped": 0}
        for r in mine:
            k = key(r)
            seen.add(k)
            if k in listed and r["status"] == "survived":
                count["equivalent"] += 1
            else:
                if k in listed:
                    stale.append(listed[k] | {"why": "listed as equivalent but " + r["status"]})
                count[r["status"]] += 1
                if r["status"] == "survived":
                    survivors.append(r)
        n = len(mine)
        judged = n - count["equivalent"] - count["untested"] - count["skipped"]
        score = 100.0 * (count["killed"] + count["timeout"]) / judged if judged else 100.0
        lines.append(f"| {module} | {n} | {count['killed']} | {count['survived']} | "
                     f"{count['timeout']} | {count['equivalent']} | {score:.1f} % |")
    for e in equivalent:
        if e["module"] in modules and key(e) not in seen:
            stale.append(e | {"why": "no longer generated"})
    return "\n".join(lines), survivors, stale


def describe(rows: list[dict]) -> list[dict]:
    """Rows with ``where`` and ``occurrence`` (recomputed from the source when a
    results file predates them)."""
    if all("occurrence" in r for r in rows):
        return rows
    known = {}
    for module in {r["module"] for r in rows}:
        for m in mutants(module):
            known[(module, m["line_number"], m["index"])] = m
    return [r | known[(r["module"], r["line_number"], r["index"])] for r in rows]


def report(rows: list[dict]) -> int:
    rows = describe(rows)
    text, survivors, stale = table(rows, load_equivalent())
    print(text)
    for r in survivors:
        if "mutant" not in r:
            r["mutant"] = mutant_text(ROOT, r)
        print(f"survived: {r['module']}.py:{r['line_number']} ({r['where']})  {r['line']}  ->  "
              f"{r['mutant']}")
    for e in stale:
        print(f"stale equivalent entry ({e['why']}): {e['module']}.py  {e['line']}  ->  "
              f"{e['mutant']}")
    return 1 if stale else 0


def equivalents_markdown(equivalent: list[dict]) -> str:
    """The reviewed equivalent mutants as the Markdown list docs/mutation.md
    shows: per module, entries with the same reason on one line (comments
    left off the shown lines)."""

    def shown(text: str) -> str:
        return text.split("  #")[0].strip()

    out = []
    for module in TARGETS:
        mine = [e for e in equivalent if e["module"] == module]
        if not mine:
            continue
        out.append(f"- **{module}** ({len(mine)}):")
        groups: list[tuple[str, list[str]]] = []
        for e in mine:
            pair = f"`{shown(e['line'])}` → `{shown(e['mutant'])}`"
            if groups and groups[-1][0] == e["reason"]:
                groups[-1][1].append(pair)
            else:
                groups.append((e["reason"], [pair]))
        out += [f"  - {'; '.join(pairs)}: {reason}" for reason, pairs in groups]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", action="append", choices=sorted(TARGETS),
                    help="a module to mutate (repeatable; default: all)")
    ap.add_argument("--retest", type=Path, metavar="RESULTS",
                    help="re-run only the mutants that survived in RESULTS; the others "
                         "keep their status (new tests cannot revive a killed mutant)")
    ap.add_argument("--skip-equivalent", action="store_true",
                    help="with --retest: leave the listed equivalent mutants out (they "
                         "keep their earlier status)")
    ap.add_argument("--report", type=Path, metavar="RESULTS",
                    help="print the table of RESULTS and run nothing")
    ap.add_argument("--equivalents", action="store_true",
                    help="print the reviewed equivalent mutants as docs/mutation.md lists them")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    ap.add_argument("--sample", type=int, default=1, metavar="N",
                    help="run every N-th mutant of each module only (in mutmut's order; "
                         "the others are left out of the table)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy")
    ap.add_argument("--exclude", action="append", default=[], metavar="PATH",
                    help="leave a file out of the copy (e.g. a test file, to measure "
                         "the score without it)")
    args = ap.parse_args(argv)
    if args.equivalents:
        print(equivalents_markdown(load_equivalent()), end="")
        return 0
    if args.report:
        return report(json.loads(args.report.read_text()))
    modules = args.module or list(TARGETS)
    previous: list[dict] = []
    only = None
    if args.retest:
        previous = [r for r in json.loads(args.retest.read_text()) if r["module"] in modules]
        only = {}
        listed = {key(e) for e in load_equivalent()} if args.skip_equivalent else set()
        for r in describe(previous):
            if r["status"] == "survived" and key(r) not in listed:
                only.setdefault(r["module"], []).append([r["line_number"], r["index"]])
        modules = [m for m in modules if m in only] or modules[:0]
    elif args.sample > 1:
        only = {m: [[x["line_number"], x["index"]] for x in mutants(m)[::args.sample]]
                for m in modules}
    start = time.monotonic()
    rows = run(modules, only, args.keep, tuple(args.exclude)) if modules else []
    if args.retest:
        fresh = {(r["module"], r["line_number"], r["index"]): r for r in rows}
        rows = [fresh.get((r["module"], r["line_number"], r["index"]), r) for r in previous]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{len(rows)} mutants in {time.monotonic() - start:.0f} s; results in {args.out}")
    return report(rows)


if __name__ == "__main__":
    sys.exit(main())
