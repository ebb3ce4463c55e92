"""Every instrument driver against its pyvisa-sim device (instruments/sim/instruments.yaml):
identity, every method, read-back, refusals before anything is sent and errors the
instrument queues, a wrong model refused at open, ``off()`` from every state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pyvisa
from pyvisa_sim import devices as sim_devices
from pyvisa_sim.component import NoResponse

from cellguard.errors import CellguardError
from cellguard.hil.instruments import InstrumentError, SourceSink
from cellguard.hil.instruments.drivers import DRIVERS, SIM_DEFINITIONS, bloomy_abs, open_instrument
from cellguard.hil.instruments.drivers.keysight_e36xx import KeysightE36xx
from cellguard.hil.instruments.drivers.korad_ka3005p import KoradKa3005p

RESOURCES = {
    "rigol-dl3000": "TCPIP::10.0.0.11::5555::SOCKET",
    "siglent-sdl1000x": "TCPIP::10.0.0.12::5025::SOCKET",
    "keysight-e36xx": "USB0::0x2A8D::0x1102::MY00000001::INSTR",
    "siglent-spd3303x": "TCPIP::10.0.0.14::5025::SOCKET",
    "korad-ka3005p": "ASRL3::INSTR",
    "itech-it-m3400": "TCPIP::10.0.0.16::30000::SOCKET",
    "bloomy-abs": "TCPIP::10.0.0.17::5025::SOCKET",
    "keysight-34461a": "USB0::0x2A8D::0x1301::MY00000008::INSTR",
    "keysight-34970a": "GPIB0::9::INSTR",
}
STATEFUL = ["rigol-dl3000", "siglent-sdl1000x", "keysight-e36xx", "itech-it-m3400"]
"""Source/sinks whose sim holds the output state the driver reads back."""


@pytest.fixture(autouse=True)
def unterminated_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyvisa-sim 0.7.1 cuts a command's end-of-message off with ``buffer[:-len(eom)]``,
    which empties the command when the eom is "" (the Korad's unterminated dialect):
    such a device takes each write as one whole command instead."""
    original = sim_devices.Device.write

    def write(self: Any, data: bytes) -> None:
        if self._query_eom:
            original(self, data)
            return
        response = self._match(bytes(data))
        if response is None:
            response = self.error_response("command_error")
        if response is not None and response is not NoResponse:
            self._output_buffers.append(bytearray(response) + self._response_eom)

    monkeypatch.setattr(sim_devices.Device, "write", write)


@pytest.fixture(scope="module")
def rm() -> Iterator[pyvisa.ResourceManager]:
    """One manager for the module: pyvisa-sim keeps a device's state for the whole
    run anyway, so no test relies on the state another left."""
    manager = pyvisa.ResourceManager(f"{SIM_DEFINITIONS}@sim")
    yield manager
    manager.close()


def opened(rm: pyvisa.ResourceManager, driver: str) -> Any:
    instrument = open_instrument(driver, RESOURCES[driver], rm)
    if isinstance(instrument, KoradKa3005p):
        instrument.pause_s = 0.0  # the sim needs no pause (pacing: its own test)
    return instrument


