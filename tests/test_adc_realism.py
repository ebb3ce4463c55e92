"""ADC realism (issue 12, item 13; item 14's AdcMuxHal.set_balancing).

The MCU's own ADC is modelled sample by sample (``cellguard.sim.adc``): the
RP2040's E11 DNL steps and noisy 3.3 V reference, the ESP32's flattening above
2.45 V with 11 dB attenuation and its uncalibrated ``read_u16``. The board HAL
(``hal_adc_mux``) runs on the fake ``machine`` (``cellguard.sim.fake_machine``)
against that model, inside a whole Bms, so the figures are the firmware's.
"""

from __future__ import annotations

import copy
import statistics

import pytest
from adc_bench import board, make_hal, ov_trip

from cellguard.boards import BoardFileError, check_board
from cellguard.sim.adc import AdcModel
from cellguard.sim.fake_machine import AdcBench
from cellguard_fw.adc_front import ACCURATE_MV, DNL_LSB, pin_mv, range_error, rp2040_fix
from cellguard_fw.app import Bms
from cellguard_fw.chemistry import PROFILES
from cellguard_fw.frontend import Frontend
from cellguard_fw.hal_sim import SimPort

MCU_BOARDS = [("pico-4s", "rp2040"), ("esp32-4s", "esp32")]
OV_LIMIT_V = PROFILES["nmc"]["cell_ov_mv"][0] / 1000.0


# -- the model ------------------------------------------------------------------


def test_rp2040_model_has_the_e11_steps() -> None:
    """Without noise, each of the codes 512, 1536, 2560, 3584 covers DNL_LSB + 1
    LSB of input, every other code one LSB; the errors are centred."""
    adc = AdcModel("rp2040", noise_lsb=0.0, vref_noise=0.0)
    width: dict[int, int] = {}
    for i in range(4096 * 8):  # 1/8 LSB steps
        code = adc.rp2040_code(i / 8)
        width[code] = width.get(code, 0) + 1
    for step in (512, 1536, 2560, 3584):
        assert width[step] == (DNL_LSB + 1) * 8, step
    others = [w for c, w in width.items() if c not in (512, 1536, 2560, 3584) and 20 < c < 4000]
    assert set(others) == {8}
    # what a code reads against its input: high at the bottom, low at the top
    assert adc.rp2040_code(100.0) > 100 + 5 and adc.rp2040_code(4000.0) < 4000 - 5


def test_models_are_seeded_and_deterministic() -> None:
    for kind in ("rp2040", "esp32"):
        a, b, c = AdcModel(kind, seed=3), AdcModel(kind, seed=3), AdcModel(kind, seed=4)
        ra = [a.read_u16(2.0) for _ in range(50)]
        assert ra == [b.read_u16(2.0) for _ in range(50)]
        assert ra != [c.read_u16(2.0) for _ in range(50)]
        assert len(set(ra)) > 3, "the model is noisy"


def test_rp2040_reference_noise_scales_with_the_reading() -> None:
    quiet = AdcModel("rp2040", noise_lsb=0.0, vref_noise=0.0015, dnl_lsb=0.0, offset_lsb=0.0)
    lo = statistics.pstdev(quiet.read_u16(0.3) for _ in range(2000))
    hi = statistics.pstdev(quiet.read_u16(3.0) for _ in range(2000))
    assert hi > 5 * lo


def test_esp32_model_read_u16_is_uncalibrated_read_uv_flattens_above_2v45() -> None:
    adc = AdcModel("esp32", noise_lsb=0.0)
    u16 = adc.read_u16(2.0) / 65535 * 3.3
    assert abs(u16 - 2.0) > 0.05, "read_u16 carries the chip's gain error"
    assert adc.read_uv(2.0) == pytest.approx(2_000_000, abs=1500)
    assert adc.read_uv(2.4) == pytest.approx(2_400_000, abs=1500)
    assert adc.read_uv(2.8) < 2_800_000 - 50_000, "flattens above the accurate range"
    with pytest.raises(AttributeError):
        AdcModel("rp2040").read_uv(1.0)


# -- the HAL's correction ------------------------------------------------------------


def test_rp2040_fix_undoes_the_steps() -> None:
    adc = AdcModel("rp2040", noise_lsb=0.0, vref_noise=0.0)
    worst = 0.0
    for i in range(100 * 4, 4050 * 4):
        x = i / 4
        fixed = rp2040_fix(adc.rp2040_code(x)) / 16
        worst = max(worst, abs(fixed - x))
    assert worst <= (DNL_LSB + 1) / 2 + 0.01  # half the wide code's width, nowhere more
    raw_worst = max(abs(adc.rp2040_code(i / 4) - i / 4) for i in range(400, 4050 * 4))
    assert raw_worst > 2 * DNL_LSB


