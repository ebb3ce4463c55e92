"""Single precision on the host: the firmware's own code, every float rounded to binary32.

The RP2040 and ESP32 MicroPython ports compute floats in IEEE single precision
(binary32); CPython and the MicroPython WebAssembly port the simulator uses are
double precision. This module replays the firmware as a single-precision board
would run it, under CPython and from the unmodified sources:

- :class:`F32` is a ``float`` whose value is always a binary32 number and whose
  arithmetic (``+ - * / // % **``, unary ``-``, ``abs``, comparisons, the
  reflected forms) rounds every result to the nearest binary32, ties to even.
  An operand that is an ``int`` is converted first as MicroPython converts it
  (a small int in one rounding; a long int 16 bits at a time, rounding each
  step, as ``mpz_as_float`` does on a 32-bit port); a plain Python ``float`` is
  rounded to binary32 first and counted in :data:`STATS` (``mixed``): in a
  faithful replay there is none, every float the firmware sees is already an F32.
- ``exp``, ``sqrt`` (and the few other ``math`` functions below) take binary32
  arguments, compute in double and round: ``sqrt`` is then the correctly rounded
  binary32 result (double rounding is innocuous for it, as for + - * /); ``exp``
  within half an ulp plus a hair, where a board's single-precision ``expf`` is
  within about one ulp.
- :func:`load` imports the firmware package (``cellguard_fw``, from wherever it is
  imported from) a second time, as ``cellguard_fw_f32``, through an AST transform
  of each module's source: every float literal becomes its F32 (bound once, at
  import), every ``a / b`` converts an int divisor to F32 first (so ``int / int``,
  which under CPython gives a double, gives what MicroPython gives: both ints
  converted to binary32, then one rounded division), every ``float(x)`` call
  becomes :func:`f32`, ``a ** b`` on ints with a negative exponent goes through
  F32, and ``from math import ...`` takes these functions. Nothing else changes:
  the statements, their order and the integer arithmetic are the firmware's.

Why the results are the ones a binary32 machine gives: for + - * / and sqrt of
binary32 operands, the exact result rounded to double (53 bits) and then to
binary32 (24 bits) equals the exact result rounded once to binary32, because
53 >= 2 * 24 + 2 (double rounding is innocuous). A product of two binary32
numbers is even exact in double. So each F32 operation is the correctly rounded
IEEE 754 single-precision operation, round to nearest even.

Where a real board differs (docs/estimation.md, "Single precision"): the RP2040's
ROM float routines flush subnormal inputs and results to zero and treat NaN as
infinity; MicroPython's ``expf`` is its own single-precision libm's. :data:`STATS`
counts the subnormal results, NaN and overflows a replay produced, so a run with
none of them is not affected by the first two.

The counters are process-wide and not thread-safe: one replay at a time.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import math
import struct
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import Any, SupportsFloat, SupportsIndex

__all__ = [
    "F32", "STATS", "CovarianceCheck", "covariance_check", "exp", "f32", "load", "round32",
    "sqrt", "to_f32",
]

_S = struct.Struct("<f")
_pack = _S.pack
_I = struct.Struct("<I")
_unpack = _S.unpack
_new = float.__new__
_TINY = 1.1754943508222875e-38  # 2**-126, the smallest normal binary32 number
SMALL_INT_BITS = 31
"""MicroPython's small ints on a 32-bit port (object representation A): 31-bit signed."""
MPZ_DIGIT_BITS = 16
"""MicroPython's long ints on a 32-bit port: 16-bit digits (MPZ_DIG_SIZE)."""
PACKAGE = "cellguard_fw_f32"
"""The name :func:`load` imports the single-precision copy of the firmware under."""


@dataclass
class Float32Stats:
    """What the F32 operations met since :meth:`reset`."""

    mixed: int = 0  # operations with a plain (double) float operand: 0 in a faithful replay
    overflows: int = 0  # finite operands, a result beyond binary32's range (inf)
    nans: int = 0  # a NaN result
    subnormals: int = 0  # a result below 2**-126 but not zero (an RP2040 flushes it)

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)

    def snapshot(self) -> Float32Stats:
        return Float32Stats(self.mixed, self.overflows, self.nans, self.subnormals)


STATS = Float32Stats()
"""The process-wide counters the F32 operations update."""


