"""Can the board itself verify an Ed25519 signature (RFC 8032) at boot? Measured under
real MicroPython, projected onto an RP2040.

Run from the repository root::

    .venv/bin/python benchmarks/ed25519_board.py [--reps R] [--batch-ms MS] [--no-timing]
    .venv/bin/python benchmarks/ed25519_board.py --quick   # a smoke run, ~3 s

The board checks each file's SHA-256 against its manifest; a signature over the
manifest's hash would tell it the manifest is the vendor's. Is one Ed25519 verify
affordable on an RP2040, in MicroPython, at boot (goal: under 2 s)?

The verifier (between the ``board code`` markers) is measurement code only, never
deployed: RFC 8032 section 5.1 and FIPS 180-4 written plainly in Python, run as that
text under CPython and under the MicroPython WebAssembly port. Two verifies: ``verify``
([s]B == R + [k]A, two double-and-adds, as the RFC reads) and ``verify_joint`` (both
products in one Straus-Shamir pass). MicroPython's ``hashlib`` has no ``sha512``, so
there the pure one runs; missing builtins (3-argument ``pow``, ``int.from_bytes`` and
``to_bytes``) are replaced by the code's own.

Correctness: RFC 8032's TEST 1-3 verify and their copies with a bit flipped in R, in
S or in the message fail, under CPython (both SHA-512s) and MicroPython, both
verifies. Figures, measured in a fresh interpreter: the time of each verify and of
its parts, projected onto an RP2040 by published figures of three loops run here
too (``PUBLISHED``; the model weighs big-integer work at its own measured cost);
the heap, including the verify's peak live heap, from a copy of it that yields at
the statements marked ``# step`` (``stepped_source``: derived from the same text at
run time, so the timed code carries no hook). benchmarks/README.md explains the
projection and records the figures.

This is a benchmark: it never asserts timing; the goal lines say PASS or FAIL and
the exit status is 0 either way (1 only if a correctness check fails).
``tests/test_ed25519_board.py`` asserts the correctness facts, under both
interpreters.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
import tokenize
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellguard.sim.runtime import MicroPythonRuntime

GOAL_MS = 2000.0  # one verify at boot, projected onto an RP2040
ROUGHNESS = 2.0  # the projection is good to about this factor (as estimator_cost.py's)
CALIBRATION_ITERS = 10_000  # iterations of the integer calibration loop per call
PI_DIGITS = 1000  # the published "Pi Calculation 1000"
SMALL_P = 127  # 2**7 - 1: the field of the small-integer run (every product a small int)
RP2040_HEAP = 233_024  # the same table's RP2040 MicroPython heap (mem_free + mem_alloc)


@dataclass(frozen=True)
class Published:
    """Published MicroPython speed figures for the RP2040 (benchmarks/README.md)."""

    source: str
    url: str
    board: str
    add_iterations: int
    add_ms: float  # 'Integer addition 1000000 times'
    mul_ms: float  # 'Integer multiplication 1000000 times' (12345678 * 56781234: big)
    pi_digits: int
    pi_ms: float  # 'Pi Calculation 1000 bits' (decimal digits, in fact)

    @property
    def add_us(self) -> float:
        return self.add_ms * 1000.0 / self.add_iterations

    @property
    def mul_us(self) -> float:
        return self.mul_ms * 1000.0 / self.add_iterations


PUBLISHED = Published(
    source="shaoziyang/micropython_benchmarks, README 'Reference test results' "
           "(benchmark.py: add_test, mul_test, pi_test), RP2040 MicroPython column",
    url="https://github.com/shaoziyang/micropython_benchmarks",
    board="RP2040 at 125 MHz, MicroPython v1.23.0",
    add_iterations=1_000_000,
    add_ms=7984.0,
    mul_ms=28283.0,
    pi_digits=PI_DIGITS,
    pi_ms=868.0,
)


@dataclass(frozen=True)
class Vector:
    """A test vector of RFC 8032 section 7.1 (hex)."""

    name: str
    secret: str
    public: str
    message: str
    signature: str


RFC8032_VECTORS: tuple[Vector, ...] = (
    Vector("TEST 1",
           "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
           "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
           "",
           "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555f"
           "b8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    Vector("TEST 2",
           "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
           "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
           "72",
           "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da08"
           "5ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    Vector("TEST 3",
           "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
           "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
           "af82",
           "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18"
           "ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
)

# The timed message: what a signed manifest would carry, its SHA-256.
MANIFEST_HASH = hashlib.sha256(b"cellguard manifest.json, a benchmark stand-in").digest()
BENCH_SECRET = hashlib.sha256(b"cellguard ed25519_board benchmark key").digest()


# --- board code: begin -------------------------------------------------------------------
# Runs under CPython (this module) and, as this text, under MicroPython. Measurement
# only: never deployed to a board. A statement marked ``# step`` ends a step of the heap
# profile's stepped copy (stepped_source); here the mark is only a comment.

try:
    HAS_POW3 = pow(3, 5, 7) == 5
except Exception:
    HAS_POW3 = False
try:
    HAS_FROM_BYTES = (int.from_bytes(b"\x01\x02", "little") == 0x0201
                      and int.from_bytes(b"\x01\x02", "big") == 0x0102)
except Exception:
    HAS_FROM_BYTES = False
try:
    HAS_TO_BYTES = (0x0102).to_bytes(2, "big") == b"\x01\x02"
except Exception:
    HAS_TO_BYTES = False
try:
    from hashlib import sha512 as _hashlib_sha512

    HAS_SHA512 = True
except ImportError:
    _hashlib_sha512 = None
    HAS_SHA512 = False


def modpow_own(base: int, exp: int, mod: int) -> int:
    """base ** exp % mod by square-and-multiply, right to left (no 3-argument pow)."""
    result = 1
    base %= mod
    while exp:
        if exp & 1:
            result = result * base % mod
        exp >>= 1
        if exp:
            base = base * base % mod
    return result


def le_int_own(data: bytes) -> int:
    """Little-endian bytes to an integer, without int.from_bytes."""
    n = 0
    for i in range(len(data) - 1, -1, -1):
        n = (n << 8) | data[i]
    return n


def be_int_own(data: bytes) -> int:
    n = 0
    for b in data:
        n = (n << 8) | b
    return n


def be_bytes_own(n: int, length: int) -> bytes:
    """An integer to big-endian bytes, without int.to_bytes."""
    out = bytearray(length)
    for i in range(length - 1, -1, -1):
        out[i] = n & 0xFF
        n >>= 8
    return bytes(out)


modpow = pow if HAS_POW3 else modpow_own
if HAS_FROM_BYTES:
    def le_int(data: bytes) -> int:
        return int.from_bytes(data, "little")

    def be_int(data: bytes) -> int:
        return int.from_bytes(data, "big")
else:
    le_int = le_int_own
    be_int = be_int_own
if HAS_TO_BYTES:
    def be_bytes(n: int, length: int) -> bytes:
        return n.to_bytes(length, "big")
else:
    be_bytes = be_bytes_own

# SHA-512 (FIPS 180-4, 4.2.3 and 5.3.5): the first 64 bits of the fractional parts of
# the cube roots of the first 80 primes, and of the square roots of the first 8.
SHA512_K = (
    0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
    0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
    0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
    0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
    0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
    0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
    0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
    0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
    0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
    0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
    0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
    0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
    0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
    0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
)
SHA512_H0 = (
    0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
    0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
)
MASK64 = 0xFFFFFFFFFFFFFFFF


def sha512_pure(data: bytes) -> bytes:
    """SHA-512 of ``data`` (FIPS 180-4), 64-bit words as Python integers."""
    m64 = MASK64
    k = SHA512_K
    n = len(data)
    # Padding (5.1.2): a 1 bit, zeros to 112 mod 128 bytes, the length in bits (128 bits).
    msg = data + b"\x80" + bytes((111 - n) % 128) + be_bytes(n * 8, 16)
    h0, h1, h2, h3, h4, h5, h6, h7 = SHA512_H0
    for off in range(0, len(msg), 128):
        w = [be_int(msg[off + 8 * i:off + 8 * i + 8]) for i in range(16)]
        for t in range(16, 80):
            x = w[t - 15]
            s0 = (((x >> 1) | (x << 63)) ^ ((x >> 8) | (x << 56)) ^ (x >> 7)) & m64
            x = w[t - 2]
            s1 = (((x >> 19) | (x << 45)) ^ ((x >> 61) | (x << 3)) ^ (x >> 6)) & m64
            w.append((w[t - 16] + s0 + w[t - 7] + s1) & m64)  # step
        a, b, c, d, e, f, g, hh = h0, h1, h2, h3, h4, h5, h6, h7
        for t in range(80):
            big_s1 = (((e >> 14) | (e << 50)) ^ ((e >> 18) | (e << 46))
                      ^ ((e >> 41) | (e << 23))) & m64
            ch = (e & f) ^ ((e ^ m64) & g)
            t1 = hh + big_s1 + ch + k[t] + w[t]
            big_s0 = (((a >> 28) | (a << 36)) ^ ((a >> 34) | (a << 30))
                      ^ ((a >> 39) | (a << 25))) & m64
            maj = (a & b) ^ (a & c) ^ (b & c)
            hh = g
            g = f
            f = e
            e = (d + t1) & m64
            d = c
            c = b
            b = a
            a = (t1 + big_s0 + maj) & m64  # step
        h0 = (h0 + a) & m64
        h1 = (h1 + b) & m64
        h2 = (h2 + c) & m64
        h3 = (h3 + d) & m64
        h4 = (h4 + e) & m64
        h5 = (h5 + f) & m64
        h6 = (h6 + g) & m64
        h7 = (h7 + hh) & m64
    return b"".join([be_bytes(x, 8) for x in (h0, h1, h2, h3, h4, h5, h6, h7)])


def sha512_hashlib(data: bytes) -> bytes:
    return _hashlib_sha512(data).digest()


sha512 = sha512_hashlib if HAS_SHA512 else sha512_pure

# Curve25519 in twisted Edwards form (RFC 8032, 5.1): -x^2 + y^2 = 1 + d x^2 y^2.
P = 2 ** 255 - 19
L = 2 ** 252 + 27742317777372353535851937790883648493  # order of the base point
D = -121665 * modpow(121666, P - 2, P) % P
D2 = 2 * D % P
SQRT_M1 = modpow(2, (P - 1) // 4, P)
IDENTITY = (0, 1, 1, 0)  # (X, Y, Z, T), x = X/Z, y = Y/Z, x*y = T/Z


def recover_x(y: int, sign: int) -> int | None:
    """The x of the point with this y and low bit ``sign`` (5.1.3), or None."""
    if y >= P:
        return None
    yy = y * y % P
    u = (yy - 1) % P
    v = (D * yy + 1) % P
    v3 = v * v % P * v % P
    v7 = v3 * v3 % P * v % P
    x = u * v3 % P * modpow(u * v7 % P, (P - 5) // 8, P) % P
    vxx = v * x % P * x % P
    if vxx != u:
        if vxx == (P - u) % P:
            x = x * SQRT_M1 % P
        else:
            return None  # u/v is not a square: no such point
    if x == 0 and sign:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def decode_point(data: bytes) -> tuple | None:
    """A 32-byte encoding (5.1.3) to extended coordinates, or None if invalid."""
    if len(data) != 32:
        return None
    y = le_int(data)
    sign = y >> 255
    y &= (1 << 255) - 1
    x = recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


_BY = 4 * modpow(5, P - 2, P) % P
BASE = (recover_x(_BY, 0), _BY, 1, recover_x(_BY, 0) * _BY % P)  # B, x even (5.1)


def point_add(p1: tuple, p2: tuple) -> tuple:
    """(5.1.4) add-2008-hwcd-3 for a = -1."""
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * D2 % P * t2 % P
    d = 2 * z1 * z2 % P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_double(p1: tuple) -> tuple:
    """(5.1.4) dbl-2008-hwcd for a = -1."""
    x1, y1, z1, _ = p1
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    h = a + b
    s = x1 + y1
    e = h - s * s
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def scalar_mult(n: int, pt: tuple) -> tuple:
    """[n]pt by double-and-add, from the lowest bit up."""
    q = IDENTITY
    while n:
        if n & 1:
            q = point_add(q, pt)  # step
        n >>= 1
        if n:
            pt = point_double(pt)  # step
    return q


def point_equal(p1: tuple, p2: tuple) -> bool:
    """Projective equality: X1 Z2 = X2 Z1 and Y1 Z2 = Y2 Z1 (no inversion)."""
    return ((p1[0] * p2[2] - p2[0] * p1[2]) % P == 0
            and (p1[1] * p2[2] - p2[1] * p1[2]) % P == 0)


def parse(public: bytes, message: bytes, signature: bytes,
          hash512: Any = None) -> tuple | None:
    """(5.1.7, steps 1 and 2) A, R, s and k = SHA-512(R || A || M) mod L, or None if the
    key or the signature cannot be valid."""
    if len(public) != 32 or len(signature) != 64:
        return None
    a = decode_point(public)  # step
    if a is None:
        return None
    r_enc = signature[:32]
    r = decode_point(r_enc)  # step
    if r is None:
        return None
    s = le_int(signature[32:])
    if s >= L:
        return None
    k = le_int((hash512 or sha512)(r_enc + public + message)) % L  # step
    return a, r, s, k


def verify(public: bytes, message: bytes, signature: bytes, hash512: Any = None) -> bool:
    """Ed25519 verify (RFC 8032, 5.1.7): [s]B == R + [k]A, k = SHA-512(R || A || M)."""
    parsed = parse(public, message, signature, hash512)
    if parsed is None:
        return False
    a, r, s, k = parsed
    sb = scalar_mult(s, BASE)
    r_plus_ka = point_add(r, scalar_mult(k, a))  # step
    return point_equal(sb, r_plus_ka)


def bits(n: int) -> list:
    """n's bits, lowest first."""
    out = []
    while n:
        out.append(n & 1)
        n >>= 1
    return out


