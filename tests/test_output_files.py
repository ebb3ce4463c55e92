"""No command writes over its own input, replaces a file without --force, or leaves half a file.

Each command that used to destroy its input (issue 11, item 3) is run with its
output aimed at that input, by the same name and by aliases (``./x``, a symlink,
a hard link); the input must come out byte for byte as it went in. Outputs are
written through a temporary file renamed into place: a writer that fails half
way leaves the old file as it was and no temporary behind.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_offline import INFO, Run, write

from cellguard import cli, errors, files
from cellguard.errors import LogFileError

ROOT = Path(__file__).resolve().parents[1]
NMC_CELL = ROOT / "cells" / "sim-nmc.json"


def main(*args: str | Path) -> int:
    return cli.main([str(a) for a in args])


def refused(capsys: pytest.CaptureFixture[str], *args: str | Path, words: str) -> str:
    """Run a command that must refuse with exit 1 and one clear line naming ``words``."""
    assert main(*args) == 1, args
    err = capsys.readouterr().err
    assert err.startswith("cellguard: error: ") and words in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def no_temporaries(folder: Path) -> None:
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return write(tmp_path / "victim.sqlite", (INFO, Run().add(60, 1500).add(60, -1500).rows))


def trace_csv(path: Path, rows: int = 40, volts: float = 3.7) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "current_a", "cell1_v", "temp1_c"])
        for k in range(rows):
            w.writerow([k, -1.0, f"{volts - 0.001 * k:.3f}", 25.0])
    return path


# --- a command's output never names its input ---------------------------------------------


@pytest.mark.parametrize("argv", [
    ["export", "{log}", "-o", "{log}"],
    ["export", "{log}", "--format", "parquet", "-o", "{log}"],
    ["report", "{log}", "-o", "{log}"],
    ["plot", "{log}", "--html", "{log}"],
    ["plot", "{log}", "-o", "{log}"],
    ["passport", "{log}", "-o", "{log}"],
], ids=["export-csv", "export-parquet", "report", "plot-html", "plot-png", "passport"])
def test_offline_commands_refuse_to_write_over_their_log(
        argv: list[str], log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = log.read_bytes()
    args = [a.format(log=log) for a in argv]
    refused(capsys, *args, words="is this command's input")
    refused(capsys, *args, "--force", words="--force never replaces an input")
    assert log.read_bytes() == before
    assert main("summary", log) == 0 and "samples logged:   120" in capsys.readouterr().out
    no_temporaries(log.parent)


def aliases(log: Path) -> Iterator[tuple[str, Path]]:
    folder = log.parent
    yield "relative", Path(os.path.relpath(log))
    yield "dot-slash", Path(f"{folder}/./{log.name}")
    yield "dot-dot", folder / ".." / folder.name / log.name
    link = folder / "link.sqlite"
    link.symlink_to(log.name)
    yield "symlink", link
    hard = folder / "hard.sqlite"
    os.link(log, hard)
    yield "hard-link", hard
    linked_folder = folder.parent / f"{folder.name}-link"
    linked_folder.symlink_to(folder)
    yield "symlinked-folder", linked_folder / log.name


def test_every_alias_of_the_input_is_caught(log: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(log.parent.parent)
    before = log.read_bytes()
    seen = []
    for name, alias in aliases(log):
        seen.append(name)
        for argv in (["export", log, "-o", alias, "--force"],
                     ["export", alias, "-o", log, "--force"],
                     ["report", log, "-o", alias, "--force"],
                     ["plot", log, "--html", alias, "--force"]):
            refused(capsys, *argv, words="is this command's input")
        assert log.read_bytes() == before, name
    assert len(seen) == 6
    no_temporaries(log.parent)


def test_estimate_refuses_to_write_over_its_trace_or_cell(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    trace = trace_csv(tmp_path / "trace.csv")
    cell = tmp_path / "cell.json"
    cell.write_bytes(NMC_CELL.read_bytes())
    before = trace.read_bytes(), cell.read_bytes()
    refused(capsys, "estimate", "--input", trace, "--cell", cell, "--out", trace,
            words="is this command's input")
    refused(capsys, "estimate", "--input", trace, "--cell", cell, "--out", "./" + os.path.relpath(
        cell), "--force", words="is this command's input")
    assert (trace.read_bytes(), cell.read_bytes()) == before
    out = tmp_path / "est.csv"
    assert main("estimate", "--input", trace, "--cell", cell, "--out", out) == 0
    assert out.read_text().splitlines()[0].startswith("t_s,soc_pct,")


@pytest.fixture(scope="module")
def fit_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from test_characterize import hppc, low_rate, plant_trace

    d = tmp_path_factory.mktemp("fit")
    return (plant_trace(d / "hppc.csv", hppc(level_rest_s=1800.0)),
            plant_trace(d / "low.csv", low_rate(), dt=20.0))


def test_characterize_refuses_to_write_over_an_input_or_a_validate_trace(
        fit_inputs: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    pulse, slow = fit_inputs
    check = tmp_path / "check.csv"
    check.write_bytes(pulse.read_bytes())
    before = {p: p.read_bytes() for p in (pulse, slow, check)}
    base = ["characterize", "--input", pulse, "--input", slow, "--chemistry", "nmc"]
    refused(capsys, *base, "--out", slow, words="is this command's input")
    refused(capsys, *base, "--validate", check, "--out", check, "--force",
            words="is this command's input")
    assert {p: p.read_bytes() for p in before} == before
    out = tmp_path / "cell.json"
    assert main(*base, "--validate", check, "--out", out) == 0
    assert "check.csv: voltage error RMS" in capsys.readouterr().out
    first = out.read_bytes()
    refused(capsys, *base, "--out", out, words="cell.json exists (a file); give --force")
    assert out.read_bytes() == first
    assert main(*base, "--out", out, "--name", "again", "--force") == 0
    assert b'"again"' in out.read_bytes()


# --- an existing file is replaced only with --force ---------------------------------------


def test_an_existing_output_needs_force(log: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    other = write(tmp_path / "other.sqlite", (INFO, Run().add(5).rows))
    kept = other.read_bytes()
    for argv in (["export", log, "-o", other], ["report", log, "-o", other],
                 ["plot", log, "-o", other]):
        refused(capsys, *argv, words="other.sqlite exists (a cellguard log); give --force to "
                                     "replace it")
    assert other.read_bytes() == kept
    notes = tmp_path / "run.csv"
    notes.write_text("my notes\n")
    refused(capsys, "export", log, "-o", notes, words="run.csv exists (a file); give --force")
    assert notes.read_text() == "my notes\n"
    os.chmod(notes, 0o640)
    assert main("export", log, "-o", notes, "--force") == 0
    assert notes.read_text().startswith("t_s,seq,state,")
    assert notes.stat().st_mode & 0o777 == 0o640  # replaced, permissions kept
    no_temporaries(tmp_path)


def test_force_writes_through_a_symlink_to_its_target(log: Path, tmp_path: Path) -> None:
    target = tmp_path / "reports" / "latest.md"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "latest.md"
    link.symlink_to(target)
    assert main("report", log, "-o", link, "--force") == 0
    assert link.is_symlink() and target.read_text().startswith("# cellguard run report")


def test_plot_outputs_must_differ(log: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "p.html"
    refused(capsys, "plot", log, "-o", page, "--html", page, words="named twice")
    refused(capsys, "plot", log, "-o", tmp_path / "x.png", "--html", f"{tmp_path}/./x.png",
            words="are the same file")
    assert not page.exists()


def test_config_dump_refuses_an_existing_file_before_it_talks_to_a_board(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "limits.toml"
    mine.write_text("[cell_overvoltage]\ntrip_v = 4.2\n")
    refused(capsys, "config", "dump", mine, "--port", "/dev/cellguard-no-such-port",
            words="limits.toml exists (a file); give --force to replace it")
    assert mine.read_text() == "[cell_overvoltage]\ntrip_v = 4.2\n"
    # With --force it goes on to the board (here: a port that is not there).
    refused(capsys, "config", "dump", mine, "--port", "/dev/cellguard-no-such-port", "--force",
            words="no such device")
    with pytest.raises(SystemExit) as exc:
        main("config", "get", "cell_ov_mv", "--force", "--port", "/dev/x")
    assert exc.value.code == 2 and "--force goes with config dump FILE" in \
        capsys.readouterr().err


def test_demo_keeps_an_earlier_run_unless_forced(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from cellguard import demo

    folder = tmp_path / "demo"
    folder.mkdir()
    old = write(folder / "run.sqlite", (INFO, Run().add(30).rows))
    kept = old.read_bytes()
    refused(capsys, "demo", "--out", folder, "--runtime", "cpython",
            words="run.sqlite exists (a cellguard log); give --force to replace it")

    def fails_half_way(port: str, db: Path, **kw: Any) -> None:
        write(Path(db), (INFO, Run().add(10).rows))  # some of the new run, then it breaks
        raise LogFileError("the disk is full (simulated)")

    monkeypatch.setattr(demo, "log_board", fails_half_way)
    refused(capsys, "demo", "--out", folder, "--runtime", "cpython", "--force",
            words="the disk is full")
    assert old.read_bytes() == kept and not (folder / "run.png").exists()
    no_temporaries(folder)


# --- log --out appends to a log, and to nothing else ---------------------------------------


@pytest.mark.parametrize("content", [b"t_s,current_a\n0,1\n", b"x"], ids=["csv", "one-byte"])
def test_log_refuses_an_existing_file_that_is_not_a_log(content: bytes, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    notes = tmp_path / "notes.csv"
    notes.write_bytes(content)
    refused(capsys, "log", "--port", "/dev/cellguard-no-such-port", "--out", notes,
            "--duration", "1", words="is not a cellguard log")
    assert notes.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.csv"]


# --- standard output ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["export", "report"])
def test_printing_into_the_input_is_refused(command: str, log: Path) -> None:
    before = log.read_bytes()
    with log.open("ab") as out:
        proc = subprocess.run([sys.executable, "-m", "cellguard.cli", command, str(log)],
                              stdout=out, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 1 and "standard output is" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert log.read_bytes() == before


# --- a failure half way leaves the old file and no temporary --------------------------------


def test_atomic_output_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)), files.atomic_output(target, force=True) as tmp:
            tmp.write_text("half a fi")
            raise error
        assert target.read_text() == "old\n"
        no_temporaries(tmp_path)
    with pytest.raises(LogFileError, match=r"cannot write .*out\.csv: No space left"), \
            files.atomic_output(target, force=True) as tmp:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")
    assert target.read_text() == "old\n"
    no_temporaries(tmp_path)
    with files.atomic_output(target, force=True) as tmp:
        tmp.write_text("new\n")
        assert target.read_text() == "old\n"  # not yet
    assert target.read_text() == "new\n"
    no_temporaries(tmp_path)


def test_an_output_that_appears_while_writing_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(errors.OutputError, match="exists"), files.atomic_output(target) as tmp:
        tmp.write_text("mine\n")
        target.write_text("someone else's\n")
    assert target.read_text() == "someone else's\n"
    no_temporaries(tmp_path)


def failing_rows(good: int) -> Callable[..., Iterator[tuple[float, ...]]]:
    def rows(*args: Any, **kwargs: Any) -> Iterator[tuple[float, ...]]:
        for k in range(good):
            yield (float(k),) + (0.0,) * 16
        raise RuntimeError("the estimator broke half way")

    return rows


def test_estimate_failing_half_way_leaves_the_old_output(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from cellguard.estimation import estimate

    trace = trace_csv(tmp_path / "trace.csv")
    out = tmp_path / "est.csv"
    out.write_text("yesterday's estimates\n")
    monkeypatch.setattr(estimate, "run", failing_rows(25))
    with pytest.raises(RuntimeError, match="half way"):
        main("estimate", "--input", trace, "--cell", NMC_CELL, "--out", out, "--force")
    assert out.read_text() == "yesterday's estimates\n"
    no_temporaries(tmp_path)


def test_export_interrupted_half_way_leaves_the_old_output(log: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    from cellguard.formats import export

    out = tmp_path / "x.csv"
    out.write_text("kept\n")
    real = export._write_csv

    def interrupted(plan: Any, f: Any) -> int:
        real(plan, f)
        f.flush()
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "_write_csv", interrupted)
    assert main("export", log, "-o", out, "--force") == 130
    assert out.read_text() == "kept\n"
    no_temporaries(tmp_path)


def test_pybamm_trace_copies_need_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from cellguard.estimation import pybamm_traces

    cached = trace_csv(tmp_path / "cached.csv")
    monkeypatch.setattr(pybamm_traces, "run_trace", lambda *a, **k: pybamm_traces.TraceResult(
        cached, True, 1.0, 40, "done"))
    dest = tmp_path / "mine.csv"
    dest.write_text("mine\n")
    assert pybamm_traces.main(["--profile", "cc", "--out", str(dest)]) == 1
    assert "give --force" in capsys.readouterr().err and dest.read_text() == "mine\n"
    assert pybamm_traces.main(["--profile", "cc", "--out", str(dest), "--force"]) == 0
    assert dest.read_bytes() == cached.read_bytes()
    assert pybamm_traces.main(["--profile", "cc", "--out", str(cached), "--force"]) == 1
    assert "is this command's input" in capsys.readouterr().err


@pytest.mark.parametrize("switches", ["single", "dual"])
def test_the_demo_discharge_ends_where_the_bms_stops_it(switches: str) -> None:
    """The demo's discharge ends when the board stops it at under-voltage: its output
    opens on one switch; on separate charge and discharge FETs only the discharge FET
    does (a one-way fault), and the cycle must not run on to its time limit."""
    from types import SimpleNamespace

    from cellguard.boards import load_board
    from cellguard.demo import CycleScript
    from cellguard.sim.plant import OUT_DISCHARGE, Plant

    plant = Plant({**load_board("sim-4s"), "switches": switches})
    plant.output_closed = True
    sim = SimpleNamespace(plant=plant, time_s=0.0, pause=lambda: None)
    script = CycleScript(charge_v=4.2, current_a=3.0, first_rest_s=1, mid_rest_s=1)
    script.armed.set()
    script._enter(sim, "discharge")  # type: ignore[arg-type]
    sim.time_s = 10.0
    script(sim)  # type: ignore[arg-type]
    assert script.phase is not None and script.phase.name == "discharge"
    if switches == "dual":
        plant.outputs &= ~OUT_DISCHARGE  # the discharge FET off, the output closed
    else:
        plant.output_closed = False
    sim.time_s = 20.0
    script(sim)  # type: ignore[arg-type]
    assert script.phase.name == "rest-after" and plant.requested_current_a == 0.0
