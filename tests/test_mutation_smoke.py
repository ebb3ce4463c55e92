"""A smoke run of ``make mutation`` (tools/mutation.py, docs/mutation.md), so its
set-up cannot rot unseen: a handful of chosen mutants of the safety path, each
written into a temporary copy of the repository and run against its module's
tests exactly as the full run does, must be killed; a mutant listed as
equivalent must pass those tests; every listed equivalent must still be a
mutant the tool makes; the working tree is never touched."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import mutation  # noqa: E402

# (module, where, line, index, mutated line): mutants a wrong default or operator
# would make, which the module's tests must kill (the first two are from the
# issue that asked for mutation testing).
KILLED = [
    ("contactor", "Contactor.step", "self.attempts = 0", 0,  # not reset when told to open
     "self.attempts = 1"),
    ("app", "Bms._drive_output",  # closes onto a condition whose trip delay runs
     "want = not opens and (c.closed or not self.protection.pending_trips)", 1,
     "want = not opens and (c.closed or  self.protection.pending_trips)"),
    ("protection", "Protection.step", "holding = v > t if self.above[i] else v < t", 0,
     "holding = v >= t if self.above[i] else v < t"),
    ("protection", "Protection.step",
     "if self.samples[i] and not self.active[i] and self.severity[i] == FAULT:", 1,
     "if self.samples[i] and not self.active[i] and self.severity[i] != FAULT:"),
    ("latches", "WordStore.save_words", "self.seq = (self.seq + 1) & 0xFFFFFFFF", 0,
     "self.seq = (self.seq - 1) & 0xFFFFFFFF"),
    ("measurement", "Measurement._track_stuck",  # a frozen converter's repeats ignored
     "elif moved >= step or -moved >= step or code == last[i] and flowing:", 3,
     "elif moved >= step or -moved >= step or code != last[i] and flowing:"),
    ("measurement", "Measurement._track_stuck",  # a step against a noisy reading missed
     "if d > band or -d > band or -step < moved < step and code != last[i]:", 7,
     "if d > band or -d > band or -step < moved < step or code != last[i]:"),
    # a float on the safety path: only the MicroPython heap_lock run (HEAP_LOCKED) sees it
    ("measurement", "Measurement.update", "bottom = conv.max_code // 100", 0,
     "bottom = conv.max_code / 100"),
]


def find(root: Path, module: str, where: str, line: str, index: int, text: str) -> dict:
    found = [m for m in mutation.mutants(module, root)
             if (m["where"], m["line"], m["index"]) == (where, line, index)]
    assert found, f"mutmut no longer makes mutant {index} of {line!r} in {module}.{where}"
    assert mutation.mutant_text(root, found[0]) == text
    return found[0]


def tree_digest() -> str:
    h = hashlib.sha256()
    for module in mutation.TARGETS:
        h.update((ROOT / mutation.module_path(module)).read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mutation-copy")
    mutation.copy_repo(root)
    return root


def test_the_copy_imports_its_own_firmware(copy: Path) -> None:
    import subprocess

    probe = "import cellguard_fw; print(cellguard_fw.__file__)"
    out = subprocess.run([sys.executable, "-c", probe],
                         cwd=copy, env=mutation.runner_env(copy), capture_output=True,
                         text=True, check=True).stdout
    assert Path(out.strip()).resolve().is_relative_to(copy.resolve())


@pytest.mark.parametrize(("module", "where", "line", "index", "text"), KILLED,
                         ids=[f"{k[0]}-{n}" for n, k in enumerate(KILLED)])
def test_chosen_mutant_is_killed(copy: Path, module: str, where: str, line: str, index: int,
                                 text: str) -> None:
    before = tree_digest()
    m = find(copy, module, where, line, index, text)
    original = mutation.apply_mutant(copy, m)
    try:
        assert mutation.run_tests(copy, module) != 0, f"survived: {m}"
    finally:
        (copy / mutation.module_path(module)).write_text(original)
    assert tree_digest() == before  # the working tree was not mutated


def test_a_listed_equivalent_mutant_passes(copy: Path) -> None:
    """The first listed equivalent mutant of the contactor (its tests are quick):
    written into the copy, the module's tests pass, as its reason says."""
    listed = [e for e in mutation.load_equivalent() if e["module"] == "contactor"]
    assert listed
    e = listed[0]
    m = [x for x in mutation.mutants("contactor", copy) if mutation.key(x) == mutation.key(e)]
    assert len(m) == 1
    original = mutation.apply_mutant(copy, m[0])
    try:
        assert mutation.run_tests(copy, "contactor") == 0
    finally:
        (copy / mutation.module_path("contactor")).write_text(original)


def test_every_listed_equivalent_is_still_a_mutant_with_a_reason() -> None:
    made = {mutation.key(m): m for module in mutation.TARGETS for m in mutation.mutants(module)}
    for e in mutation.load_equivalent():
        m = made.get(mutation.key(e))
        assert m is not None, f"stale entry in {mutation.EQUIVALENT_FILE}: {e}"
        assert mutation.mutant_text(ROOT, m) == e["mutant"], e
        assert len(e["reason"].split()) >= 4, e


def test_app_scope_is_the_output_logic() -> None:
    source = (ROOT / mutation.module_path("app")).read_text()
    where = {m["where"] for m in mutation.mutants("app")}
    assert where == {"Bms.step", "Bms._drive_output", "Bms._report_changes", "Bms.clear_faults"}
    lines = source.split("\n")
    step_lines = {m["line_number"] for m in mutation.mutants("app") if m["where"] == "Bms.step"}
    assert all("soc" not in lines[n - 1] and "hal.sample" not in lines[n - 1]
               for n in step_lines)


def test_the_docs_list_every_reviewed_equivalent_mutant() -> None:
    """docs/mutation.md shows the list as tools/mutation.py --equivalents renders
    it from tests/mutation_equivalent.toml: an entry added, changed or dropped
    without the docs following fails here."""
    docs = (ROOT / "docs" / "mutation.md").read_text()
    assert mutation.equivalents_markdown(mutation.load_equivalent()) in docs