def test_hal_averages_several_samples_a_channel() -> None:
    cfg = board("pico-4s")
    bench = AdcBench(cfg, AdcModel("rp2040"))
    hal = make_hal(cfg, bench)
    cells, temps = [0] * cfg["cells"], [0] * cfg["temp_sensors"]
    hal.sample(cells, temps)
    channels = cfg["cells"] + cfg["temp_sensors"] + 1
    assert bench.reads == channels * cfg.get("adc_samples", 16)
    assert bench.reads >= 8 * channels


@pytest.mark.parametrize(("name", "kind"), MCU_BOARDS)
def test_hal_readings_within_2mv_across_the_range(name: str, kind: str) -> None:
    cfg = board(name)
    fe = Frontend(cfg["frontend"])
    bench = AdcBench(cfg, AdcModel(kind, seed=5))
    hal = make_hal(cfg, bench)
    cells, temps = [0] * cfg["cells"], [0] * cfg["temp_sensors"]
    worst = 0.0
    for mv in range(2500, 4401, 37):
        bench.cells_v = [mv / 1000.0] * cfg["cells"]
        errors = []
        for _ in range(4):
            hal.sample(cells, temps)
            errors += [fe.cell.convert(c) - mv for c in cells]
        worst = max(worst, abs(statistics.fmean(errors)))
    assert worst < 2.0, f"{name}: the mean reading is {worst:.1f} mV off"


# -- the whole board: over-voltage with the modelled ADC -------------------------------


@pytest.mark.parametrize(("name", "kind"), MCU_BOARDS)
def test_ov_trips_within_10mv_of_the_limit(name: str, kind: str) -> None:
    """A cell rising 1 mV/s through the 4250 mV limit on a Pico or an ESP32 board,
    8 seeds: the output opens with the true cell within 10 mV of the limit. On
    the old HAL (one uncorrected sample, read_u16, the old ESP32 divider) the
    Pico tripped 17..27 mV late and the ESP32 at 4.20 V, 49 mV early."""
    errors = [(ov_trip(board(name), AdcModel(kind, seed)) - OV_LIMIT_V) * 1000
              for seed in range(8)]
    assert all(0 <= e <= 10 for e in errors), errors


@pytest.mark.parametrize(("name", "kind"), MCU_BOARDS)
def test_noise_does_not_postpone_the_trip(name: str, kind: str) -> None:
    """One sample a period (``adc_samples: 1``, single-sample noise of 4..7 mV at
    the cell), the cell held 5 mV over the limit: a delay that restarts on any
    sample inside the limit tripped after 10 s on average on the Pico (up to 32 s);
    N of M trips in under 3 s on average."""
    cfg = board(name)
    cfg["adc_samples"] = 1
    start = OV_LIMIT_V + 0.005
    times = [(ov_trip(cfg, AdcModel(kind, seed), ramp_mv_per_s=0.001, start_v=start,
                      max_s=900) - start) * 1e6 for seed in range(10)]
    assert statistics.fmean(times) < 3.0, times
    assert max(times) < 8.0, times


# -- calibration and the front end -------------------------------------------------


def _readings_mv(hal: object, fe: Frontend, bench: AdcBench, volts: float, n: int,
                 rounds: int = 8) -> list[float]:
    cells, temps = [0] * n, [0] * len(bench.temps_c)
    bench.cells_v = [volts] * n
    sums = [0.0] * n
    for _ in range(rounds):
        hal.sample(cells, temps)  # type: ignore[attr-defined]
        for k in range(n):
            sums[k] += fe.cell.convert(cells[k])
    return [s / rounds for s in sums]


@pytest.mark.parametrize(("name", "kind"), MCU_BOARDS)
def test_per_channel_calibration_from_the_board_file(name: str, kind: str) -> None:
    """Each mux channel's own gain and offset (a differential amplifier's resistor
    tolerances), fitted at two voltages and written into the board file, take
    every channel to within 2 mV."""
    cfg = board(name)
    n = cfg["cells"]
    gains, offsets = [0.01, -0.006, 0.003, -0.012][:n], [0.006, -0.004, 0.0, 0.009][:n]
    fe = Frontend(cfg["frontend"])

    def bench() -> AdcBench:
        return AdcBench(cfg, AdcModel(kind, seed=2), gains, offsets)

    raw = bench()
    hal = make_hal(cfg, raw)
    lo, hi = _readings_mv(hal, fe, raw, 3.0, n), _readings_mv(hal, fe, raw, 4.2, n)
    assert max(abs(r - 4200) for r in hi) > 30, "the channels' errors show uncalibrated"
    pairs = []
    for k in range(n):
        gain = (4200 - 3000) / (hi[k] - lo[k])
        pairs.append([round(gain, 5), round(3000 - gain * lo[k], 2)])
    calibrated = copy.deepcopy(cfg)
    calibrated["frontend"]["cell_adc"]["calibration"] = pairs
    check_board(calibrated, "calibrated")
    b = bench()
    hal = make_hal(calibrated, b)
    for volts in (2.8, 3.6, 4.25):
        got = _readings_mv(hal, fe, b, volts, n, rounds=16)
        assert max(abs(g - volts * 1000) for g in got) < 2.0, (volts, got)


