"""Each emulated instrument with its own driver, through an in-process transport, acting
on a recording plant: the dialects agree, the plant sees what the instrument would do,
errors come back through the error queue (the real transport is bench.py's)."""

from __future__ import annotations

from typing import Any

import pytest

from cellguard.hil.instruments import InstrumentError
from cellguard.hil.instruments.drivers import DRIVERS
from cellguard.hil.instruments.emulated import EMULATIONS, KoradKa3005pEmulation
from cellguard.hil.instruments.emulation import EmulatedInstrument


class Plant:
    """A recording PlantSide: every drive, cell and relay it was told, and voltages a
    test sets."""

    def __init__(self) -> None:
        self.drives: dict[str, tuple[float, float, float]] = {}
        self.cells: dict[int, float | None] = {}
        self.relays: dict[int, bool] = {}
        self.terminal_v = 14.8

    def set_drive(self, name: str, amps: float, min_v: float, max_v: float) -> None:
        self.drives[name] = (amps, min_v, max_v)

    def drive_current_a(self, name: str) -> float:
        return self.drives.get(name, (0.0, 0.0, 0.0))[0]

    def terminal_voltage_v(self) -> float:
        return self.terminal_v

    def cell_voltage_v(self, cell: int) -> float:
        held = self.cells.get(cell)
        return 3.3 if held is None else held

    def set_cell(self, cell: int, volts: float | None) -> None:
        self.cells[cell] = volts

    def set_relay(self, channel: int, closed: bool) -> None:
        self.relays[channel] = closed


class Loopback:
    """What a PyVISA resource offers a driver, feeding an emulation's ``split``/``handle``."""

    def __init__(self, emulation: EmulatedInstrument) -> None:
        self.emulation = emulation
        self.read_termination: str | None = "\n"
        self.write_termination = "\n"
        self.timeout = 2000
        self.inbox = ""
        self.outbox = bytearray()

    def write(self, message: str) -> None:
        self.inbox += message + self.write_termination
        commands, self.inbox = self.emulation.split(self.inbox)
        for command in commands:
            answer = self.emulation.handle(command)
            if answer is not None:
                self.outbox += (answer + self.emulation.TERMINATION).encode("latin-1")

    def read(self) -> str:
        end = self.outbox.find((self.read_termination or "\n").encode())
        if end < 0:
            raise TimeoutError("no answer")
        line = bytes(self.outbox[:end])
        del self.outbox[:end + 1]
        return line.decode("latin-1")

    def query(self, message: str) -> str:
        self.write(message)
        return self.read()

    def read_bytes(self, count: int) -> bytes:
        if len(self.outbox) < count:
            raise TimeoutError("no answer")
        chunk = bytes(self.outbox[:count])
        del self.outbox[:count]
        return chunk

    def flush(self, mask: Any) -> None:
        self.outbox.clear()

    def close(self) -> None:
        pass


def pair(name: str) -> tuple[Any, Plant, EmulatedInstrument]:
    plant = Plant()
    emulation = EMULATIONS[name](plant, name)
    driver = DRIVERS[name](Loopback(emulation), name)
    if hasattr(driver, "pause_s"):
        driver.pause_s = 0.0
    driver.identify()
    driver.check_errors()
    return driver, plant, emulation


def test_every_driver_has_an_emulation_of_the_same_name() -> None:
    assert set(EMULATIONS) == set(DRIVERS)


@pytest.mark.parametrize("name, amps", [
    ("rigol-dl3000", -1.5), ("rigol-dl3000", -12.0), ("siglent-sdl1000x", -2.0),
    ("keysight-e36xx", 1.0), ("siglent-spd3303x", 1.0), ("korad-ka3005p", 1.0),
    ("itech-it-m3400", 2.0), ("itech-it-m3400", -2.0),
])
def test_a_source_sink_drives_the_plant_within_its_window(name: str, amps: float) -> None:
    driver, plant, _ = pair(name)
    plant.terminal_v = 4.0  # one cell, inside the window (above it, an OVP would trip)
    driver.off()
    assert plant.drives[name][0] == 0.0
    driver.set_voltage_window(3.0, 4.2)
    driver.set_current(amps)
    drive, min_v, max_v = plant.drives[name]
    assert drive == pytest.approx(amps)
    if amps < 0:
        assert min_v == pytest.approx(3.0)  # the sink's backstop reached the plant
    else:
        assert max_v == pytest.approx(4.2)  # the source's
    assert driver.output_on()
    assert driver.measure_current_a() == pytest.approx(amps)
    assert driver.measure_voltage_v() == pytest.approx(4.0)
    driver.off()
    assert plant.drives[name][0] == 0.0 and not driver.output_on()
    driver.off()


def test_the_rigol_battery_test_ends_at_its_stop_voltage() -> None:
    rigol, plant, _ = pair("rigol-dl3000")
    rigol.set_voltage_window(3.0, 4.2)
    rigol.set_current(-2.0)
    plant.terminal_v = 2.99  # the pack fell to the stop voltage
    assert not rigol.output_on()  # the load ended the test itself
    assert plant.drives["rigol-dl3000"][0] == 0.0


