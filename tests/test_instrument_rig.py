"""The instrument rig's own rules (``cellguard.hil.InstrumentRig``), on a simulated
board with its instruments emulated against the plant and reached through PyVISA
(pyvisa-py) on loopback sockets and a pseudo-terminal, as on a bench:

- a rig file is checked, each mistake named in one line;
- the three emulated benches drive the plant (a bidirectional supply; a supply and a
  load; a serial supply with unterminated commands and another load);
- never a source and a sink on at once; the backstop on the instruments, from the
  board's limits; a supply going to constant voltage at it;
- a rig that cannot confirm its state refuses to start (another model, an error in
  an instrument's queue, an output that stays on);
- every exit path ends with the outputs off: an exception, close, SIGTERM, Ctrl-C and
  the interpreter's exit, the last three in a process of their own driving
  instruments served by this one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cellguard.hil import HilError, InstrumentRig, SimTarget, load_rig, suite_dir
from cellguard.hil.bench import EmulatedBench
from cellguard.hil.instruments import InstrumentError
from cellguard.hil.rig_file import parse_rig

RIGS = suite_dir() / "rigs"
BENCH = RIGS / "emulated-bench.toml"
SUPPLY_AND_LOAD = RIGS / "emulated-supply-and-load.toml"
SERIAL_SUPPLY = RIGS / "emulated-serial-supply.toml"


# -- the rig file ---------------------------------------------------------------------
@pytest.mark.parametrize(("data", "named"), [
    ({"oven": {}}, "unknown section(s) oven"),
    ({"source": {"resource": "emulated"}}, "[source]: driver is missing"),
    ({"source": {"driver": "keysight-e36xx"}}, "[source]: resource is missing"),
    ({"source_sink": {"driver": "itech-it-m3400", "resource": "emulated"},
      "sink": {"driver": "rigol-dl3000", "resource": "emulated"}},
     "a bidirectional [source_sink] replaces [source] and [sink]"),
    ({"source": {"driver": "keysight-e36xx", "resource": "emulated"},
      "sink": {"driver": "rigol-dl3000", "resource": "TCPIP::10.0.0.2::INSTR"}},
     "some instruments are \"emulated\" and some real"),
    ({"relay": {"driver": "keysight-34970a", "resource": "emulated",
                "channel": [{"channel": 101, "does": "teleport"}]}},
     "does must be one of board_power"),
    ({"relay": {"driver": "keysight-34970a", "resource": "emulated",
                "channel": [{"channel": 101, "does": "open_wire"}]}},
     "open_wire needs cell"),
    ({"relay": {"driver": "keysight-34970a", "resource": "emulated",
                "channel": [{"channel": 101, "does": "board_power"},
                            {"channel": 101, "does": "short_circuit", "ohms": 0.2}]}},
     "channel 101 is wired twice"),
    ({"rig": {"latency_s": -1}}, "latency_s must not be negative"),
])
def test_a_bad_rig_file_is_named_in_one_line(data: dict[str, Any], named: str) -> None:
    with pytest.raises(HilError) as err:
        parse_rig(data, "bench.toml")
    assert named in str(err.value)
    assert "\n" not in str(err.value)


def test_the_shipped_rig_files_load() -> None:
    bench = load_rig(BENCH)
    assert bench.emulated and set(bench.instruments) == {"source_sink", "cell_emulator",
                                                          "dmm", "relay"}
    assert {w.does for w in bench.relays} == {"board_power", "short_circuit", "open_wire",
                                              "disconnected_temp"}
    for path in (SUPPLY_AND_LOAD, SERIAL_SUPPLY):
        assert set(load_rig(path).instruments) == {"source", "sink"}


def test_a_missing_rig_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(HilError, match="cannot read the rig file"):
        load_rig(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[source\n")
    with pytest.raises(HilError, match="not valid TOML"):
        load_rig(bad)


# -- on a simulated board ---------------------------------------------------------------
class Bench:
    """A simulated board, its emulated instruments and an InstrumentRig on them."""

    def __init__(self, rig_file: Path) -> None:
        self.spec = load_rig(rig_file)
        self.target = SimTarget("sim-4s", "cpython", seed=3)
        self.emulated = EmulatedBench(self.target.sim, self.spec)
        self.drives: list[dict[str, float]] = []  # every change of the drives, in order
        plant = self.emulated.plant
        set_drive = plant.set_drive

        def recording(name: str, amps: float, min_v: float, max_v: float) -> None:
            set_drive(name, amps, min_v, max_v)
            self.drives.append({n: d.amps for n, d in plant._drives.items()})

        plant.set_drive = recording  # type: ignore[method-assign]
        self.rig = InstrumentRig(self.target, self.spec, self.emulated)
        self.client = self.target.connect()
        self.client.hello()
        self.rig.prepare(self.client)

    def close(self) -> None:
        self.rig.close()
        self.emulated.close()
        self.target.close()


@pytest.fixture(params=[BENCH, SUPPLY_AND_LOAD, SERIAL_SUPPLY], ids=lambda p: p.stem)
def bench(request: pytest.FixtureRequest) -> Iterator[Bench]:
    b = Bench(request.param)
    try:
        yield b
    finally:
        b.close()


def test_each_bench_drives_the_plant_and_measures_it(bench: Bench) -> None:
    rig, sim, client = bench.rig, bench.target.sim, bench.client
    for amps in (0.8, -0.9, 0.0):  # within every bench's instruments (1 A at the least)
        rig.set_current(amps)
        client.run(1.0)
        truth = sim.truth()
        assert truth.current_a == pytest.approx(amps, abs=1e-6)
        assert rig.measure_current_a() == pytest.approx(amps, abs=0.01)
        assert rig.measure_pack_voltage_v() == pytest.approx(truth.pack_v, abs=0.01)
        assert client.next_telemetry(client.mark()).current_a == pytest.approx(amps, abs=0.1)


def test_never_a_source_and_a_sink_on_at_once(bench: Bench) -> None:
    rig = bench.rig
    for amps in (0.5, -0.5, 0.9, -0.2, 0.0, -0.9, 0.4, 0.0):
        rig.set_current(amps)
    assert len(bench.drives) >= 8
    for drives in bench.drives:
        on = [name for name, amps in drives.items() if amps]
        assert len(on) <= 1, drives
        assert all(a >= 0 for a in drives.values()) or all(a <= 0 for a in drives.values())


def test_the_backstop_comes_from_the_boards_limits(bench: Bench) -> None:
    """4 cells x 2.5..4.3 V (sim-4s's hard limits), on every supply and load."""
    assert bench.rig.window_v == pytest.approx((10.0, 17.2))
    seen = []
    for amps in (0.5, -0.5):
        bench.rig.set_current(amps)
        for drive in bench.emulated.plant._drives.values():
            if drive.amps > 0:  # a supply pushes the pack no higher than 17.2 V
                assert drive.max_v == pytest.approx(17.2)
                seen.append("source")
            elif drive.amps < 0:  # a load draws it no lower than 10 V
                assert drive.min_v == pytest.approx(10.0)
                seen.append("sink")
    assert seen == ["source", "sink"]


def test_a_supply_goes_to_constant_voltage_at_its_limit() -> None:
    """The emulated supply's own limit holds the pack, whatever the board does: a
    limit just above the pack's voltage tapers a 5 A charge to what holds it there."""
    b = Bench(BENCH)
    try:
        plant = b.emulated.plant
        pack_v = b.target.sim.truth().pack_v
        plant.set_drive("test", 5.0, 0.0, pack_v + 0.01)
        b.client.run(2.0)
        truth = b.target.sim.truth()
        assert 0.0 <= truth.current_a < 1.0
        assert truth.pack_v <= pack_v + 0.01 + 1e-3
    finally:
        b.close()


def test_a_current_beyond_the_instrument_is_skipped_not_clipped() -> None:
    b = Bench(SUPPLY_AND_LOAD)
    try:
        source = b.rig.instruments["source"]
        with pytest.raises(pytest.skip.Exception, match="beyond"):
            b.rig.set_current(source.MAX_CURRENT_A * 2)
        assert b.target.sim.truth().current_a == 0.0
    finally:
        b.close()


def test_a_failure_inside_the_rig_leaves_everything_off() -> None:
    b = Bench(BENCH)
    try:
        b.rig.set_current(2.0)
        b.rig.set_cell_voltage(0, 4.0)
        emulator = b.emulated.instrument("cell_emulator")
        emulator.push_error('-222,"Data out of range"')  # the next read-back finds it
        with pytest.raises(InstrumentError, match="Data out of range"):
            b.rig.set_cell_voltage(1, 3.9)
        assert b.target.sim.truth().current_a == 0.0
        assert not b.rig.instruments["source_sink"].output_on()  # type: ignore[attr-defined]
        assert b.target.sim.plant.cell_voltage_override_v == [None] * 4
    finally:
        b.close()


def test_close_leaves_everything_off_and_relays_at_rest() -> None:
    b = Bench(BENCH)
    b.rig.set_current(-2.0)
    b.rig.inject("open_wire", cell=0)
    assert b.target.sim.injections() == [("open_wire", {"cell": 0})]
    b.rig.close()
    try:
        assert b.target.sim.truth().current_a == 0.0
        assert b.target.sim.injections() == []
    finally:
        b.emulated.close()
        b.target.close()


# -- refusing to start ------------------------------------------------------------------
def _open_rig(spec_file: Path, tweak: Any) -> None:
    spec = load_rig(spec_file)
    target = SimTarget("sim-4s", "cpython", seed=3)
    emulated = EmulatedBench(target.sim, spec)
    try:
        tweak(emulated)
        InstrumentRig(target, spec, emulated).close()
    finally:
        emulated.close()
        target.close()


def test_a_rig_that_cannot_confirm_its_state_refuses_to_start() -> None:
    def another_model(emulated: EmulatedBench) -> None:
        emulated.instrument("dmm").IDN = "ACME,WIDGET-9,0,1.0"  # type: ignore[misc]

    with pytest.raises(HilError, match="ACME"):
        _open_rig(BENCH, another_model)

    def an_error_queued(emulated: EmulatedBench) -> None:
        emulated.instrument("source_sink").push_error('-310,"System error"')

    with pytest.raises(HilError, match="System error"):
        _open_rig(BENCH, an_error_queued)

    def stuck_on(emulated: EmulatedBench) -> None:
        load = emulated.instrument("sink")
        command = load.command

        def ignoring_off(line: str) -> str | None:
            if line.upper().startswith((":SOUR:INP:STAT 0", ":INP OFF", ":SOUR:INP OFF",
                                        "INP OFF", "INP 0")):
                return None
            return command(line)

        load.command = ignoring_off  # type: ignore[method-assign]
        load.handle(":SOUR:INP:STAT 1")  # on, as a bench left on by someone else

    with pytest.raises(HilError):
        _open_rig(SUPPLY_AND_LOAD, stuck_on)


# -- exit paths in a process of their own -----------------------------------------------
CHILD = textwrap.dedent("""
    import sys, time
    from cellguard.hil import InstrumentRig, load_rig

    class NoBoard:  # a rig needs little of its target outside the suite
        min_speed = 1.0
        clients = []
        def health(self): pass
        def drain(self): pass

    rig = InstrumentRig(NoBoard(), load_rig(sys.argv[1]))
    for inst in rig._sources_sinks():
        inst.set_voltage_window(10.0, 17.2)
    rig.window_v = (10.0, 17.2)
    rig.set_current(0.8)
    if sys.argv[2] == "asleep":  # a main thread that never sees the signal
        import signal
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    print("ON", flush=True)
    sys.stdin.readline()  # the parent has seen the current flow
    if sys.argv[2] == "raise":
        raise RuntimeError("a test's own bug")
    if sys.argv[2] == "asleep":
        time.sleep(60)
    for _ in range(600):  # a script's waits
        time.sleep(0.1)
""")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "raise", "asleep"])
def test_every_exit_path_switches_the_outputs_off(how: str, tmp_path: Path) -> None:
    """A rig in another process drives instruments this process serves (a real rig
    file: their loopback resource strings); it is killed, interrupted, or dies of an
    exception: the supply ends off and the plant's current at zero. ``asleep``: its
    main thread sleeps with SIGTERM blocked, so another of its threads takes the
    signal (as the kernel may choose to): the rig still switches off at once."""
    spec = load_rig(SUPPLY_AND_LOAD)
    target = SimTarget("sim-4s", "cpython", seed=3)
    emulated = EmulatedBench(target.sim, spec)
    try:
        real = tmp_path / "bench.toml"
        real.write_text("".join(
            f'[{role}]\ndriver = "{inst.driver}"\nresource = "{emulated.resources[role]}"\n'
            + "".join(f"{k} = {v!r}\n" for k, v in inst.options.items())
            for role, inst in spec.instruments.items()))
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(real), how],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "ON", (line, child.stderr.read() if child.stderr else "")
        assert target.sim.plant.requested_current_a == pytest.approx(0.8)
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        if how != "raise":
            child.send_signal(signal.SIGTERM if how == "asleep" else getattr(signal, how))
        if how == "asleep":
            deadline = time.monotonic() + 30
            while target.sim.plant.requested_current_a != 0.0:
                assert time.monotonic() < deadline, "the rig did not switch off"
                time.sleep(0.01)
            assert child.poll() is None, "the main thread still sleeps"
            child.kill()
        child.wait(timeout=60)
        assert child.returncode != 0
        source = emulated.instrument("source")
        assert target.sim.plant.requested_current_a == 0.0
        assert emulated.plant.drive_current_a("source") == 0.0
        assert source.log, "the child spoke to the supply"
    finally:
        emulated.close()
        target.close()


def test_the_shipped_bench_is_reached_through_pyvisa_py() -> None:
    """The resources are what pyvisa-py opens: sockets, and a pty for the Korad."""
    b = Bench(SERIAL_SUPPLY)
    try:
        assert b.emulated.resources["source"].startswith("ASRL/dev/")
        assert b.emulated.resources["sink"].startswith("TCPIP0::127.0.0.1::")
        b.rig.set_current(1.0)
        assert b.target.sim.truth().current_a == pytest.approx(1.0)
    finally:
        b.close()