def test_every_mcu_board_keeps_its_cells_in_the_accurate_range() -> None:
    for name, kind in MCU_BOARDS:
        cfg = board(name)
        top = PROFILES[cfg["chemistry"]]["hard_cell_mv"][1]
        fs = cfg["frontend"]["cell_adc"]["full_scale_mv"]
        assert range_error(kind, fs, top) is None, name
        assert pin_mv(top, fs) <= ACCURATE_MV[kind][1]
        assert pin_mv(4200, fs) <= 2450 or kind == "rp2040"


def test_a_board_file_that_overdrives_the_esp32_adc_is_refused() -> None:
    cfg = board("esp32-4s")
    cfg["frontend"]["cell_adc"]["full_scale_mv"] = 5000  # 4.3 V at 2.84 V on the pin
    with pytest.raises(BoardFileError, match="accurate range"):
        check_board(cfg, "esp32 board")
    with pytest.raises(ValueError, match="accurate range"):
        make_hal(cfg, AdcBench(cfg, AdcModel("esp32")))
    lfp = board("pico-4s")
    lfp["chemistry"] = "lfp"
    check_board(lfp, "pico lfp")  # 3.75 V at 2.48 V on a Pico: fine


@pytest.mark.parametrize("bad", [[[1.0, 0]], [[2.0, 0]] * 4, [[1.0]] * 4, ["x"] * 4])
def test_bad_calibration_is_a_clear_board_file_error(bad: list) -> None:
    cfg = board("pico-4s")
    cfg["frontend"]["cell_adc"]["calibration"] = bad
    with pytest.raises(BoardFileError, match="calibration"):
        check_board(cfg, "pico")


# -- balancing (item 14) ---------------------------------------------------------------


def _balancing_run(cfg: dict) -> tuple[Bms, AdcBench, object]:
    cfg = copy.deepcopy(cfg)
    bench = AdcBench(cfg, AdcModel("rp2040", seed=1))
    bench.cells_v = [3.70, 3.70, 3.70, 3.95]  # the top cell well above the others
    hal = make_hal(cfg, bench)
    bms = Bms(cfg, hal, SimPort())
    for _ in range(600):  # a minute
        bms.step(cfg["control_period_ms"])
        if bms.estimate_due():
            bms.estimate()
    return bms, bench, hal


def test_a_board_without_balancing_pins_reports_no_balancing() -> None:
    bms, _, _ = _balancing_run(board("pico-4s"))
    assert bms.estimator is not None and bms.estimator.runs > 10
    assert bms.estimator.balancing == 0, "ESTIMATE would report a mask nothing applies"
    assert bms.balancing == 0


def test_balancing_pins_follow_the_mask() -> None:
    cfg = board("pico-4s")
    cfg["pins"]["balance"] = [6, 7, 8, 9]
    check_board(cfg, "pico with balancing")
    bms, bench, _ = _balancing_run(cfg)
    mask = bms.estimator.balancing if bms.estimator else 0
    assert mask == 0b1000, "the high cell bleeds"
    assert [bench.levels[p] for p in (6, 7, 8, 9)] == [0, 0, 0, 1]
    bms.hal.set_balancing(0b0101)
    assert [bench.levels[p] for p in (6, 7, 8, 9)] == [1, 0, 1, 0]
    bad = copy.deepcopy(cfg)
    bad["pins"]["balance"] = [6, 7]
    with pytest.raises(BoardFileError, match="one pin per cell"):
        check_board(bad, "pico")
    asks = board("pico-4s")
    asks["balancing"] = True  # balancing asked for, no pins to do it with
    with pytest.raises(BoardFileError, match="no balancing pins"):
        check_board(asks, "pico")


# -- the simulated board's sensor model --------------------------------------------------


def _sim_board(**sensors: object) -> dict:
    from cellguard.boards import load_board

    b = load_board("sim-4s")
    b["sensors"] = {**b.get("sensors", {}), **sensors}
    return b