def record(instrument: Any) -> list[str]:
    """What the driver sends from now on (writes and queries)."""
    sent: list[str] = []
    resource = instrument.resource
    inner_write, inner_query = resource.write, resource.query

    def write(message: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(message)
        return inner_write(message, *args, **kwargs)

    def query(message: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(message)
        return inner_query(message, *args, **kwargs)

    resource.write, resource.query = write, query
    return sent


# -- opening ----------------------------------------------------------------------------
@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_each_driver_identifies_its_sim_device(rm: pyvisa.ResourceManager, driver: str) -> None:
    instrument = opened(rm, driver)
    assert instrument.idn
    assert isinstance(instrument, DRIVERS[driver])
    assert instrument.errors() == []
    instrument.close()


def test_another_model_is_refused_at_open(rm: pyvisa.ResourceManager) -> None:
    with pytest.raises(InstrumentError, match=r"says it is 'RIGOL.*not a Siglent SDL1000X"):
        open_instrument("siglent-sdl1000x", RESOURCES["rigol-dl3000"], rm)
    with pytest.raises(InstrumentError, match=r"E36312A.*not a Keysight 34461A DMM"):
        open_instrument("keysight-34461a", RESOURCES["keysight-e36xx"], rm)


def test_unknown_driver_and_missing_resource_are_one_line_errors(
        rm: pyvisa.ResourceManager) -> None:
    with pytest.raises(InstrumentError) as unknown:
        open_instrument("fluke-8846a", RESOURCES["keysight-34461a"], rm)
    assert "fluke-8846a" in str(unknown.value) and "keysight-34461a" in str(unknown.value)

    class NoSuchResource:  # pyvisa-sim opens any name; a real manager does not
        def open_resource(self, resource_name: str) -> Any:
            raise pyvisa.errors.VisaIOError(pyvisa.constants.StatusCode.error_resource_not_found)

    with pytest.raises(InstrumentError) as missing:
        open_instrument("keysight-34461a", "TCPIP::10.9.9.9::5025::SOCKET", NoSuchResource(),
                        name="dmm")
    assert str(missing.value).startswith("dmm: cannot open") and "\n" not in str(missing.value)
    assert issubclass(InstrumentError, CellguardError)


def test_the_korad_is_opened_as_a_9600_8n1_serial_line(rm: pyvisa.ResourceManager) -> None:
    korad = opened(rm, "korad-ka3005p")
    assert korad.resource.baud_rate == 9600
    assert korad.resource.data_bits == 8
    assert korad.resource.parity == pyvisa.constants.Parity.none
    assert korad.resource.stop_bits == pyvisa.constants.StopBits.one
    assert korad.idn == "KORAD KA3005P V5.8 SN:03379314"


# -- sources and sinks whose sim holds their state --------------------------------------
def direction(instrument: SourceSink) -> float:
    return -1.0 if not instrument.CAN_SOURCE else 1.0


@pytest.mark.parametrize("driver", STATEFUL)
def test_window_current_readback_and_off(rm: pyvisa.ResourceManager, driver: str) -> None:
    inst = opened(rm, driver)
    inst.off()  # from the state it was found in
    assert not inst.output_on()
    inst.set_voltage_window(2.5, 4.2)
    inst.off()  # with the window set, output already off
    amps = 1.25 * direction(inst)
    inst.set_current(amps)
    assert inst.output_on()
    inst.set_current(2 * amps)  # a new setpoint while on
    assert inst.output_on()
    assert inst.measure_voltage_v() > 0
    measured = inst.measure_current_a()
    assert measured != 0
    inst.off()  # from on
    assert not inst.output_on()
    inst.off()  # twice: still fine
    inst.set_current(0.0)  # zero is off
    assert not inst.output_on()


def test_a_load_reports_the_current_it_sinks_as_negative(rm: pyvisa.ResourceManager) -> None:
    for driver in ("rigol-dl3000", "siglent-sdl1000x"):
        inst = opened(rm, driver)
        assert inst.measure_current_a() == -2.0  # the sim's load answers +2.0000


def test_the_rigol_backstop_is_the_battery_stop_voltage(rm: pyvisa.ResourceManager) -> None:
    rigol = opened(rm, "rigol-dl3000")
    sent = record(rigol)
    rigol.set_voltage_window(2.8, 4.2)
    assert ":SOUR:BATT:VST 2.800" in sent and ":SOUR:BATT:VEN 1" in sent
    assert rigol.query_float(":SOUR:BATT:VST?") == 2.8
    rigol.set_current(-1.5)
    assert ":SOUR:FUNC:MODE BATT" in sent
    assert rigol.query_float(":SOUR:BATT:RANG?") == 4.0  # 1.5 A: the low range
    rigol.set_current(-12.0)
    assert rigol.query_float(":SOUR:BATT:RANG?") == 40.0
    assert rigol.query_float(":SOUR:BATT:LEV:IMM?") == 12.0
    assert rigol.output_on()


def test_the_siglent_backstop_is_an_unlatched_von(rm: pyvisa.ResourceManager) -> None:
    sdl = opened(rm, "siglent-sdl1000x")
    sdl.write(":SOUR:VOLT:LATC:STAT 1")  # latched, as the load may be found
    assert sdl.query_bool(":SOUR:VOLT:LATC:STAT?")
    sdl.set_voltage_window(2.9, 4.2)
    assert sdl.query_float(":SOUR:VOLT:LEV:ON?") == 2.9
    assert not sdl.query_bool(":SOUR:VOLT:LATC:STAT?")


def test_the_keysight_sets_its_voltage_limit_and_ovp_on_its_own_output(
        rm: pyvisa.ResourceManager) -> None:
    psu = opened(rm, "keysight-e36xx")
    assert (psu.MAX_VOLTAGE_V, psu.MAX_CURRENT_A) == (6.0, 5.0)  # E36312A output 1
    psu.set_voltage_window(3.0, 4.2)
    assert psu.query_float("VOLT? (@1)") == 4.2
    assert psu.query_float("VOLT:PROT? (@1)") == pytest.approx(4.4)
    two = KeysightE36xx(rm.open_resource(RESOURCES["keysight-e36xx"]), channel=2)
    two.identify()
    assert (two.MAX_VOLTAGE_V, two.MAX_CURRENT_A) == (25.0, 1.0)
    two.set_voltage_window(12.0, 16.8)
    two.set_current(0.5)
    assert two.output_on() and not psu.output_on()
    assert two.measure_voltage_v() == 16.4
    two.off()


def test_the_itech_drives_both_ways_within_its_voltage_limits(
        rm: pyvisa.ResourceManager) -> None:
    itech = opened(rm, "itech-it-m3400")
    itech.set_voltage_window(11.2, 16.8)
    assert itech.query_float("VOLT:LIM?") == 16.8
    assert itech.query_float("VOLT:LIM:LOW?") == 11.2
    itech.set_current(-3.0)
    assert itech.query_float("CURR?") == -3.0
    itech.set_current(2.0)
    assert itech.query_float("CURR?") == 2.0
    assert itech.measure_current_a() == -2.0  # the sim: sinking 2 A
    itech.off()


# -- refusals before anything is sent --------------------------------------------------
@pytest.mark.parametrize("driver, call", [
    ("rigol-dl3000", lambda i: i.set_current(1.0)),  # a load cannot charge
    ("siglent-sdl1000x", lambda i: i.set_current(0.5)),
    ("keysight-e36xx", lambda i: i.set_current(-0.5)),  # a supply cannot discharge
    ("siglent-spd3303x", lambda i: i.set_current(-0.5)),
    ("korad-ka3005p", lambda i: i.set_current(-0.5)),
    ("rigol-dl3000", lambda i: i.set_current(-41.0)),  # beyond the model
    ("siglent-sdl1000x", lambda i: i.set_current(-31.0)),
    ("keysight-e36xx", lambda i: i.set_current(5.5)),
    ("siglent-spd3303x", lambda i: i.set_current(3.3)),
    ("korad-ka3005p", lambda i: i.set_current(5.2)),
    ("itech-it-m3400", lambda i: i.set_current(-30.5)),
    ("itech-it-m3400", lambda i: i.set_current(float("nan"))),
    ("rigol-dl3000", lambda i: i.set_voltage_window(2.5, 151.0)),
    ("keysight-e36xx", lambda i: i.set_voltage_window(0.0, 6.5)),
    ("korad-ka3005p", lambda i: i.set_voltage_window(0.0, 31.0)),
    ("itech-it-m3400", lambda i: i.set_voltage_window(4.2, 2.5)),  # empty window
    ("itech-it-m3400", lambda i: i.set_current(1.0)),  # no window yet: no backstop
    ("bloomy-abs", lambda i: i.set_cell_voltage(8, 3.7)),  # channels 0..7
    ("bloomy-abs", lambda i: i.set_cell_voltage(0, 5.5)),
    ("bloomy-abs", lambda i: i.set_current_limits(0, 1.0, -1.0)),
    ("bloomy-abs", lambda i: i.enable(-1, True)),
    ("keysight-34970a", lambda i: i.set_closed(121, True)),
    ("keysight-34970a", lambda i: i.closed(100)),
])
def test_out_of_range_is_refused_before_anything_is_sent(
        rm: pyvisa.ResourceManager, driver: str, call: Any) -> None:
    inst = opened(rm, driver)
    sent = record(inst)
    with pytest.raises(InstrumentError, match=inst.name):
        call(inst)
    assert sent == []


# -- errors the instrument itself reports ----------------------------------------------
@pytest.mark.parametrize("driver, amps", [
    ("rigol-dl3000", -45.0), ("siglent-sdl1000x", -35.0), ("keysight-e36xx", 6.0),
    ("itech-it-m3400", 31.0),
])
def test_a_value_the_instrument_refuses_is_caught_in_its_error_queue(
        rm: pyvisa.ResourceManager, driver: str, amps: float) -> None:
    inst = opened(rm, driver)
    inst.set_voltage_window(2.5, 4.2)
    inst.MAX_CURRENT_A = 100.0  # a driver that let it through: the instrument says no
    with pytest.raises(InstrumentError, match=r"reported -222,\"Data out of range\" after"):
        inst.set_current(amps)
    assert inst.errors() == []  # emptied
    inst.off()


def test_the_spd3303x_reads_its_error_queue_without_commas(
        rm: pyvisa.ResourceManager) -> None:
    spd = opened(rm, "siglent-spd3303x")
    spd.MAX_CURRENT_A = 10.0
    spd.set_voltage_window(0.0, 4.2)
    with pytest.raises(InstrumentError, match="-222  Data out of range"):
        spd.set_current(5.0)
    assert spd.errors() == []


def test_the_abs_refuses_through_its_error_queue(rm: pyvisa.ResourceManager,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    abs_ = opened(rm, "bloomy-abs")
    monkeypatch.setattr(bloomy_abs, "MAX_CELL_V", 6.0)
    with pytest.raises(InstrumentError, match="-222"):
        abs_.set_cell_voltage(3, 5.5)


# -- sims that cannot hold a state: the read-back must catch it ------------------------
def test_the_spd3303x_confirms_its_output_from_the_status_word(
        rm: pyvisa.ResourceManager) -> None:
    spd = opened(rm, "siglent-spd3303x")
    spd.set_voltage_window(0.0, 4.2)
    assert spd.query_float("CH1:VOLT?") == 4.2
    with pytest.raises(InstrumentError, match=r"'OUTP CH1,ON'.*SYST:STAT\?.*off"):
        spd.set_current(1.5)  # the sim's status word says off: refused
    assert spd.query_float("CH1:CURR?") == 1.5
    spd.off()
    assert not spd.output_on()
    assert spd.measure_voltage_v() == 16.4 and spd.measure_current_a() == 1.0


def test_the_korad_reads_back_strictly(rm: pyvisa.ResourceManager) -> None:
    korad = opened(rm, "korad-ka3005p")
    sent = record(korad)
    korad.set_voltage_window(0.0, 4.2)
    assert "VSET1:04.20" in sent
    assert korad.query("VSET1?") == "04.20"
    korad.off()
    assert not korad.output_on()
    with pytest.raises(InstrumentError, match=r"STATUS.*off"):
        korad.set_current(1.0)  # the sim's status byte says off: refused
    assert korad.query("ISET1?") == "1.000"
    assert korad.measure_voltage_v() == 16.4 and korad.measure_current_a() == 1.0
    korad.MAX_CURRENT_A = 6.0  # the Korad ignores 5.500 A (no error queue to say so)
    with pytest.raises(InstrumentError, match=r"sent 'ISET1:5.500' but 'ISET1\?' reads back "
                                              r"'1.000'"):
        korad.set_current(5.5)


def test_the_korad_pauses_between_commands(rm: pyvisa.ResourceManager) -> None:
    korad = opened(rm, "korad-ka3005p")
    now = [100.0]
    slept: list[float] = []
    korad.clock = lambda: now[0]
    korad.sleep = lambda s: (slept.append(s), now.__setitem__(0, now[0] + s))
    korad.pause_s = 0.05
    korad._last = -1e9  # the last command long ago
    korad.set_voltage_window(0.0, 4.2)  # VSET1:04.20 at once, VSET1? 50 ms later
    assert slept == [pytest.approx(0.05)]
    now[0] += 1.0  # idle for a second: no pause needed
    slept.clear()
    korad.write("OUT0")
    assert slept == []


def test_the_relay_card_confirms_each_relay(rm: pyvisa.ResourceManager) -> None:
    card = opened(rm, "keysight-34970a")
    sent = record(card)
    card.set_closed(105, False)
    assert sent[0] == "ROUT:OPEN (@105)" and "ROUT:CLOS? (@105)" in sent
    assert not card.closed(105)
    with pytest.raises(InstrumentError, match=r"ROUT:CLOS \(@101\).*reads back off"):
        card.set_closed(101, True)  # the sim's relays stay open: refused
    card.open_all()
    card.off()
    assert "ROUT:OPEN (@101:120)" in sent


# -- the cell emulator and the meter -----------------------------------------------------
def test_the_abs_sets_reads_back_and_measures_every_cell(rm: pyvisa.ResourceManager) -> None:
    abs_ = opened(rm, "bloomy-abs")
    for k in range(abs_.CHANNELS):
        abs_.set_cell_voltage(k, 3.5 + k / 100)
        abs_.set_current_limits(k, 2.0, 1.5)
        abs_.enable(k, True)
        assert abs_.enabled(k)
        assert abs_.measure_cell_voltage_v(k) == pytest.approx(3.6 + (k + 1) / 100)
        assert abs_.query_float(f"SOUR{k + 1}:VOLT?") == pytest.approx(3.5 + k / 100)
    abs_.off()
    assert not any(abs_.enabled(k) for k in range(abs_.CHANNELS))
    abs_.off()  # from off


def test_the_dmm_reads_a_dc_voltage(rm: pyvisa.ResourceManager) -> None:
    dmm = opened(rm, "keysight-34461a")
    assert dmm.measure_dc_voltage_v() == pytest.approx(16.4012345)
    dmm.off()