def joint_mult(n1: int, p1: tuple, n2: int, p2: tuple) -> tuple:
    """[n1]p1 + [n2]p2 by one double-and-add over both scalars (Straus-Shamir): one
    doubling per bit of the longer scalar, an addition of p1, p2 or p1 + p2 per bit."""
    b1 = bits(n1)
    b2 = bits(n2)
    while len(b1) < len(b2):
        b1.append(0)
    while len(b2) < len(b1):
        b2.append(0)
    table = (None, p1, p2, point_add(p1, p2))
    q = IDENTITY
    i = len(b1) - 1
    if i >= 0:
        q = table[b1[i] + 2 * b2[i]]  # the top bit of one of them is set
        i -= 1
    while i >= 0:
        q = point_double(q)
        c = b1[i] + 2 * b2[i]
        if c:
            q = point_add(q, table[c])
        i -= 1
    return q


def verify_joint(public: bytes, message: bytes, signature: bytes,
                 hash512: Any = None) -> bool:
    """The same verify, as [s]B + [k](-A) == R by joint_mult."""
    parsed = parse(public, message, signature, hash512)
    if parsed is None:
        return False
    a, r, s, k = parsed
    minus_a = ((P - a[0]) % P, a[1], a[2], (P - a[3]) % P)
    return point_equal(joint_mult(s, BASE, k, minus_a), r)