@pytest.mark.parametrize("kind", ["rp2040", "esp32"])
def test_sensor_model_hands_the_simulated_board_what_the_board_hal_would(kind: str) -> None:
    """``"adc"`` in a board file's ``"sensors"``: every code of a simulated board
    passes the modelled MCU ADC and the HAL's averaging. Averaged readings are
    within 2 mV; one sample a period is several times noisier."""
    from cellguard.sim.sensors import SensorModel

    fs = 6600 if kind == "esp32" else 5000  # an ESP32 board divides its cells down
    cfg = _sim_board(adc=kind)
    cfg["frontend"]["cell_adc"]["full_scale_mv"] = fs
    fe = Frontend(cfg["frontend"])
    averaged = SensorModel(cfg, seed=3)
    single = SensorModel(_sim_board(adc=kind, adc_samples=1) | {"frontend": cfg["frontend"]},
                         seed=3)
    assert averaged.adc is not None and averaged.adc.kind == kind
    for volts in (3.0, 3.7, 4.25):
        avg = [fe.cell.convert(averaged.cell_code(volts)) - volts * 1000 for _ in range(300)]
        one = [fe.cell.convert(single.cell_code(volts)) - volts * 1000 for _ in range(300)]
        assert abs(statistics.fmean(avg)) < 2.0, (volts, statistics.fmean(avg))
        assert statistics.pstdev(one) > 2.5 * statistics.pstdev(avg)
    plain = SensorModel(_sim_board(), seed=3)
    assert plain.adc is None and len({plain.cell_code(3.7) for _ in range(20)}) == 1


@pytest.mark.parametrize(("sensors", "words"), [
    ({"adc": "avr"}, "sensors.adc must be one of"),
    ({"adc_samples": 0}, "adc_samples must be a whole number"),
    ({"adc_samples": 2.5}, "adc_samples must be a whole number"),
])
def test_bad_adc_keys_are_refused(sensors: dict, words: str) -> None:
    from cellguard.sim.sensors import SensorModel

    with pytest.raises(ValueError, match=words):
        SensorModel(_sim_board(**sensors))


def test_simulated_board_runs_on_the_modelled_adc() -> None:
    from cellguard.sim import SimulatedBoard

    with SimulatedBoard(board=_sim_board(adc="rp2040"), runtime="cpython",
                        lockstep=True) as sim:
        sim.advance(3.0)
        cells = sim.runtime.firmware.bms.meas.cells_mv  # type: ignore[union-attr]
        truth = sim.truth().cells_v
        assert max(abs(c - t * 1000) for c, t in zip(cells, truth, strict=True)) < 8


# -- an open NTC at the converter's full scale ------------------------------------------


class OpenNtcBench(AdcBench):
    """The last NTC open: its pull-up takes the pin to the 3.3 V rail."""

    def pin_v(self, pin: int) -> float:
        if pin == self.board["pins"]["temp_adcs"][-1]:
            return 3.3
        return super().pin_v(pin)


@pytest.mark.parametrize(("name", "kind"), MCU_BOARDS)
def test_an_open_ntc_is_a_disconnected_sensor_even_where_the_adc_saturates(
        name: str, kind: str) -> None:
    """On an ESP32 at 11 dB the converter reads a pin at the 3.3 V rail as about
    2.9 V (read_uv), far from the rail's code: the front end's open-sensor check
    needs the converter's full scale (2450 mV, set by hal_adc_mux), or an open NTC
    reads as a cold cell only (undertemperature). On both boards it is
    sensor_disconnected (and, read as the coldest, undertemperature as well)."""
    from cellguard_fw import codec

    cfg = copy.deepcopy(board(name))
    cfg["estimator"] = "none"
    bench = OpenNtcBench(cfg, AdcModel(kind, seed=3))
    bench.cells_v = [3.7] * cfg["cells"]
    bms = Bms(cfg, make_hal(cfg, bench), SimPort())
    for _ in range(50):  # 5 s: past both trip delays
        bms.step(cfg["control_period_ms"])
    assert bms.meas.temps_railed == 1
    assert bms.protection.faults & codec.FAULT_SENSOR_DISCONNECTED


@pytest.mark.parametrize(("name", "kind"), MCU_BOARDS)
def test_an_ntc_at_the_bottom_of_the_boards_range_is_not_open(name: str, kind: str) -> None:
    """-20 degC (the bottom of esp32-4s's stated -20..+80 degC) on every NTC: read,
    not railed."""
    cfg = copy.deepcopy(board(name))
    cfg["estimator"] = "none"
    bench = AdcBench(cfg, AdcModel(kind, seed=3))
    bench.temps_c = [-20.0] * cfg["temp_sensors"]
    bms = Bms(cfg, make_hal(cfg, bench), SimPort())
    for _ in range(10):
        bms.step(cfg["control_period_ms"])
    assert bms.meas.temps_railed == 0
    assert all(-215 <= t <= -185 for t in bms.meas.temps_dc), list(bms.meas.temps_dc)
