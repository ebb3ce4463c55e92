"""The cell model file: validation, interpolation, round trip, the shipped cells."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellguard.estimation import cellmodel
from cellguard.estimation.cellmodel import TABLE_KEYS, CellModel, CellModelError
from cellguard.paths import repo_root
from cellguard.sim.plant import PLANT_DEFAULTS, ocv_v
from cellguard_fw.chemistry import PROFILES

CELLS_DIR = repo_root() / "cells"
SIM_FILES = {"nmc": "sim-nmc.json", "lfp": "sim-lfp.json", "sodium_ion": "sim-sodium-ion.json"}


def small() -> dict[str, Any]:
    """A valid two-temperature, three-point model."""
    return {
        "format": "cellguard-cell", "version": 1, "name": "test cell", "chemistry": "nmc",
        "capacity_ah": 2.0, "soc_pct": [0, 50, 100], "temps_c": [0.0, 40.0],
        "ocv_v": [[3.0, 3.6, 4.1], [3.1, 3.7, 4.2]],
        "r0_ohm": [[0.04, 0.02, 0.03], [0.02, 0.01, 0.015]],
        "r1_ohm": [[0.01, 0.01, 0.01], [0.005, 0.005, 0.005]],
        "tau1_s": [[10, 20, 30], [10, 20, 30]],
        "r2_ohm": [[0.0, 0.02, 0.02], [0.01, 0.01, 0.01]],
        "tau2_s": [[100, 200, 300], [100, 200, 300]],
        "source": "written by hand",
    }


# -- the shipped cells -------------------------------------------------------------


def test_shipped_cells_are_valid() -> None:
    files = sorted(CELLS_DIR.glob("*.json"))
    assert {f.name for f in files} >= set(SIM_FILES.values())
    for f in files:
        m = cellmodel.load(f)
        assert m.to_json() == f.read_text(encoding="utf-8"), f"{f.name} not in canonical form"


@pytest.mark.parametrize("chemistry", sorted(SIM_FILES))
def test_sim_cells_match_the_plant(chemistry: str) -> None:
    # The shipped file is what sim_cell makes from chemistry.py and sim-4s now;
    # regenerate with: cellmodel.save(cellmodel.sim_cell(chem), "cells/sim-....json")
    shipped = cellmodel.load(CELLS_DIR / SIM_FILES[chemistry])
    assert shipped == cellmodel.sim_cell(chemistry)
    # ... and its OCV is the plant's wherever the plant's is interpolated.
    table = PROFILES[chemistry]["ocv_mv"]
    for soc in (0.0, 2.5, 13.0, 50.0, 77.7, 100.0):
        assert shipped.ocv(soc) == pytest.approx(ocv_v(table, soc / 100.0), abs=1e-9)
    p = shipped.params(50.0, 10.0)
    assert p.r2_ohm == PLANT_DEFAULTS["r2_mohm"] / 1000.0
    assert p.tau2_s == PLANT_DEFAULTS["tau2_s"]
    assert p.r0_ohm == 0.020 and p.r1_ohm == 0.015 and p.tau1_s == 60.0  # boards/sim-4s.json


# -- lookups -------------------------------------------------------------------------


def test_bilinear_interpolation_and_clamping() -> None:
    m = CellModel.from_dict(small())
    assert m.value("r0_ohm", 25.0, 0.0) == pytest.approx(0.03)  # halfway along SoC
    assert m.value("r0_ohm", 50.0, 20.0) == pytest.approx(0.015)  # halfway along T
    # Both: the mean of the four corners of the (0..50 %, 0..40 degC) cell.
    assert m.value("r0_ohm", 25.0, 20.0) == pytest.approx((0.04 + 0.02 + 0.02 + 0.01) / 4)
    assert m.ocv(75.0, 10.0) == pytest.approx(0.75 * 3.85 + 0.25 * 3.95)
    # Clamped beyond the table on every side.
    assert m.value("r0_ohm", -10.0, -20.0) == 0.04
    assert m.value("r0_ohm", 130.0, 90.0) == 0.015
    assert m.params(100.0, 40.0) == cellmodel.CellParams(4.2, 0.015, 0.005, 30.0, 0.01, 300.0)


def test_soc_from_ocv_inverts_ocv() -> None:
    m = CellModel.from_dict(small())
    for soc in (0.0, 12.5, 50.0, 99.0, 100.0):
        assert m.soc_from_ocv(m.ocv(soc, 20.0), 20.0) == pytest.approx(soc, abs=1e-9)
    assert m.soc_from_ocv(2.0) == 0.0
    assert m.soc_from_ocv(5.0) == 100.0


# -- validation ----------------------------------------------------------------------


def _set(path: str, value: Any) -> Any:
    def edit(d: dict[str, Any]) -> None:
        keys = path.split(".")
        target: Any = d
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        last = keys[-1]
        if value is _DELETE:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return edit


_DELETE = object()

BAD = [
    (_set("ocv_v", _DELETE), "missing key 'ocv_v'"),
    (_set("extra", 1), "unknown key 'extra'"),
    (_set("format", "other"), "format must be 'cellguard-cell'"),
    (_set("version", 2), "version must be 1"),
    (_set("name", " "), "name must not be empty"),
    (_set("name", 3), "name must be a string"),
    (_set("chemistry", "lead_acid"), "chemistry must be one of nmc, lfp, sodium_ion"),
    (_set("capacity_ah", 0), "capacity_ah must be a number above 0"),
    (_set("capacity_ah", True), "capacity_ah must be a number above 0"),
    (_set("soc_pct.1", 100), "soc_pct must rise strictly: soc_pct[2] = 100"),
    (_set("soc_pct.0", 5), "soc_pct must run from 0 to 100"),
    (_set("soc_pct.1", "x"), "soc_pct[1] must be a finite number, not 'x'"),
    (_set("temps_c", []), "temps_c must be a non-empty list"),
    (_set("temps_c.1", 0.0), "temps_c must rise strictly: temps_c[1] = 0.0"),
    (_set("r1_ohm", [[0.01, 0.01, 0.01]]), "r1_ohm must be a list of 2 rows"),
    (_set("tau1_s.1", [10, 20]), "tau1_s[1] must be a list of 3 numbers"),
    (_set("r0_ohm.1.2", -0.001), "r0_ohm[1][2] must be above 0, not -0.001"),
    (_set("r0_ohm.0.0", float("nan")), "r0_ohm[0][0] must be a finite number, not nan"),
    (_set("r2_ohm.0.1", -1e-3), "r2_ohm[0][1] must be 0 or more"),
    (_set("tau1_s.0.0", 0), "tau1_s[0][0] must be above 0"),
    (_set("ocv_v.1.1", 4.3), "ocv_v[1] must rise strictly with soc_pct: ocv_v[1][2]"),
    (_set("tau2_s.1.2", 30), "tau2_s[1][2] = 30 must be above tau1_s[1][2] = 30"),
    (_set("ocv_v.0", "3.7"), "ocv_v[0] must be a list of 3 numbers"),
]


@pytest.mark.parametrize(("edit", "message"), BAD, ids=[m for _, m in BAD])
def test_invalid_files_name_key_and_index(edit: Any, message: str) -> None:
    d = small()
    edit(d)
    with pytest.raises(CellModelError) as info:
        CellModel.from_dict(d, where="x.json")
    assert str(info.value).startswith("x.json: ")
    assert message in str(info.value)


def test_not_an_object_and_not_json(tmp_path: Path) -> None:
    with pytest.raises(CellModelError, match="a cell file is a JSON object, not list"):
        CellModel.from_dict([1, 2])
    bad = tmp_path / "bad.json"
    bad.write_text("{ nope")
    with pytest.raises(CellModelError, match=r"bad\.json: not valid JSON"):
        cellmodel.load(bad)
    with pytest.raises(CellModelError, match="cannot read cell file"):
        cellmodel.load(tmp_path / "missing.json")


def test_constructing_an_invalid_model_fails() -> None:
    m = CellModel.from_dict(small())
    with pytest.raises(CellModelError, match=r"r0_ohm\[0\]\[0\] must be above 0"):
        CellModel(**{**{k: getattr(m, k) for k in ("name", "chemistry", "capacity_ah",
                                                   "soc_pct", "temps_c", "source")},
                     **{k: copy.deepcopy(getattr(m, k)) for k in TABLE_KEYS},
                     "r0_ohm": [[0.0, 0.02, 0.03], [0.02, 0.01, 0.015]]})


def test_source_is_optional_and_ints_are_read_as_floats() -> None:
    d = small()
    del d["source"]
    m = CellModel.from_dict(d)
    assert m.source == "" and m.soc_pct == [0.0, 50.0, 100.0]
    assert isinstance(m.tau1_s[0][0], float)


# -- round trip ------------------------------------------------------------------------

finite = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False, allow_infinity=False)


@st.composite
def models(draw: st.DrawFn) -> CellModel:
    inner = draw(st.lists(st.floats(min_value=0.01, max_value=99.99), max_size=6, unique=True))
    socs = [0.0, *sorted(set(inner)), 100.0]
    temps = sorted(draw(st.lists(st.floats(min_value=-40, max_value=80), min_size=1,
                                 max_size=3, unique=True)))
    n, m = len(temps), len(socs)

    def table(elements: st.SearchStrategy[float]) -> list[list[float]]:
        return [draw(st.lists(elements, min_size=m, max_size=m)) for _ in range(n)]

    ocv = []
    for _ in range(n):
        v = draw(st.floats(min_value=0.5, max_value=3.0))
        row = []
        for step in draw(st.lists(st.floats(min_value=1e-3, max_value=0.2), min_size=m,
                                  max_size=m)):
            v += step
            row.append(v)
        ocv.append(row)
    tau1 = table(st.floats(min_value=0.1, max_value=100.0))
    tau2 = [[t + draw(st.floats(min_value=0.5, max_value=5000.0)) for t in row] for row in tau1]
    return CellModel(
        name=draw(st.text(min_size=1).filter(str.strip)),
        chemistry=draw(st.sampled_from(cellmodel.CHEMISTRIES)),
        capacity_ah=draw(finite), soc_pct=socs, temps_c=temps, ocv_v=ocv,
        r0_ohm=table(finite), r1_ohm=table(st.floats(min_value=0.0, max_value=1.0)),
        tau1_s=tau1, r2_ohm=table(st.floats(min_value=0.0, max_value=1.0)), tau2_s=tau2,
        source=draw(st.text()))


@settings(max_examples=60, deadline=None)
@given(models())
def test_round_trip_through_json(model: CellModel) -> None:
    text = model.to_json()
    assert json.loads(text) == model.to_dict()
    assert CellModel.from_json(text) == model
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cell.json"
        cellmodel.save(model, path)
        again = cellmodel.load(path)
    assert again == model
    assert again.to_json() == text
    # Every lookup stays within the table's range.
    for key in TABLE_KEYS:
        values = [x for row in model.table(key) for x in row]
        x = model.value(key, 37.0, 21.0)
        assert min(values) - 1e-9 <= x <= max(values) + 1e-9
