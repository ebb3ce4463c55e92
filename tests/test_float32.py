"""The single-precision replay (host/cellguard/estimation/float32.py): its arithmetic is
binary32's, it catches every float the firmware makes, and the firmware's estimator
replayed in it stays within 0.1 SoC points of double with a positive definite
covariance.

The oracle for binary32 arithmetic is NumPy's float32 (IEEE 754 single precision,
round to nearest even); for the rounding of decimal numbers, exact rational
arithmetic.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_estimator import NMC_CELL, TraceMaker

from cellguard import cli
from cellguard.estimation import cellmodel, estimate, float32
from cellguard.estimation.float32 import F32, STATS, f32, int_value, round32

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware" / "cellguard_fw"

binary32 = st.floats(width=32, allow_nan=False)
OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
       "<": operator.lt, "<=": operator.le, "==": operator.eq, ">": operator.gt}
small_ints = st.integers(-(1 << 30), (1 << 30) - 1)


def bits(x: float) -> int:
    return int(np.float32(x).view(np.uint32))


def same(a: float, b: float) -> bool:
    """The same binary32 number (NaN matching NaN)."""
    return (math.isnan(a) and math.isnan(b)) or bits(a) == bits(b)


def exact_round32(q: Fraction) -> float:
    """The binary32 number nearest the rational ``q``, ties to even (normal range)."""
    if q == 0:
        return 0.0
    sign, q = (-1.0 if q < 0 else 1.0), abs(q)
    e = q.numerator.bit_length() - q.denominator.bit_length()
    while q / Fraction(2) ** e >= 2:
        e += 1
    while q / Fraction(2) ** e < 1:
        e -= 1
    assert -126 <= e <= 127
    m = round(q / Fraction(2) ** e * (1 << 23))  # Fraction rounds half to even
    return sign * math.ldexp(m, e - 23)


# -- binary32 arithmetic ---------------------------------------------------------------------


def test_single_precision_is_not_double() -> None:
    big = F32(1e8)
    assert (big + F32(1.0)) - big == 0.0  # 1e8 + 1 is 1e8 in binary32 (ulp 8)
    assert (1e8 + 1.0) - 1e8 == 1.0
    assert F32(16777216.0) + F32(1.0) == F32(16777216.0)  # 2**24 + 1 rounds to even
    assert F32(16777216.0) + F32(3.0) == F32(16777220.0)
    assert F32(0.1) + F32(0.2) == F32(0.3)  # true in binary32, false in double
    assert 0.1 + 0.2 != 0.3
    assert float(F32(1.0) / F32(3.0)) == float(np.float32(1.0) / np.float32(3.0))
    assert float(F32(1.0) / F32(3.0)) != 1.0 / 3.0
    assert type(F32(2.0) * 3) is F32 and type(3 - F32(2.0)) is F32 and type(-F32(1.0)) is F32
    assert type(abs(F32(-1.5))) is F32 and type(sum([F32(0.5), F32(0.25)])) is F32
    assert int(F32(2.7)) == 2 and int(F32(-2.7)) == -2 and round(F32(2.5)) == 2
    assert type(round(F32(2.25), 1)) is F32 and type(float(F32(1.5))) is float
    assert max(F32(1.0), 2) == 2 and min(F32(1.0), 2) == 1 and type(min(F32(1.0), 2)) is F32


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
@given(a=binary32, b=binary32)
def test_operations_are_numpy_float32s(op: str, a: float, b: float) -> None:
    """Every F32 operation is the IEEE single-precision one, round to nearest even."""
    if op == "/" and b == 0:
        with pytest.raises(ZeroDivisionError):
            F32(a) / F32(b)
        return
    fn = OPS[op]
    with np.errstate(all="ignore"):
        want = fn(np.float32(a), np.float32(b))
    got = fn(F32(a), F32(b))
    assert type(got) is F32
    assert same(got, float(want)), (a, op, b, got, want)


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "<", "<=", "==", ">"])
@given(a=binary32, n=small_ints)
def test_an_int_operand_is_converted_to_binary32_first(op: str, a: float, n: int) -> None:
    """As MicroPython does: in ``x + n`` and ``n + x`` the int is converted to binary32
    (rounded) first; a comparison compares binary32 numbers."""
    na, nn = np.float32(a), np.float32(n)
    fa = F32(a)
    fn = OPS[op]
    with np.errstate(all="ignore"):
        if op in "+-*/":
            if n or op != "/":
                assert same(fn(fa, n), float(fn(na, nn)))
            if a or op != "/":
                assert same(fn(n, fa), float(fn(nn, na)))
        else:
            want = fn(float(na), float(nn))
            assert fn(fa, n) == want and fn(n, fa) == fn(float(nn), float(na))


@given(a=binary32)
def test_sqrt_is_correctly_rounded_and_exp_within_one_ulp(a: float) -> None:
    if a >= 0:
        assert same(float32.sqrt(F32(a)), float(np.sqrt(np.float32(a))))
    else:
        with pytest.raises(ValueError, match="math domain error"):
            float32.sqrt(F32(a))
    if math.isfinite(a) and math.isinf(round32(math.exp(min(a, 700.0)))):
        with pytest.raises(ValueError, match="math domain error"):  # as MicroPython's
            float32.exp(F32(a))
        return
    got = float32.exp(F32(a))
    with np.errstate(all="ignore"):
        want = float(np.exp(np.float32(a)))
    # NumPy's own float32 exp (SIMD) is not correctly rounded: a few ulp from it
    # (2 seen for a = 2.46875); the reference is the correctly rounded value below.
    assert abs(bits(got) - bits(want)) <= 3 or got == want
    assert same(got, round32(math.exp(float(np.float32(a)))))


def test_ints_convert_as_micropython_converts_them() -> None:
    """A small int (31-bit on a 32-bit port) in one rounding; a long int 16 bits at a
    time, rounding each step (mpz_as_float), which can differ from one rounding."""
    for n in (0, 1, -1, 16777217, -16777219, (1 << 30) - 1, -(1 << 30)):
        assert int_value(n) == float(np.float32(n))
    n = ((1 << 24) + 1 << 16) + 0xFFFF  # 2**40 + 131071
    assert float(np.float32(n)) == 2.0 ** 40 + 2.0 ** 17  # one rounding: up
    assert int_value(n) == 2.0 ** 40  # MicroPython: 2**24 + 1 rounds to even first
    assert int_value(-n) == -(2.0 ** 40)
    for n in (10 ** 12 + 7, 3 * 10 ** 10 + 12345, -(10 ** 11) - 3):
        assert abs(bits(int_value(n)) - bits(float(np.float32(n)))) <= 1


def test_a_double_that_meets_a_binary32_is_counted() -> None:
    STATS.reset()
    x = F32(2.0) * 0.1  # the double 0.1 is rounded to binary32 first ...
    assert x == F32(0.1) * F32(2.0)
    assert STATS.mixed == 1  # ... and counted: a faithful replay has none
    y = F32(2.0) * F32(0.1) + 3
    assert STATS.mixed == 1 and type(y) is F32
    STATS.reset()


def test_overflow_nan_and_subnormal_results_are_counted() -> None:
    STATS.reset()
    big = F32(3e38) * F32(10.0)
    assert math.isinf(big) and STATS.overflows == 1
    assert math.isnan(big - big) and STATS.nans == 1
    tiny = F32(1e-30) * F32(1e-10)  # 1e-40: subnormal in binary32 (an RP2040 flushes it)
    assert 0 < tiny < 1.2e-38 and STATS.subnormals == 1
    STATS.reset()


# -- the firmware's own numbers --------------------------------------------------------------


def _firmware_literals() -> list[str]:
    """Every float literal, as written, in the firmware modules the replay runs (the
    estimator and what it imports)."""
    float32.load()
    names = sorted(m for m in sys.modules if m.startswith(float32.PACKAGE + "."))
    assert "cellguard_fw_f32.estimator" in names and "cellguard_fw_f32.health" in names
    found = []
    for path in (FIRMWARE / (name.split(".")[1] + ".py") for name in names):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Constant) and type(node.value) is float:
                assert node.end_lineno == node.lineno and node.end_col_offset is not None
                line = lines[node.lineno - 1].encode()  # the offsets count UTF-8 bytes
                found.append(line[node.col_offset:node.end_col_offset].decode())
    return found


def _cell_file_numbers() -> list[str]:
    found: list[str] = []
    for path in sorted((ROOT / "cells").glob("*.json")):
        json.loads(path.read_text(), parse_float=lambda s: found.append(s) or 0.0)
    return found


def test_literals_and_cell_files_round_as_a_board_parses_them() -> None:
    """MicroPython parses a decimal number to binary32 as its digits M (an integer) and
    a power of ten k: M converted, scaled by 2**k, then multiplied or divided by 5**|k|.
    With M < 2**24 and |k| <= 10 every step but the last is exact (5**10 < 2**24; its
    powf gives 5**k exactly), so the board gets the correctly rounded binary32 number.
    The replay rounds the double instead: the same number, for each of these."""
    texts = _firmware_literals() + _cell_file_numbers()
    assert len(texts) > 1000
    for text in texts:
        d = Decimal(text).normalize()
        digits, k = d.as_tuple().digits, int(d.as_tuple().exponent)
        m = int("".join(map(str, digits)))
        assert m < 1 << 24 and -10 <= k <= 10, text
        if m:
            assert f32(float(text)) == exact_round32(Fraction(text)), text


def test_the_firmware_is_transformed_and_nothing_else() -> None:
    fw = float32.load()
    est = fw.estimator
    assert est.exp is float32.exp and est.sqrt is float32.sqrt
    assert fw.balancing.exp is float32.exp
    defaults = est.PackEkf.__init__.__defaults__
    assert defaults and all(type(d) is F32 for d in defaults)
    assert type(est.DEFAULT_R0_OHM) is F32 and type(est.CONTINUOUS_S) is F32
    assert all(type(h) is F32 for h in est.PEAK_S)
    assert type(est.PLAUSIBLE_MARGIN_MV) is int  # the integers stay integers
    assert type(fw.health.Health(3.0, None).rest_ma) is int
    import cellguard_fw.estimator

    assert cellguard_fw.estimator.exp is math.exp  # the double firmware is untouched


SNIPPET = """
from math import sqrt

