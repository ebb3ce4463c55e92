"""Helpers for running the board HAL (hal_adc_mux) on the fake ``machine``
with a modelled ADC: a Bms on a bench whose cell voltages a test scripts."""

from __future__ import annotations

import copy
import importlib
import json
from types import ModuleType
from typing import Any

from cellguard.paths import boards_dir
from cellguard.sim import fake_machine
from cellguard.sim.adc import AdcModel
from cellguard.sim.fake_machine import AdcBench
from cellguard_fw.app import Bms
from cellguard_fw.hal_sim import SimPort


def board(name: str) -> dict[str, Any]:
    return json.loads((boards_dir() / f"{name}.json").read_text())


def hal_module(bench: AdcBench, module: str = "cellguard_fw.hal_adc_mux") -> ModuleType:
    """The HAL module, imported with ``machine`` wired to ``bench``."""
    fake_machine.install(bench)
    return importlib.import_module(module)


def make_hal(board_cfg: dict[str, Any], bench: AdcBench,
             module: str = "cellguard_fw.hal_adc_mux") -> Any:
    mod = hal_module(bench, module)

    class BenchHal(mod.AdcMuxHal):  # type: ignore[name-defined,misc]
        def storage_dir(self) -> None:
            return None  # nothing on this machine's disk

    return BenchHal(board_cfg)


def ov_trip(board_cfg: dict[str, Any], adc: AdcModel, ramp_mv_per_s: float = 1.0,
            start_v: float = 4.20, module: str = "cellguard_fw.hal_adc_mux",
            bench: AdcBench | None = None, max_s: float = 300.0) -> float:
    """Ramp cell 1 from ``start_v`` up at ``ramp_mv_per_s`` (the others at 4.0 V)
    and return the true cell voltage, V, when cell_overvoltage trips."""
    cfg = copy.deepcopy(board_cfg)
    cfg["estimator"] = "none"
    bench = bench or AdcBench(cfg, adc)
    bench.adc = adc
    hal = make_hal(cfg, bench, module)
    bms = Bms(cfg, hal, SimPort())
    period = cfg["control_period_ms"]
    bit = 1  # cell_overvoltage
    v = start_v
    for _ in range(int(max_s * 1000 / period)):
        bench.cells_v = [4.0, v] + [4.0] * (cfg["cells"] - 2)
        bms.step(period)
        if bms.protection.faults & bit:
            return v
        v += ramp_mv_per_s / 1000.0 * period / 1000.0
    raise AssertionError(f"no over-voltage trip below {v:.4f} V")