def round32(x: float) -> float:
    """``x`` rounded to the nearest binary32 (ties to even), as a plain float;
    beyond binary32's range, an infinity of the same sign."""
    try:
        return _unpack(_pack(x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def _r(x: float) -> F32:
    """The F32 nearest ``x`` (a double result of one operation), counted."""
    try:
        y = _unpack(_pack(x))[0]
    except OverflowError:
        STATS.overflows += 1
        y = math.copysign(math.inf, x)
    if -_TINY < y < _TINY:
        if y:
            STATS.subnormals += 1
    elif y != y:
        STATS.nans += 1
    return _new(F32, y)


def int_value(n: int) -> float:
    """The binary32 value MicroPython on a 32-bit port gives the int ``n`` where a
    float is needed (``float(n)``, ``n / m``, ``n + x``, a comparison with a float):
    a small int (31-bit) rounded once; a long int as ``mpz_as_float`` builds it,
    ``val = val * 2**16 + digit`` from the top digit down, rounded each step."""
    limit = 1 << (SMALL_INT_BITS - 1)
    if -limit <= n < limit:
        return _unpack(_pack(float(n)))[0]  # |n| < 2**30: exact in double, one rounding
    m = -n if n < 0 else n
    digits = []
    while m:
        digits.append(m & 0xFFFF)
        m >>= MPZ_DIGIT_BITS
    val = 0.0
    for d in reversed(digits):
        # val * 65536 is exact (a power of two; beyond binary32's range it rounds to
        # inf, as on the board); adding d < 2**16 rounds once (either exact in double,
        # or d is below half an ulp of binary32 and vanishes either way).
        val = round32(val * 65536.0 + d)
    return -val if n < 0 else val


def _value(o: object) -> float | None:
    """An operand's binary32 value, or None when F32 does not take it."""
    t = type(o)
    if t is F32:
        return o  # type: ignore[return-value]
    if t is int or t is bool:
        return int_value(o)  # type: ignore[arg-type]
    if isinstance(o, float):
        STATS.mixed += 1  # a double met a binary32: the replay missed a conversion
        return round32(o)
    if isinstance(o, int):
        return int_value(int(o))
    return None


class F32(float):
    """A binary32 number; every operation on it rounds its result to binary32."""

    __slots__ = ()

    def __new__(cls, x: SupportsFloat | SupportsIndex | str | bytes = 0.0) -> F32:
        return f32(x)

    # + - * / // % and the comparisons: _arithmetic and _comparison, below the class

    def __pow__(self, o: object, mod: None = None) -> F32:  # type: ignore[override]
        v = _value(o)
        return NotImplemented if v is None else _r(_pow(float(self), v))

    def __rpow__(self, o: object, mod: None = None) -> F32:  # type: ignore[override]
        v = _value(o)
        return NotImplemented if v is None else _r(_pow(v, float(self)))

    def __neg__(self) -> F32:
        return _new(F32, -float(self))

    def __pos__(self) -> F32:
        return self

    def __abs__(self) -> F32:
        return _new(F32, abs(float(self)))

    def __round__(self, ndigits: SupportsIndex | None = None) -> Any:
        if ndigits is None:
            return round(float(self))
        return _r(round(float(self), ndigits))

    __hash__ = float.__hash__

    def __repr__(self) -> str:
        return f"F32({float(self)!r})"


def _arithmetic(op: Callable[[float, float], float], fast: bool = False, zero: bool = False
                ) -> tuple[Callable[[F32, object], F32], Callable[[F32, object], F32]]:
    """An operator's two methods, ``self op o`` and ``o op self``: the operand as
    a binary32 value (:func:`_value`; NotImplemented for what F32 does not take),
    the result rounded to binary32. ``fast``: an F32 operand skips the
    conversion (+ - *, the replay's most frequent); ``zero``: a zero divisor
    raises ZeroDivisionError with MicroPython's message."""

    def forward(self: F32, o: object) -> F32:
        if fast and type(o) is F32:
            return _r(op(self, o))  # type: ignore[arg-type]
        v = _value(o)
        if v is None:
            return NotImplemented
        if zero and not v:
            raise ZeroDivisionError("divide by zero")
        return _r(op(self, v))

    def reflected(self: F32, o: object) -> F32:
        v = _value(o)
        if v is None:
            return NotImplemented
        if zero and not self:
            raise ZeroDivisionError("divide by zero")
        return _r(op(v, self))

    return forward, reflected


def _comparison(op: Callable[[float, float], bool]) -> Callable[[F32, object], bool]:
    """A comparison with the operand converted to binary32 first (an int too, as
    MicroPython converts it), not CPython's exact comparison."""

    def compare(self: F32, o: object) -> bool:
        v = _value(o)
        return NotImplemented if v is None else op(self, v)

    return compare


F32.__add__, F32.__radd__ = _arithmetic(float.__add__, fast=True)
F32.__sub__, F32.__rsub__ = _arithmetic(float.__sub__, fast=True)
F32.__mul__, F32.__rmul__ = _arithmetic(float.__mul__, fast=True)
F32.__truediv__, F32.__rtruediv__ = _arithmetic(float.__truediv__, zero=True)
F32.__floordiv__, F32.__rfloordiv__ = _arithmetic(float.__floordiv__)
F32.__mod__, F32.__rmod__ = _arithmetic(float.__mod__)
F32.__eq__ = _comparison(float.__eq__)  # type: ignore[method-assign]
F32.__ne__ = _comparison(float.__ne__)  # type: ignore[method-assign]
F32.__lt__ = _comparison(float.__lt__)
F32.__le__ = _comparison(float.__le__)
F32.__gt__ = _comparison(float.__gt__)
F32.__ge__ = _comparison(float.__ge__)


def _pow(a: float, b: float) -> float:
    try:
        return a ** b
    except OverflowError:
        return math.copysign(math.inf, a) if b == int(b) and int(b) % 2 else math.inf


def f32(x: object) -> F32:
    """``float(x)`` on a binary32 machine: an int converted as MicroPython converts
    it, a float or a string (parsed to double first) rounded to binary32."""
    t = type(x)
    if t is F32:
        return x  # type: ignore[return-value]
    if t is int or t is bool:
        return _new(F32, int_value(x))  # type: ignore[arg-type]
    if isinstance(x, float):
        return _new(F32, round32(x))
    if isinstance(x, int):
        return _new(F32, int_value(int(x)))
    return _new(F32, round32(float(x)))  # type: ignore[arg-type]


def to_f32(obj: Any) -> Any:
    """``obj`` with every float in it (through dicts, lists and tuples) an F32: a
    board file or a cell model as the board's JSON parser gives it (see
    tests/test_float32.py on why rounding the double is the same for these files)."""
    if isinstance(obj, float):
        return f32(obj)
    if isinstance(obj, dict):
        return {k: to_f32(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_f32(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_f32(v) for v in obj)
    return obj


def _num(x: object) -> object:
    """A divisor: an int becomes its F32, so ``int / int`` divides in binary32."""
    t = type(x)
    if t is int or t is bool:
        return _new(F32, int_value(x))  # type: ignore[arg-type]
    return x


def _power(a: object, b: object) -> object:
    """``a ** b``: ints with a non-negative exponent stay ints; anything else in F32."""
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, F32) and b >= 0:
        return a ** b
    return f32(a) ** b


# -- the math functions the firmware imports ------------------------------------------------

_EXP_NUDGE = [0]


@contextmanager
def exp_nudged(ulps: int) -> Iterator[None]:
    """Every :func:`exp` result moved ``ulps`` binary32 ulps (towards +inf when
    positive) while the block runs: how much a board's ``expf``, which may be an
    ulp off the correctly rounded result, can change a replay."""
    _EXP_NUDGE[0] = ulps
    try:
        yield
    finally:
        _EXP_NUDGE[0] = 0


def _nudge(y: float, ulps: int) -> float:
    """Binary32 ``y`` moved ``ulps`` ulps (its bit pattern, for a finite non-zero y)."""
    (bits,) = _I.unpack(_pack(y))
    bits += ulps if y > 0 else -ulps
    return _unpack(_I.pack(bits))[0]


def _domain(x: float, y: float) -> F32:
    """MicroPython's math functions: a NaN or infinite result from a finite argument
    raises ``ValueError("math domain error")``."""
    r = _r(y)
    if (r != r and x == x) or (math.isinf(r) and not math.isinf(x)):
        raise ValueError("math domain error")
    return r


def _arg(x: SupportsFloat) -> float:
    """A math function's argument as binary32 (a plain double counted, as in F32)."""
    v = _value(x)
    return round32(float(x)) if v is None else v


def exp(x: SupportsFloat) -> F32:
    """``math.exp`` in binary32: the binary32 argument's exp in double, rounded
    (within 1 ulp of the correctly rounded binary32 result; a board's ``expf`` is
    within about 1 ulp of it too). An overflow raises ValueError, as MicroPython's
    does."""
    v = _arg(x)
    try:
        y = math.exp(v)
    except OverflowError:
        y = math.inf
    if _EXP_NUDGE[0] and math.isfinite(y) and y:
        y = _nudge(round32(y), _EXP_NUDGE[0])
    return _domain(v, y)


def sqrt(x: SupportsFloat) -> F32:
    """``math.sqrt`` in binary32: correctly rounded (a negative argument raises
    ValueError, as MicroPython's does)."""
    v = _arg(x)
    if v < 0:
        raise ValueError("math domain error")
    return _r(math.sqrt(v))


def log(x: SupportsFloat) -> F32:
    """``math.log`` in binary32 (double, rounded)."""
    v = _arg(x)
    if v <= 0:
        raise ValueError("math domain error")
    return _r(math.log(v))


def fabs(x: SupportsFloat) -> F32:
    return abs(f32(x))


def floor(x: SupportsFloat) -> int:
    return math.floor(f32(x))


def ceil(x: SupportsFloat) -> int:
    return math.ceil(f32(x))


def isfinite(x: SupportsFloat) -> bool:
    return math.isfinite(f32(x))


def isnan(x: SupportsFloat) -> bool:
    return math.isnan(f32(x))


def isinf(x: SupportsFloat) -> bool:
    return math.isinf(f32(x))


pi = f32(math.pi)
e = f32(math.e)
inf = f32(math.inf)
nan = f32(math.nan)
MATH_NAMES = ("exp", "sqrt", "log", "fabs", "floor", "ceil", "isfinite", "isnan", "isinf",
              "pi", "e", "inf", "nan")
"""What ``from math import ...`` in the firmware can take in single precision; a
name outside it fails the import, loudly, rather than computing in double."""

# -- the firmware, transformed ---------------------------------------------------------------

_HELPERS = {"_f32_float": f32, "_f32_num": _num, "_f32_pow": _power}


class _Transform(ast.NodeTransformer):
    """Every float the firmware makes, made a binary32 (the module docstring)."""

    def __init__(self) -> None:
        self.constants: dict[str, F32] = {}
        self._names: dict[tuple[float, float], str] = {}

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if type(node.value) is not float:
            return node
        key = (node.value, math.copysign(1.0, node.value))  # 0.0 and -0.0 apart
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = f"_f32_k{len(self._names)}"
            self.constants[name] = f32(node.value)
        return ast.copy_location(ast.Name(id=name, ctx=ast.Load()), node)

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Div):
            node.right = ast.copy_location(_call("_f32_num", node.right), node.right)
        elif isinstance(node.op, ast.Pow):
            return ast.copy_location(_call("_f32_pow", node.left, node.right), node)
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Div):
            node.value = ast.copy_location(_call("_f32_num", node.value), node.value)
        elif isinstance(node.op, ast.Pow):
            raise NotImplementedError("the float32 replay does not take '**=' "
                                      f"(line {node.lineno})")
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "float":
            node.func = ast.copy_location(ast.Name(id="_f32_float", ctx=ast.Load()), node.func)
        elif isinstance(node.func, ast.Name) and node.func.id == "pow":
            raise NotImplementedError(f"the float32 replay does not take pow() "
                                      f"(line {node.lineno})")
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if node.module == "math" and not node.level:
            for alias in node.names:
                if alias.name not in MATH_NAMES:
                    raise ImportError(f"math.{alias.name} has no single-precision version "
                                      f"in {__name__} (line {node.lineno})")
            node.module = __name__
        return node

    def visit_Import(self, node: ast.Import) -> ast.AST:
        for alias in node.names:
            if alias.name == "math":
                alias.name = __name__
                alias.asname = alias.asname or "math"
        return node


def _call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


def transform(source: str, filename: str = "<firmware>") -> tuple[Any, dict[str, Any]]:
    """Compile firmware ``source`` for single precision: the code object and the
    names to put into the module's namespace before running it."""
    tree = ast.parse(source, filename)
    tr = _Transform()
    tree = ast.fix_missing_locations(tr.visit(tree))
    code = compile(tree, filename, "exec")
    return code, {**_HELPERS, **tr.constants}


class _Loader(importlib.abc.Loader):
    def __init__(self, path: Path) -> None:
        self.path = path

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        code, names = transform(self.path.read_text(), str(self.path))
        module.__dict__.update(names)
        exec(code, module.__dict__)


class _Finder(importlib.abc.MetaPathFinder):
    """Serves ``cellguard_fw_f32`` and its modules from the firmware's folder."""

    def __init__(self, package: str, folder: Path) -> None:
        self.package = package
        self.folder = folder

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == self.package:
            file = self.folder / "__init__.py"
            return importlib.util.spec_from_file_location(
                fullname, file, loader=_Loader(file),
                submodule_search_locations=[str(self.folder)])
        if fullname.startswith(self.package + "."):
            file = self.folder / (fullname[len(self.package) + 1:].replace(".", "/") + ".py")
            if file.is_file():
                return importlib.util.spec_from_file_location(fullname, file,
                                                              loader=_Loader(file))
        return None


_FINDERS: dict[str, _Finder] = {}


def load(package: str = PACKAGE) -> ModuleType:
    """The firmware package in single precision: ``load().estimator`` is
    ``cellguard_fw.estimator`` with every float a binary32 (the firmware's folder
    is the one ``cellguard_fw`` imports from; imported once per process, and its
    finder stays on ``sys.meta_path`` so a module the firmware imports later is
    transformed too, never loaded as it is)."""
    import cellguard_fw  # (registers the micropython stand-in under CPython)

    if package not in _FINDERS:
        folder = Path(cellguard_fw.__file__).resolve().parent
        _FINDERS[package] = _Finder(package, folder)
        sys.meta_path.insert(0, _FINDERS[package])
    pkg = importlib.import_module(package)
    for name in ("chemistry", "estimator", "health", "balancing", "soc"):
        importlib.import_module(f"{package}.{name}")
    return pkg


def plain_floats(root: object, package: str = PACKAGE) -> list[str]:
    """Where a plain (double) float sits in the state reachable from ``root``
    through the single-precision package's objects, lists, tuples and dicts: the
    leaks a faithful replay has none of."""
    found: list[str] = []
    seen: set[int] = set()

    def walk(obj: object, where: str) -> None:
        if type(obj) is float:
            found.append(where)
            return
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{where}[{k!r}]")
        elif isinstance(obj, list | tuple):
            for i, v in enumerate(obj):
                walk(v, f"{where}[{i}]")
        elif type(obj).__module__.startswith(package) and hasattr(obj, "__dict__"):
            for k, v in vars(obj).items():
                walk(v, f"{where}.{k}")

    walk(root, "state")
    return found


# -- the covariance ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CovarianceCheck:
    """One covariance matrix judged: ``pd`` when it is symmetric (within
    ``ASYMMETRY_LIMIT``) and its Cholesky factorisation succeeds (every leading
    minor positive); ``pivot`` the smallest Cholesky pivot over its diagonal
    element (1: uncorrelated, near 0: nearly singular; 0 when it failed);
    ``asymmetry`` the largest |P[r][c] - P[c][r]| / sqrt(P[r][r] P[c][c])."""

    pd: bool
    pivot: float
    asymmetry: float
    finite: bool


ASYMMETRY_LIMIT = 1e-4
"""Symmetric enough: a few hundred binary32 ulps of the correlation (the predict step
computes the two halves of P in different orders; the Joseph update writes both)."""


def covariance_check(p: Sequence[Sequence[float]]) -> CovarianceCheck:
    """Judge ``p`` (computed in double from its values, whatever their type)."""
    n = len(p)
    a = [[float(p[r][c]) for c in range(n)] for r in range(n)]
    if not all(math.isfinite(v) for row in a for v in row):
        return CovarianceCheck(False, 0.0, math.inf, False)
    asym = 0.0
    for r in range(n):
        for c in range(r + 1, n):
            scale = math.sqrt(abs(a[r][r] * a[c][c]))
            d = abs(a[r][c] - a[c][r])
            if d:
                asym = max(asym, d / scale if scale else math.inf)
    s = [[(a[r][c] + a[c][r]) * 0.5 for c in range(n)] for r in range(n)]
    low = [[0.0] * n for _ in range(n)]
    pivot = 1.0
    for k in range(n):
        d = s[k][k] - sum(low[k][j] * low[k][j] for j in range(k))
        if not d > 0.0 or not s[k][k] > 0.0:
            return CovarianceCheck(False, 0.0, asym, True)
        pivot = min(pivot, d / s[k][k])
        low[k][k] = math.sqrt(d)
        for r in range(k + 1, n):
            low[r][k] = (s[r][k] - sum(low[r][j] * low[k][j] for j in range(k))) / low[k][k]
    return CovarianceCheck(asym <= ASYMMETRY_LIMIT, pivot, asym, True)


def nonfinite(values: Sequence[object]) -> int:
    """How many of ``values`` are floats that are NaN or infinite."""
    return sum(1 for v in values if isinstance(v, float) and not math.isfinite(v))