def current(charge, elapsed):
    return charge / elapsed / 1000.0 if elapsed else 0.0

def mean(total, k):
    x = total
    x /= k
    return x, float(total), 2 ** -1, sqrt(k)
"""


def _run(code: object, names: dict[str, object]) -> dict[str, object]:
    namespace = {"__name__": "snippet", **names}
    exec(code, namespace)  # type: ignore[arg-type]
    return namespace


def test_int_divisions_and_float_calls_make_binary32() -> None:
    """``charge / elapsed`` on ints gives a double in CPython; the transform makes it
    what MicroPython makes: both ints converted to binary32, one rounded division."""
    charge, elapsed = 123456789, 1003  # a double quotient rounds the other way here
    code, names = float32.transform(SNIPPET)
    ns = _run(code, names)
    STATS.reset()
    got = ns["current"](charge, elapsed)  # type: ignore[operator]
    want = np.float32(np.float32(charge) / np.float32(elapsed)) / np.float32(1000.0)
    assert type(got) is F32 and same(got, float(want))
    x, fl, half, root = ns["mean"](charge, elapsed)  # type: ignore[operator]
    assert STATS.mixed == 0
    assert same(x, float(np.float32(charge) / np.float32(elapsed)))
    assert type(fl) is F32 and same(fl, float(np.float32(charge)))
    assert type(half) is F32 and same(half, 0.5) and type(root) is F32
    # Without the transform the int division is a double, caught where it meets binary32.
    plain = _run(compile(SNIPPET.replace("1000.0", "_k"), "snippet", "exec"),
                 {"_k": F32(1000.0)})
    got = plain["current"](charge, elapsed)  # type: ignore[operator]
    assert STATS.mixed == 1 and not same(got, float(want))
    STATS.reset()


def test_a_math_function_without_a_binary32_version_is_refused() -> None:
    with pytest.raises(ImportError, match=r"math\.sin"):
        float32.transform("from math import exp, sin\n")


# -- the covariance check ----------------------------------------------------------------------


def test_the_covariance_check_tells_positive_definite_from_not() -> None:
    good = [[4.0, 0.01, 0.0, 0.01], [0.01, 1e-4, 0.0, 0.0], [0.0, 0.0, 1e-4, 0.0],
            [0.01, 0.0, 0.0, 2.5e-3]]
    c = float32.covariance_check(good)
    assert c.pd and c.finite and 0 < c.pivot <= 1 and c.asymmetry == 0
    indefinite = [row[:] for row in good]
    indefinite[0][1] = indefinite[1][0] = 0.03  # |corr| > 1
    assert not float32.covariance_check(indefinite).pd
    negative = [row[:] for row in good]
    negative[2][2] = -1e-12
    assert not float32.covariance_check(negative).pd
    asym = [row[:] for row in good]
    asym[0][3] = 0.011
    assert not float32.covariance_check(asym).pd
    nan = [row[:] for row in good]
    nan[3][3] = math.nan
    assert not float32.covariance_check(nan).finite


# -- the estimator replayed ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> cellmodel.CellModel:
    return cellmodel.load(NMC_CELL)


@pytest.fixture(scope="module")
def ten_minutes() -> estimate.Trace:
    """10 min of random load pulses from 90 %, 4 cells, 2 mV noise, a 50 mA offset."""
    tm = TraceMaker(offset_a=0.05, seed=3)
    tm.run(600, "pulses")
    return tm.trace


def test_the_estimator_in_single_precision_stays_with_double(
        model: cellmodel.CellModel, ten_minutes: estimate.Trace) -> None:
    double = estimate.RunSummary("cpython")
    cp = list(estimate.run_cpython(ten_minutes, model, "ekf", None, double))
    run = estimate.run(ten_minutes, model, "ekf", runtime="float32")
    sp = list(run)
    assert isinstance(run, estimate.ReplayRun)
    assert len(sp) == len(cp) == 600
    assert all(type(v) is float for v in sp[-1])  # the rows are plain numbers
    diffs = [abs(a[1] - b[1]) for a, b in zip(cp, sp, strict=True)]
    assert max(diffs) < 0.1
    assert max(diffs) > 0  # it did compute in single precision
    s = run.summary
    assert s.steps == 600 and s.pd_every_step and s.finite, s.describe()
    assert s.stats.mixed == 0 and s.leaks == []  # no double met a binary32
    assert s.stats.subnormals == 0 and s.stats.overflows == 0 and s.stats.nans == 0
    assert double.pd_every_step and double.finite
    assert "positive definite after every one of 600 steps" in s.describe()


def test_an_exp_an_ulp_off_changes_nothing_that_matters(
        model: cellmodel.CellModel, ten_minutes: estimate.Trace) -> None:
    """A board's expf may be an ulp off the correctly rounded result the replay uses:
    every exp an ulp up, or down, moves the SoC by far less than the 0.01 % reported."""
    one_cell = estimate.Trace(ten_minutes.t_s[:300], ten_minutes.current_a[:300],
                              [r[:1] for r in ten_minutes.cells_v[:300]],
                              ten_minutes.temps_c[:300])
    base = [r[1] for r in estimate.run(one_cell, model, "ekf", runtime="float32")]
    for ulps in (1, -1):
        with float32.exp_nudged(ulps):
            nudged = [r[1] for r in estimate.run(one_cell, model, "ekf", runtime="float32")]
        assert max(abs(a - b) for a, b in zip(base, nudged, strict=True)) < 0.001


def test_estimate_command_in_float32(tmp_path: Path, ten_minutes: estimate.Trace,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "trace.csv"
    with open(trace, "w") as f:
        f.write("t_s,current_a,cell1_v,cell2_v,cell3_v,cell4_v,temp1_c\n")
        for k in range(60):
            f.write(",".join(str(x) for x in (ten_minutes.t_s[k], ten_minutes.current_a[k],
                                               *ten_minutes.cells_v[k],
                                               ten_minutes.temps_c[k][0])) + "\n")
    out = tmp_path / "est.csv"
    argv = ["estimate", "--input", str(trace), "--cell", str(NMC_CELL), "--out", str(out),
            "--runtime", "float32"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "(ekf, float32) written to" in text
    assert "float32: covariance positive definite after every one of 60 steps" in text
    assert "no NaN or infinity" in text and "0 doubles met" in text
    assert len(out.read_text().splitlines()) == 61


def test_float32_is_a_runtime_for_both_estimators(model: cellmodel.CellModel,
                                                  ten_minutes: estimate.Trace) -> None:
    assert "float32" in estimate.RUNTIMES
    with pytest.raises(estimate.TraceError, match="float32"):
        list(estimate.run(ten_minutes, model, runtime="float64"))
    short = estimate.Trace(ten_minutes.t_s[:60], ten_minutes.current_a[:60],
                           ten_minutes.cells_v[:60], ten_minutes.temps_c[:60])
    cp = list(estimate.run(short, model, "coulomb", 70.0))
    run = estimate.run(short, model, "coulomb", 70.0, runtime="float32")
    sp = list(run)
    assert isinstance(run, estimate.ReplayRun) and run.summary.pd_every_step
    assert max(abs(a[1] - b[1]) for a, b in zip(cp, sp, strict=True)) < 0.01


def test_a_small_current_on_a_large_pack_is_counted_in_single_precision() -> None:
    """10 mA on a 100 Ah pack moves the SoC 3e-6 points a second, below half the
    last digit of a binary32 80 %: summed plainly it is never counted (0.000 of
    0.060 points in 6 h). The filter's compensated sum counts it."""
    cfg = json.loads((Path(__file__).resolve().parents[1] / "cells" / "sim-lfp.json").read_text())
    scale = cfg["capacity_ah"] / 100.0
    cfg["capacity_ah"] = 100.0
    for key in ("r0_ohm", "r1_ohm", "r2_ohm"):
        cfg[key] = [[v * scale for v in row] for row in cfg[key]]
    fw = float32.load()
    model = fw.estimator.CellModel(float32.to_f32(cfg))
    ekf = fw.estimator.PackEkf(model, f32(80.0))
    for _ in range(6 * 3600):
        ekf.predict(f32(-0.010), 1000, 250)
    moved = float(ekf.soc) - 80.0
    exact = -0.010 * 6 * 100.0 / 100.0  # A x h x 100 % / Ah
    assert moved == pytest.approx(exact, rel=0.02)