# --- board code: end ---------------------------------------------------------------------

BOARD_BEGIN = "# --- board code: begin"
BOARD_END = "# --- board code: end"


def board_source() -> str:
    """The board code as MicroPython runs it: this file's text between the markers."""
    text = Path(__file__).read_text()
    begin = text.index(BOARD_BEGIN)
    end = text.index(BOARD_END)
    return text[text.index("\n", begin) + 1:end]


# The heap profile runs the verify one step per request (the heap collected between
# requests), so it needs the verify as a generator. It gets one derived from the board
# code's own text rather than a second copy of SHA-512 and the curve, and derived at run
# time rather than by a hook in the board code, so the timed verify stays as written.
STEP_MARK = "# step"
# The functions the stepped verify runs through, and their stepped copies. Under
# MicroPython ``sha512`` is ``sha512_pure`` (its hashlib has no sha512); the copy calls
# the pure one under CPython too.
STEPPED = {"verify": "verify_steps", "parse": "parse_steps",
           "scalar_mult": "scalar_mult_steps", "sha512_pure": "sha512_pure_steps",
           "sha512": "sha512_pure_steps"}


class _Stepper(ast.NodeTransformer):
    """A STEPPED function made its stepped copy: renamed, each call of a STEPPED function
    made a ``yield from`` its copy, and a ``yield 0`` after each marked statement."""

    def __init__(self, marked_lines: set[int]) -> None:
        self.marked_lines = marked_lines
        self.yielded: set[int] = set()  # the marked lines given their yield

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = STEPPED[node.name]
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        stepped = [n for n in ast.walk(node.func) if isinstance(n, ast.Name) and n.id in STEPPED]
        for name in stepped:
            name.id = STEPPED[name.id]
        return ast.YieldFrom(node) if stepped else node

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for field in ("body", "orelse"):
            block = getattr(node, field, None)
            if isinstance(block, list):  # of statements
                setattr(node, field, [s for stmt in block for s in self._then_yield(stmt)])
        return node

    def _then_yield(self, stmt: ast.stmt) -> list[ast.stmt]:
        if stmt.end_lineno not in self.marked_lines or hasattr(stmt, "body"):
            return [stmt]
        self.yielded.add(stmt.end_lineno)
        return [stmt, ast.Expr(ast.Yield(ast.Constant(0)))]


def stepped_source(source: str) -> str:
    """The stepped copies of ``source``'s STEPPED functions (``_Stepper``), as source
    text. Each ``# step`` mark must end a simple statement of one of them."""
    marked = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
              if tok.type == tokenize.COMMENT and tok.string == STEP_MARK}
    stepper = _Stepper(marked)
    copies = [stepper.visit(node) for node in ast.parse(source).body
              if isinstance(node, ast.FunctionDef) and node.name in STEPPED]
    if not marked or stepper.yielded != marked or len(copies) != len(set(STEPPED.values())):
        raise ValueError(f"step marks off a stepped function's statement: "
                         f"lines {sorted(marked - stepper.yielded)}")
    return ast.unparse(ast.fix_missing_locations(ast.Module(copies, type_ignores=[])))


# -- CPython only: a signer (for the timed message) and the checks ------------------------

# RFC 8032, 5.1, as printed there: d, the base point's x, and its encoding (y = 4/5).
RFC_D = int("37095705934669439343138083508754565189542113879843219016388785533085940283555")
RFC_BASE_X = int("1511222134953540077250115140958853151145401269304185720604611328394984"
                 "7762202")
BASE_ENC = bytes.fromhex("58" + "66" * 31)


def _inverse(x: int) -> int:
    return pow(x, P - 2, P)


def encode_point(pt: tuple) -> bytes:
    """(5.1.2) y little-endian, the low bit of x in bit 255."""
    zi = _inverse(pt[2])
    x, y = pt[0] * zi % P, pt[1] * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _secret_scalar(secret: bytes) -> tuple[int, bytes]:
    h = hashlib.sha512(secret).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8  # clear the 3 low bits and bits 254, 255; then set bit 254
    a |= 1 << 254
    return a, h[32:]


def public_key(secret: bytes) -> bytes:
    """(5.1.5) A = [s]B from the secret key's hash."""
    return encode_point(scalar_mult(_secret_scalar(secret)[0], BASE))


def sign(secret: bytes, message: bytes) -> bytes:
    """(5.1.6) under CPython: the signature the board would be given."""
    s, prefix = _secret_scalar(secret)
    public = encode_point(scalar_mult(s, BASE))
    r = int.from_bytes(hashlib.sha512(prefix + message).digest(), "little") % L
    r_enc = encode_point(scalar_mult(r, BASE))
    k = int.from_bytes(hashlib.sha512(r_enc + public + message).digest(), "little") % L
    return r_enc + ((r + k * s) % L).to_bytes(32, "little")