def test_the_keysight_ovp_trips_the_output() -> None:
    psu, plant, _ = pair("keysight-e36xx")
    plant.terminal_v = 4.0
    psu.set_voltage_window(3.0, 4.2)
    psu.set_current(1.0)
    plant.terminal_v = 4.5  # above 4.2 + 0.2 V
    assert not psu.output_on()
    assert plant.drives["keysight-e36xx"][0] == 0.0


def test_a_siglent_latched_von_is_no_floor_until_the_driver_unlatches_it() -> None:
    sdl, plant, emulation = pair("siglent-sdl1000x")
    emulation.handle(":SOUR:VOLT:LEV:ON 3.1")
    emulation.handle(":SOUR:CURR 1.0")
    emulation.handle(":SOUR:INP ON")
    assert plant.drives["siglent-sdl1000x"] == (-1.0, 0.0, 150.0)
    sdl.set_voltage_window(3.1, 4.2)
    assert plant.drives["siglent-sdl1000x"][1] == 3.1


@pytest.mark.parametrize("name, command", [
    ("rigol-dl3000", ":SOUR:BATT:VST 200"), ("siglent-sdl1000x", ":SOUR:CURR 31"),
    ("keysight-e36xx", "CURR 6,(@1)"), ("itech-it-m3400", "CURR -40"),
    ("bloomy-abs", "SOUR1:VOLT 5.5"), ("keysight-34970a", "ROUT:CLOS (@121)"),
    ("siglent-spd3303x", "CH1:VOLT 40"),
])
def test_out_of_range_data_is_queued_and_read_by_the_driver(name: str, command: str) -> None:
    driver, _, emulation = pair(name)
    emulation.handle(command)
    with pytest.raises(InstrumentError, match=r"-222.*Data out of range"):
        driver.check_errors()
    assert driver.errors() == []


@pytest.mark.parametrize("name", sorted(set(DRIVERS) - {"korad-ka3005p"}))
def test_an_unknown_header_is_queued(name: str) -> None:
    driver, _, emulation = pair(name)
    assert emulation.handle("FROB:NICATE 3") is None
    found = driver.errors()
    assert len(found) == 1 and "-113" in found[0]


def test_an_instrument_side_refusal_reaches_the_driver_as_an_error() -> None:
    itech, _, _ = pair("itech-it-m3400")
    itech.set_voltage_window(3.0, 4.2)
    itech.MAX_CURRENT_A = 50.0
    with pytest.raises(InstrumentError, match=r"-222.*after 'CURR 40.0000'"):
        itech.set_current(40.0)


def test_the_abs_holds_the_plant_cells() -> None:
    abs_, plant, _ = pair("bloomy-abs")
    abs_.set_cell_voltage(2, 3.65)
    abs_.set_current_limits(2, 1.0, 0.5)
    assert plant.cells.get(2) is None  # set, not yet on
    abs_.enable(2, True)
    assert plant.cells[2] == pytest.approx(3.65) and abs_.enabled(2)
    assert abs_.measure_cell_voltage_v(2) == pytest.approx(3.65)
    abs_.set_cell_voltage(2, 3.70)  # while on: the plant follows
    assert plant.cells[2] == pytest.approx(3.70)
    assert abs_.measure_cell_voltage_v(1) == 3.3  # a cell the plant keeps
    abs_.off()
    assert all(plant.cells[k] is None for k in range(8))


def test_the_relay_card_switches_the_plant_relays() -> None:
    card, plant, _ = pair("keysight-34970a")
    card.set_closed(101, True)
    card.set_closed(107, True)
    assert plant.relays == {101: True, 107: True} and card.closed(107)
    card.set_closed(101, False)
    assert plant.relays[101] is False and not card.closed(101)
    card.off()
    assert plant.relays[107] is False and not card.closed(107)


def test_the_dmm_reads_the_terminal_voltage() -> None:
    dmm, plant, _ = pair("keysight-34461a")
    plant.terminal_v = 15.123
    assert dmm.measure_dc_voltage_v() == pytest.approx(15.123)


def test_the_korad_stream_is_cut_into_commands() -> None:
    korad = KoradKa3005pEmulation(Plant(), "psu")
    assert korad.split("ISET1:1.000VSET1:04.20OUT1STATUS?") == (
        ["ISET1:1.000", "VSET1:04.20", "OUT1", "STATUS?"], "")
    assert korad.split("VSET1:4.2OUT0ISET1:0.5") == (["VSET1:4.2", "OUT0"], "ISET1:0.5")
    assert korad.split("xISET1?IOUT1?VO") == (["ISET1?", "IOUT1?"], "VO")
    assert korad.split("*IDN?") == (["*IDN?"], "")


def test_the_korad_ignores_what_it_refuses_and_the_driver_notices() -> None:
    korad, plant, emulation = pair("korad-ka3005p")
    korad.set_voltage_window(0.0, 4.2)
    korad.MAX_CURRENT_A = 9.0
    with pytest.raises(InstrumentError, match=r"'ISET1:6.000'.*reads back '0.000'"):
        korad.set_current(6.0)
    assert plant.drives["korad-ka3005p"][0] == 0.0
    assert emulation.handle("SYST:ERR?") is None  # no error queue to ask