def _flip(data: bytes, byte: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[byte] ^= 1 << bit
    return bytes(out)


@dataclass(frozen=True)
class Case:
    """One verify: the public key, message and signature, and the answer RFC 8032 gives."""

    name: str
    public: bytes
    message: bytes
    signature: bytes
    valid: bool


def cases() -> list[Case]:
    """The three RFC vectors, each tampered three ways, and the timed message."""
    out: list[Case] = []
    for v in RFC8032_VECTORS:
        pk, msg, sig = (bytes.fromhex(v.public), bytes.fromhex(v.message),
                        bytes.fromhex(v.signature))
        out.append(Case(v.name, pk, msg, sig, True))
        out.append(Case(v.name + ", R bit flipped", pk, msg, _flip(sig, 0), False))
        out.append(Case(v.name + ", S bit flipped", pk, msg, _flip(sig, 32), False))
        tampered = _flip(msg, len(msg) - 1) if msg else b"\x00"
        out.append(Case(v.name + ", message " + ("bit flipped" if msg else "byte added"),
                        pk, tampered, sig, False))
    pk = public_key(BENCH_SECRET)
    sig = sign(BENCH_SECRET, MANIFEST_HASH)
    out.append(Case("manifest hash (timed)", pk, MANIFEST_HASH, sig, True))
    out.append(Case("manifest hash, bit flipped", pk, _flip(MANIFEST_HASH, 0), sig, False))
    return out


def _int_root(n: int, k: int) -> int:
    """floor(n ** (1/k)) by Newton's method, exactly."""
    x = 1 << ((n.bit_length() + k - 1) // k)
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            break
        x = y
    while x ** k > n:
        x -= 1
    while (x + 1) ** k <= n:
        x += 1
    return x


def sha512_constants() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """SHA512_K and SHA512_H0 from their definition (FIPS 180-4, 4.2.3, 5.3.5)."""
    primes: list[int] = []
    n = 2
    while len(primes) < 80:
        if all(n % p for p in primes):
            primes.append(n)
        n += 1
    k = tuple(_int_root(p << 192, 3) & MASK64 for p in primes)
    h = tuple(_int_root(p << 128, 2) & MASK64 for p in primes[:8])
    return k, h


SHA512_LENGTHS = (0, 1, 3, 32, 63, 64, 96, 110, 111, 112, 113, 127, 128, 129, 200, 239,
                  240, 255, 256, 300)


def _sample(length: int) -> bytes:
    return bytes((i * 73 + length) & 0xFF for i in range(length))


@dataclass(frozen=True)
class Checks:
    """Correctness, each item (name, passed)."""

    interpreter: str
    items: list[tuple[str, bool]]

    @property
    def ok(self) -> bool:
        return all(ok for _, ok in self.items)


def _verify_cases(verify_fn: Callable[[bytes, bytes, bytes], bool],
                  label: str) -> list[tuple[str, bool]]:
    return [(f"{c.name} {'verifies' if c.valid else 'fails'} ({label})",
             verify_fn(c.public, c.message, c.signature) == c.valid) for c in cases()]


def check_cpython() -> Checks:
    items: list[tuple[str, bool]] = []
    k, h = sha512_constants()
    items.append(("SHA-512 constants match their definition",
                  k == SHA512_K and h == SHA512_H0))
    items.append(("pure SHA-512 == hashlib.sha512, lengths " + ", ".join(
        str(n) for n in SHA512_LENGTHS),
        all(sha512_pure(_sample(n)) == hashlib.sha512(_sample(n)).digest()
            for n in SHA512_LENGTHS)))
    items.append(("own pow, from_bytes, to_bytes == the builtins",
                  modpow_own(7, L - 2, P) == pow(7, L - 2, P)
                  and le_int_own(BASE_ENC) == int.from_bytes(BASE_ENC, "little")
                  and be_int_own(BASE_ENC) == int.from_bytes(BASE_ENC, "big")
                  and be_bytes_own(P, 32) == P.to_bytes(32, "big")))
    items.append(("d and the base point as RFC 8032 gives them",
                  D == RFC_D and BASE[0] == RFC_BASE_X and encode_point(BASE) == BASE_ENC
                  and point_equal(scalar_mult(L, BASE), IDENTITY)
                  and point_equal(point_double(BASE), point_add(BASE, BASE))))
    for v in RFC8032_VECTORS:
        secret = bytes.fromhex(v.secret)
        items.append((f"{v.name} public key and signature derived from its secret key",
                      public_key(secret).hex() == v.public
                      and sign(secret, bytes.fromhex(v.message)).hex() == v.signature))
    items += _verify_cases(verify, "hashlib SHA-512")
    items += _verify_cases(lambda a, m, s: verify(a, m, s, sha512_pure), "pure SHA-512")
    items += _verify_cases(verify_joint, "joint, hashlib SHA-512")
    items += _verify_cases(lambda a, m, s: verify_joint(a, m, s, sha512_pure),
                           "joint, pure SHA-512")
    return Checks("CPython " + platform.python_version(), items)


# -- the MicroPython side ------------------------------------------------------------------

HARNESS = r"""
import gc, json, time

# The globals the measuring requests set, made now: a global made while a request is
# measured could grow the globals' dict and count that among the bytes measured.
_a = _ok = _d = _g = None
_base = _live_max = _peak_max = 0


def _check(cases, lengths_digests):
    # Each case's verify result, and the pure SHA-512 of each sample.
    out = [verify(pk, msg, sig) for pk, msg, sig in cases]
    out += [verify_joint(pk, msg, sig) for pk, msg, sig in cases]
    sha = [sha512_pure(bytes((i * 73 + n) & 0xFF for i in range(n))) == dig
           for n, dig in lengths_digests]
    own = [modpow_own(7, L - 2, P) == modpow(7, L - 2, P),
           le_int_own(_pk) == le_int(_pk), be_int_own(_pk) == be_int(_pk),
           be_bytes_own(P, 32) == be_bytes(P, 32)]
    return out, sha, own


def _int_loop(p):
    # The published loop: p[0] times, the sum of two list items into a local.
    for _ in range(p[0]):
        s = p[1] + p[2]


def _pi(digits):
    # The published pi loop: 3 * the series of arcsin(1/2) * 2, in integers of
    # digits + 8 decimal places.
    one = 10 ** (digits + 8)
    t = 3 * one
    c = t
    n, na, d, da = 1, 0, 0, 24
    while t > 1:
        n, na, d, da = n + na, na + 8, d + da, da + 32
        t = t * n // d
        c += t
    return c // 10 ** 8


def _mul_loop(p):
    # The published multiplication loop: two small ints whose product is a big one.
    for _ in range(p[0]):
        s = p[1] * p[2]


def _mark():
    # The baseline, taken by a request of the same shape as _step's.
    global _base, _live_max, _peak_max
    _base = gc.mem_alloc()
    _live_max = 0
    _peak_max = 0
    return 0


def _verify_stepped(public, message, signature):
    # verify_steps (stepped_source), then a last step: 1 if it accepts, 2 if not.
    ok = yield from verify_steps(public, message, signature)
    yield 1 if ok else 2


def _step():
    # One request, one step of _g (a _verify_stepped): the live heap at its start
    # (collected at the end of the last request) and after it (nothing collected in
    # between); maxima kept in small ints, so the bookkeeping allocates nothing.
    global _live_max, _peak_max
    a = gc.mem_alloc()
    r = next(_g)
    b = gc.mem_alloc()
    if a > _live_max:
        _live_max = a
    if b > _peak_max:
        _peak_max = b
    return r
"""


@dataclass(frozen=True)
class Heap:
    code: int  # the board code's heap: compiled and run (bytes)
    allocated: int  # bytes allocated by one verify (no collection inside)
    allocated_sha512: int  # ... by the SHA-512 alone
    steps: int  # steps of the stepped verify
    live_max: int  # live heap at step boundaries, max above the baseline
    peak_bound: int  # live at a step's start + all it allocates, max above the baseline
    stepped_ok: bool  # the stepped verify accepted the signature too
    allocated_joint: int  # bytes allocated by one joint verify
    allocated_pi: int  # ... by one pi calibration
    allocated_mul_iter: float  # ... by one iteration of the multiplication loop


@dataclass(frozen=True)
class Timing:
    """Medians over repetitions, µs per call on this machine."""

    reps: int
    med: dict[str, float]  # per KINDS entry (the loops: per iteration)
    iqr: dict[str, tuple[float, float]]  # of the two verifies
    projections_ms: dict[str, dict[str, float]]  # variant -> projection -> RP2040 ms

    def dispatch_share(self, variant: str) -> float:
        """The verify's share that is bytecode on small integers (its 7-bit field run)."""
        verify_kind, small_kind = VARIANTS[variant]
        return self.med[small_kind] / self.med[verify_kind]


@dataclass(frozen=True)
class Counts:
    """Point operations in the timed verify (from its scalars, under CPython)."""

    doublings: int
    additions: int  # including R + [k]A, or the joint table's B - A
    decodings: int = 2


def scalars(case: Case) -> tuple[int, int]:
    """s and k of a verify."""
    s = int.from_bytes(case.signature[32:], "little")
    k = int.from_bytes(hashlib.sha512(case.signature[:32] + case.public + case.message)
                       .digest(), "little") % L
    return s, k


def count_ops(case: Case) -> dict[str, Counts]:
    """Per variant: the plain verify's two double-and-adds, and the joint one's."""
    s, k = scalars(case)
    plain = Counts(sum(n.bit_length() - 1 for n in (s, k)),
                   sum(bin(n).count("1") for n in (s, k)) + 1)
    top = max(s.bit_length(), k.bit_length()) - 1
    joint = Counts(top, 1 + sum(1 for i in range(top) if (s >> i) & 1 or (k >> i) & 1))
    return {"double-and-add": plain, "joint": joint}


def _json_line(rt: MicroPythonRuntime, source: str, timeout_s: float = 300.0) -> Any:
    out = rt.exec(source, timeout_s).strip().splitlines()
    return json.loads(out[-1])


def load_board_code(rt: MicroPythonRuntime) -> int:
    """Compile and run the board code, the harness and the stepped copy in ``rt``; return
    the board code's heap (bytes, collected before and after)."""
    rt.exec("import gc\ngc.collect()")
    before = _json_line(rt, "import json\nprint(json.dumps(gc.mem_alloc()))")
    rt.exec(board_source() + "\ngc.collect()")
    after = _json_line(rt, "print(json.dumps(gc.mem_alloc()))")
    rt.exec(HARNESS + batch_source())
    rt.exec(stepped_source(board_source()))
    return after - before


def micropython_version(rt: MicroPythonRuntime) -> str:
    return ".".join(str(v) for v in json.loads(rt.exec(
        "import json, sys\nprint(json.dumps(sys.implementation.version[:3]))")))


def probe_builtins(rt: MicroPythonRuntime) -> dict[str, bool]:
    return _json_line(rt, "print(json.dumps({'3-argument pow': HAS_POW3, "
                          "'int.from_bytes little/big': HAS_FROM_BYTES, "
                          "'int.to_bytes big': HAS_TO_BYTES, "
                          "'hashlib.sha512': HAS_SHA512}))")


def check_micropython(rt: MicroPythonRuntime, version: str) -> Checks:
    cs = cases()
    timed = cs[-2]
    rt.exec(f"_pk = {timed.public!r}")
    digests = [(n, hashlib.sha512(_sample(n)).digest()) for n in SHA512_LENGTHS]
    results, sha, own = _json_line(
        rt, "print(json.dumps(_check(" + repr([(c.public, c.message, c.signature)
                                               for c in cs])
            + f", {digests!r})))")
    labels = [f"{c.name} {'verifies' if c.valid else 'fails'} (pure SHA-512{joint})"
              for joint in ("", ", joint") for c in cs]
    expected = [c.valid for c in cs] * 2
    items = [(name, r == e) for name, r, e in zip(labels, results, expected, strict=True)]
    items.append(("pure SHA-512 == hashlib.sha512 (CPython's), lengths "
                  + ", ".join(str(n) for n in SHA512_LENGTHS), all(sha)))
    items.append(("own pow, from_bytes, to_bytes == the builtins", all(own)))
    return Checks(f"MicroPython {version} (WebAssembly)", items)


def set_timed(rt: MicroPythonRuntime) -> Case:
    """The timed case and the batches' inputs, in ``rt``."""
    timed = cases()[-2]
    s, k = scalars(timed)
    rt.exec(f"_pk = {timed.public!r}\n_msg = {timed.message!r}\n_sig = {timed.signature!r}\n"
            "_pt = decode_point(_pk)\n_pt2 = decode_point(_sig[:32])\n"
            f"_s = {s}\n_k = {k}\n_SMALL_P = {SMALL_P}\n_FULL_P = P\n_FULL_D2 = D2\n"
            "_base_small = tuple(c % _SMALL_P for c in BASE)\n"
            "_a_small = tuple(c % _SMALL_P for c in _pt)\n"
            "_minus_a = ((P - _pt[0]) % P, _pt[1], _pt[2], (P - _pt[3]) % P)\n"
            "_minus_a_small = tuple(c % _SMALL_P for c in _minus_a)\n"
            f"_cal_int = [{CALIBRATION_ITERS}, 12345678, 56781234]\n"
            f"_PI_DIGITS = {PI_DIGITS}\n"
            "assert str(_pi(20)).startswith('314159265358979323846')\n"
            "gc.collect()")
    return timed


def _allocated_by(rt: MicroPythonRuntime, statements: str) -> int:
    """Bytes allocated by ``statements``, run in one request after a collection: this
    port never collects inside a request, so the difference is everything allocated."""
    rt.exec("gc.collect()")
    return _json_line(rt, f"_a = gc.mem_alloc()\n{statements}\n"
                          "print(json.dumps(gc.mem_alloc() - _a))")


def measure_heap(rt: MicroPythonRuntime, code: int) -> Heap:
    """What one verify allocates, and its peak live heap: the stepped verify run one step
    per request, the heap collected between requests."""
    allocated = _allocated_by(rt, "_ok = verify(_pk, _msg, _sig)\nassert _ok")
    joint = _allocated_by(rt, "_ok = verify_joint(_pk, _msg, _sig)\nassert _ok")
    pi = _allocated_by(rt, "_d = _pi(_PI_DIGITS)")
    rt.exec("_d = None")
    mul = _allocated_by(rt, "_mul_loop(_cal_int)")
    sha = _allocated_by(rt, "_d = sha512(_sig[:32] + _pk + _msg)")
    rt.exec("_d = None\ngc.collect()")
    _json_line(rt, "print(json.dumps(_mark()))")
    rt.exec("_g = _verify_stepped(_pk, _msg, _sig)")  # counted in the verify's steps
    steps = 0
    result = 0
    while result == 0:
        result = _json_line(rt, "print(json.dumps(_step()))")
        steps += 1
    base, live, peak = _json_line(rt, "print(json.dumps([_base, _live_max, _peak_max]))")
    rt.exec("_g = None\ngc.collect()")
    return Heap(code=code, allocated=allocated, allocated_sha512=sha, steps=steps,
                live_max=live - base, peak_bound=peak - base, stepped_ok=result == 1,
                allocated_joint=joint, allocated_pi=pi,
                allocated_mul_iter=mul / CALIBRATION_ITERS)


# What a timed batch repeats, by kind: a statement on the locals of BATCH. A "7-bit
# field" kind runs with P and 2d swapped for small ones: the same bytecodes on small
# ints, no big-integer work but the scalars' bit loop.
KINDS = {
    "verify": "verify(pk, msg, sig)",
    "sha512": "sha512(data)",
    "double": "point_double(pt)",
    "add": "point_add(pt, pt2)",
    "decode": "decode_point(pk)",
    "int loop": "_int_loop(cal)",
    "pi loop": "_pi(_PI_DIGITS)",
    "mul loop": "_mul_loop(cal)",
    "scalar mults": "scalar_mult(s, base); scalar_mult(k, a)",
    "scalar mults, 7-bit field": "scalar_mult(s, base); scalar_mult(k, a)",
    "verify, joint": "verify_joint(pk, msg, sig)",
    "joint mult, 7-bit field": "joint_mult(s, base, k, minus_a)",
}
# One function per kind, so the timed loop is that statement alone, on locals (a global
# looked up per call would be timed too). ticks_us ticks in whole ms in this port, so
# batches are long and start on a tick.
BATCH = """
def _batch_{index}(count):
    global P, D2
    pk, msg, sig, pt, pt2, s, k, cal = _pk, _msg, _sig, _pt, _pt2, _s, _k, _cal_int
    data = sig[:32] + pk + msg
    base, a, minus_a = BASE, _pt, _minus_a
    if {small_field}:
        base, a, minus_a = _base_small, _a_small, _minus_a_small
        P, D2 = _SMALL_P, D2 % _SMALL_P
    ticks_us = time.ticks_us
    t = ticks_us()
    while ticks_us() == t:
        pass
    t0 = ticks_us()
    for _ in range(count):
        {statement}
    elapsed = time.ticks_diff(ticks_us(), t0)
    P, D2 = _FULL_P, _FULL_D2
    return elapsed
"""
# variant -> (its verify's kind, its scalar multiplication in the 7-bit field)
VARIANTS = {"double-and-add": ("verify", "scalar mults, 7-bit field"),
            "joint": ("verify, joint", "joint mult, 7-bit field")}


def batch_source() -> str:
    """``_batch_<i>(count)`` for the i-th of KINDS: microseconds taken by count runs."""
    return "".join(BATCH.format(index=i, statement=statement,
                                small_field=kind.endswith("7-bit field"))
                   for i, (kind, statement) in enumerate(KINDS.items()))


def interleaved_batches(rt: MicroPythonRuntime, kinds: Sequence[str],
                        call: Callable[[int, int], str], batch_ms: float, reps: int,
                        max_count: int) -> dict[str, list[float]]:
    """µs per run of each of ``kinds``, ``reps`` times: ``call(i, count)`` is the
    MicroPython expression that runs the i-th kind ``count`` times and gives the µs it
    took. Each count grows until a batch lasts ``batch_ms`` (or reaches ``max_count``);
    then the batches run interleaved, one of each kind a repetition, so that a machine
    busy for a while slows every kind alike. (benchmarks/boot_check.py uses it too.)"""
    counts = []
    for i in range(len(kinds)):  # calibrate: grow the count until a batch is long enough
        count = 1
        while True:
            elapsed = _json_line(rt, f"print(json.dumps({call(i, count)}))")
            if elapsed >= batch_ms * 1000 or count >= max_count:
                break
            count = int(count * min(8.0, max(2.0, 1.2 * batch_ms * 1000 / max(elapsed, 1))))
        counts.append(count)
    per: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(reps):
        rt.exec("gc.collect()")
        elapsed_us = _json_line(rt, "print(json.dumps([" + ", ".join(
            call(i, c) for i, c in enumerate(counts)) + "]))", 600.0)
        for kind, count, us in zip(kinds, counts, elapsed_us, strict=True):
            per[kind].append(us / count)
    return per


def time_verify(rt: MicroPythonRuntime, reps: int, batch_ms: float) -> Timing:
    """Interleaved batches of at least ``batch_ms`` each, ``reps`` times."""
    per = interleaved_batches(rt, list(KINDS), lambda i, c: f"_batch_{i}({c})", batch_ms,
                              reps, 1 << 22)
    for loop in ("int loop", "mul loop"):
        per[loop] = [v / CALIBRATION_ITERS for v in per[loop]]
    projections: dict[str, dict[str, list[float]]] = {
        v: {k: [] for k in PROJECTIONS} for v in VARIANTS}
    for i in range(reps):
        rep = {k: v[i] for k, v in per.items()}
        for variant in VARIANTS:
            for name, value in project_rep(rep, variant).items():
                projections[variant][name].append(value)
    return Timing(reps, {k: statistics.median(v) for k, v in per.items()},
                  {k: _iqr(per[k]) for k in ("verify", "verify, joint")},
                  {variant: {k: statistics.median(v) for k, v in by.items() if v}
                   for variant, by in projections.items()})


def _iqr(values: list[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


# -- the RP2040 projection -------------------------------------------------------------------

PROJECTIONS = ("integer loop", "model, mpz by the mul loop", "model, mpz by the pi loop")


def project_rep(rep: dict[str, float], variant: str,
                published: Published = PUBLISHED) -> dict[str, float]:
    """One repetition's RP2040 projections of a verify, ms.

    integer loop: the whole verify at the integer loop's ratio (RP2040 / here), a lower
    bound. The model: the verify's 7-bit field run (the same bytecodes, no big integers)
    at the integer loop's ratio, the rest (its big-integer work) at a big-integer ratio,
    the multiplication loop's (its excess over the integer loop: making a big integer of
    two small ones) or the pi loop's (long digit loops).
    """
    verify_kind, small_kind = VARIANTS[variant]
    r_int = published.add_us / rep["int loop"]
    out = {"integer loop": rep[verify_kind] * r_int / 1000}
    dispatch = rep[small_kind]
    bigint = rep[verify_kind] - dispatch
    mpz_here = rep["mul loop"] - rep["int loop"]
    if mpz_here > 0:
        r_mul = (published.mul_us - published.add_us) / mpz_here
        out["model, mpz by the mul loop"] = (dispatch * r_int + bigint * r_mul) / 1000
    r_pi = published.pi_ms * 1000 / rep["pi loop"]
    out["model, mpz by the pi loop"] = (dispatch * r_int + bigint * r_pi) / 1000
    return out


def ratios(t: Timing, published: Published = PUBLISHED) -> dict[str, float]:
    """RP2040 time / time here, from the medians: bytecode, and big-integer work two ways."""
    m = t.med
    out = {"integer loop": published.add_us / m["int loop"]}
    if m["mul loop"] > m["int loop"]:
        out["mul loop, its big-integer part"] = ((published.mul_us - published.add_us)
                                                 / (m["mul loop"] - m["int loop"]))
    out["pi loop"] = published.pi_ms * 1000 / m["pi loop"]
    return out


def worst_ms(t: Timing, variant: str) -> float:
    """A variant's goal is judged on its larger model projection."""
    return max(v for k, v in t.projections_ms[variant].items() if k.startswith("model"))


def goal_met(t: Timing, variant: str) -> bool:
    return worst_ms(t, variant) < GOAL_MS


def margin(t: Timing, variant: str) -> float:
    """How many times the larger model projection fits in the goal."""
    return GOAL_MS / worst_ms(t, variant)


# -- report ----------------------------------------------------------------------------------


def _ms(us: float) -> str:
    return f"{us / 1000:,.1f} ms"


def report(checks: list[Checks], builtins: dict[str, bool], heap: Heap | None,
           timing: Timing | None, counts: dict[str, Counts], mp_version: str) -> None:
    node = shutil.which("node")
    node_version = (subprocess.run([node, "--version"], capture_output=True, text=True,
                                   check=False).stdout.strip() if node else "?")
    print(f"MicroPython {mp_version} (WebAssembly), node {node_version}, CPython "
          f"{platform.python_version()}, host {platform.machine()} {platform.system()} "
          f"{platform.release()}")
    print("Ed25519 verify (RFC 8032, 5.1.7), pure Python, double-and-add and joint; "
          "measurement only (never deployed)")

    print("\nBuiltins in the MicroPython runtime (the code's own replacement otherwise)")
    for name, present in builtins.items():
        print(f"  {name:<28}{'yes' if present else 'no: own code used'}")

    print("\nCorrectness")
    for c in checks:
        passed = sum(ok for _, ok in c.items)
        print(f"  {c.interpreter}: {passed}/{len(c.items)} checks pass")
        for name, ok in c.items:
            if not ok:
                print(f"    FAILED: {name}")
    ok_all = all(c.ok for c in checks)
    print(f"correctness (RFC 8032 TEST 1-3 verify, tampered fail, both interpreters): "
          f"{'PASS' if ok_all else 'FAIL'}")

    plain, joint = counts["double-and-add"], counts["joint"]
    print(f"\nThe timed verify: a {len(MANIFEST_HASH)}-byte message (a manifest's SHA-256); "
          f"{plain.decodings} point decodings\nand one SHA-512 block of R || A || M; then "
          f"double-and-add: [s]B and [k]A, {plain.doublings} doublings\nand "
          f"{plain.additions} additions (R + [k]A included); joint: [s]B + [k](-A) in one "
          f"pass,\n{joint.doublings} doublings and {joint.additions} additions (B - A "
          "included), compared with R.")

    if heap is not None:
        print("\nHeap (MicroPython, gc.mem_alloc; this port collects only between requests)")
        print(f"  board code, compiled and run            {heap.code:>9,} B")
        print(f"  allocated by one verify                 {heap.allocated:>9,} B"
              f"  (SHA-512 alone {heap.allocated_sha512:,} B)")
        print(f"  allocated by one joint verify           {heap.allocated_joint:>9,} B")
        print(f"  live at step boundaries, max            {heap.live_max:>9,} B"
              f"  ({heap.steps} steps, the stepped verify "
              f"{'accepts' if heap.stepped_ok else 'REJECTS'})")
        print(f"  peak live, bound                        {heap.peak_bound:>9,} B"
              "  (a step's start + all it allocates)")
        print("  (above the heap before the verify; the stepped double-and-add verify, its "
              "steps:\n  each decoding, each SHA-512 schedule word and round, each doubling "
              "and addition)")
        print(f"  The RP2040's MicroPython heap is {RP2040_HEAP:,} B (published); one "
              f"verify's garbage is\n  {heap.allocated / RP2040_HEAP:.1f} times that, so "
              "the board collects several times during a verify\n  (see the projection).")

    if timing is None:
        return
    t = timing
    m = t.med
    print(f"\nTime per call on this machine, median of {t.reps} interleaved repetitions "
          "(batches of whole calls)")
    rows = [("verify, double-and-add", m["verify"], "IQR " + _range(t.iqr["verify"])),
            ("  SHA-512 of R || A || M", m["sha512"], ""),
            ("  the two scalar mults", m["scalar mults"], "[s]B and [k]A"),
            ("    the same, 7-bit field", m["scalar mults, 7-bit field"],
             f"no big integers: {t.dispatch_share('double-and-add') * 100:.0f} % of "
             "the verify"),
            ("verify, joint", m["verify, joint"], "IQR " + _range(t.iqr["verify, joint"])),
            ("  joint mult, 7-bit field", m["joint mult, 7-bit field"],
             f"no big integers: {t.dispatch_share('joint') * 100:.0f} % of the verify"),
            ("point doubling", m["double"],
             f"x {plain.doublings} = {_ms(m['double'] * plain.doublings)} (joint: "
             f"x {joint.doublings})"),
            ("point addition", m["add"],
             f"x {plain.additions} = {_ms(m['add'] * plain.additions)} (joint: "
             f"x {joint.additions})"),
            ("point decoding", m["decode"],
             f"x {plain.decodings} = {_ms(m['decode'] * plain.decodings)}"),
            ("integer loop, one iteration", m["int loop"], "calibration"),
            ("mul loop, one iteration", m["mul loop"], "calibration"),
            (f"pi, {PI_DIGITS} digits", m["pi loop"], "calibration")]
    for name, us, note in rows:
        print(f"  {name:<30}{us:>14,.3f} µs  {note}")

    p = PUBLISHED
    print(f"\nProjection onto an RP2040 at 125 MHz. Published: {p.source},\n{p.url}: "
          f"{p.board}, one figure per loop:\n  integer loop {p.add_us:.3f} µs an "
          f"iteration, mul loop {p.mul_us:.3f} µs, pi to {p.pi_digits:,} digits "
          f"{p.pi_ms:,.0f} ms.")
    print("  Ratio RP2040 / here:")
    for name, r in ratios(t).items():
        print(f"    {name:<34}{r:>8.0f}x")
    print("  Big-integer work is several times dearer on the RP2040, relative to bytecode, "
          "than here:\n  the Cortex-M0+ has no 32x32->64 multiply (16-bit mpz digits on "
          "both ports, but in-order\n  and scalar there, JIT-compiled WebAssembly on "
          "x86-64 here), and mpz's code and heap\n  allocator run from a small flash "
          "cache. So a verify, big-integer work but for its\n  7-bit-field share, is "
          "projected by the model, once with each big-integer ratio.")
    print(f"    {'RP2040 ms, one verify':<36}{'double-and-add':>16}{'joint':>10}")
    for name in PROJECTIONS:
        cells = []
        for variant in VARIANTS:
            value = t.projections_ms[variant].get(name)
            cells.append("n/a" if value is None else f"{value:,.0f}")
        note = "  (a lower bound)" if name == "integer loop" else ""
        print(f"    {name:<36}{cells[0]:>16}{cells[1]:>10}{note}")
    print("  Medians of the per-repetition projections. The 7-bit field run keeps the "
          "scalars' bit loop\n  (a few hundred shifts of big integers), SHA-512's "
          "bytecode counts as big-integer work:\n  small errors, opposite ways. "
          f"MicroPython 1.23.0 there, {mp_version} here.")
    if heap is not None:
        rate = heap.allocated / 1024 / worst_ms(t, "double-and-add")  # KB per ms
        print(f"  Garbage: the verify allocates {heap.allocated / 1024:,.0f} KB, "
              f"{rate:,.2f} KB per projected RP2040 ms; the published\n  loops allocate "
              f"(measured here) {heap.allocated_pi / 1024:,.0f} KB in pi's {p.pi_ms:,.0f} ms, "
              f"{heap.allocated_pi / 1024 / p.pi_ms:,.2f} KB/ms,\n  and "
              f"{heap.allocated_mul_iter:.0f} B per mul-loop iteration, "
              f"{heap.allocated_mul_iter * 1000 / 1024 / p.mul_us:,.2f} KB/ms. "
              "Their times include the collections\n  of that garbage (on a nearly empty "
              "heap), and the model carries them over in proportion;\n  a board's live "
              "firmware objects make each collection dearer. The heap-allocated call\n  "
              "frames of the rp2 port (no pystack there) are not in the projection.")

    print("\nGoal")
    for variant in VARIANTS:
        ok = goal_met(t, variant)
        print(f"Ed25519 verify at boot < {GOAL_MS / 1000:.0f} s on an RP2040 (projected), "
              f"{variant}: {worst_ms(t, variant) / 1000:,.1f} s: {'PASS' if ok else 'FAIL'}")
    print(f"  Margin (goal / larger projection; the projection is good to about "
          f"{ROUGHNESS:.0f}x): " + ", ".join(f"{v} {margin(t, v):.2f}x" for v in VARIANTS))
    print("\n" + conclusion(t, heap))


def _range(pair: tuple[float, float]) -> str:
    return f"{_ms(pair[0])}–{_ms(pair[1])}"


def _span_s(t: Timing, variant: str) -> str:
    models = sorted(v for k, v in t.projections_ms[variant].items() if k.startswith("model"))
    return f"{models[0] / 1000:,.1f}–{models[-1] / 1000:,.1f} s"


def conclusion(t: Timing, heap: Heap | None) -> str:
    m = t.med
    r = ratios(t)
    big = [v for k, v in r.items() if k != "integer loop"]
    garbage = f", allocating {heap.allocated / 1024:,.0f} KB" if heap else ""
    text = (f"Conclusion: one pure-Python Ed25519 verify of a manifest hash takes "
            f"{_ms(m['verify'])} under MicroPython on this machine{garbage}; "
            f"{100 - t.dispatch_share('double-and-add') * 100:.0f} % of it is big-integer "
            f"work (SHA-512 {m['sha512'] / m['verify'] * 100:.0f} %, the rest the curve). "
            "Projected onto an RP2040 at 125 MHz by the model, which weighs that work at "
            "its own measured cost: "
            f"{_span_s(t, 'double-and-add')} as written from RFC 8032 (two "
            f"double-and-adds), {_span_s(t, 'joint')} with the two scalar multiplications "
            "joined (Straus-Shamir). The integer loop alone would say "
            f"{t.projections_ms['double-and-add']['integer loop'] / 1000:,.1f} s, a lower "
            "bound that weighs big integers about "
            f"{statistics.mean(big) / r['integer loop']:.0f}x too lightly. ")
    goal = f"{GOAL_MS / 1000:.0f} s"
    best = max(VARIANTS, key=lambda v: margin(t, v))
    fits = margin(t, best)
    if fits >= ROUGHNESS:
        return text + (f"The {best} verify fits the {goal} goal {fits:.1f}x over, more than "
                       "the projection's roughness: a verify at boot is affordable on an "
                       "RP2040, to be confirmed on a board before the firmware relies on it.")
    if fits >= 1:
        plain = worst_ms(t, "double-and-add")
        plain_text = (f"within it by only {margin(t, 'double-and-add'):.2f}x"
                      if goal_met(t, "double-and-add") else "over it")
        return text + (f"Even the {best} verify fits the {goal} goal only {fits:.1f} times "
                       f"over, less than the factor of about {ROUGHNESS:.0f} the projection "
                       f"may be off by; the plain one, at {plain / 1000:.1f} s, is "
                       f"{plain_text}. So Ed25519 verification is not shown "
                       "affordable on the board and is not shipped there on this evidence: "
                       "the board keeps checking each file's SHA-256 against its manifest, "
                       "a signature over the manifest would be checked on the host, and the "
                       "joint verify is to be timed on an RP2040 before the firmware relies "
                       "on it.")
    return text + (f"Both miss the {goal} goal, so Ed25519 verification is not affordable "
                   "on the board in MicroPython and is not shipped there: the board keeps "
                   "checking each file's SHA-256 against its manifest, and a signature over "
                   "the manifest would be checked on the host (on the board it would take "
                   "native code, outside this measurement).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Ed25519 verify under real MicroPython, "
                                             "projected onto an RP2040.")
    ap.add_argument("--reps", type=int, default=15, help="timing repetitions (15)")
    ap.add_argument("--batch-ms", type=float, default=200.0,
                    help="shortest timed batch, ms (200)")
    ap.add_argument("--no-timing", action="store_true", help="correctness and heap only")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run in seconds: every check, the heap, one timing "
                         "repetition of 20 ms batches")
    args = ap.parse_args(argv)
    if args.quick:
        args.reps, args.batch_ms = 1, 20.0
    if args.reps < 1 or args.batch_ms <= 0:
        ap.error("--reps and --batch-ms must be positive")

    t0 = time.perf_counter()
    checks = [check_cpython()]
    # The checks in one interpreter, the measurements in a fresh one: the checks leave
    # tens of MB of garbage and a grown heap behind.
    rt = MicroPythonRuntime()
    try:
        mp_version = micropython_version(rt)
        load_board_code(rt)
        builtins = probe_builtins(rt)
        checks.append(check_micropython(rt, mp_version))
    finally:
        rt.close()
    rt = MicroPythonRuntime()
    try:
        code = load_board_code(rt)
        timed = set_timed(rt)
        heap = measure_heap(rt, code)
        timing = None if args.no_timing else time_verify(rt, args.reps, args.batch_ms)
    finally:
        rt.close()
    report(checks, builtins, heap, timing, count_ops(timed), mp_version)
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
