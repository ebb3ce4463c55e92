"""The Ed25519 verify of ``benchmarks/ed25519_board.py`` is correct, under CPython and
under real MicroPython.

Only correctness is asserted, never a time: RFC 8032's TEST 1, 2 and 3 verify and
their tampered copies fail (with hashlib's SHA-512 and with the pure one, both ways
of multiplying), the vectors follow from their secret keys, the pure SHA-512 equals
hashlib's, its constants their definition, the code's own replacements for missing
builtins equal the builtins, and the heap profile's stepped copy of the verify (derived
from the board code) verifies as it does. Then the benchmark's ``--quick`` mode runs (a
few seconds) and must report every check passed; its figures are not looked at.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from benchmark_module import load_benchmark

from cellguard.sim.runtime import MicroPythonRuntime

pytestmark = pytest.mark.timeout(120)

ed: ModuleType = load_benchmark("ed25519_board")


def test_the_cases_are_the_rfc_vectors_and_their_tampered_copies() -> None:
    cases = ed.cases()
    valid = [c for c in cases if c.valid]
    assert [c.name for c in valid] == ["TEST 1", "TEST 2", "TEST 3", "manifest hash (timed)"]
    assert len(cases) - len(valid) == 3 * 3 + 1
    for v in ed.RFC8032_VECTORS:
        mine = [c for c in cases if c.name.startswith(v.name)]
        sig = bytes.fromhex(v.signature)
        r_changed = {c.name for c in mine if c.signature[:32] != sig[:32]}
        s_changed = {c.name for c in mine if c.signature[32:] != sig[32:]}
        assert r_changed == {v.name + ", R bit flipped"}
        assert s_changed == {v.name + ", S bit flipped"}
        assert sum(c.message != bytes.fromhex(v.message) for c in mine) == 1


@pytest.mark.parametrize("variant", ["verify", "verify_joint"])
@pytest.mark.parametrize("pure", [False, True], ids=["hashlib-sha512", "pure-sha512"])
def test_cpython_vectors_verify_and_tampered_ones_fail(variant: str, pure: bool) -> None:
    fn = getattr(ed, variant)
    hasher = ed.sha512_pure if pure else None
    for c in ed.cases():
        assert fn(c.public, c.message, c.signature, hasher) is c.valid, c.name


def test_wrong_lengths_and_out_of_range_s_fail() -> None:
    v = ed.RFC8032_VECTORS[1]
    pk, msg, sig = (bytes.fromhex(v.public), bytes.fromhex(v.message),
                    bytes.fromhex(v.signature))
    s = int.from_bytes(sig[32:], "little")
    for fn in (ed.verify, ed.verify_joint):
        assert fn(pk, msg, sig)
        assert not fn(pk[:31], msg, sig)
        assert not fn(pk, msg, sig[:63])
        # s + L: the same point, but RFC 8032 requires s < L.
        assert not fn(pk, msg, sig[:32] + (s + ed.L).to_bytes(32, "little"))


def test_vectors_follow_from_their_secret_keys() -> None:
    for v in ed.RFC8032_VECTORS:
        secret = bytes.fromhex(v.secret)
        assert ed.public_key(secret).hex() == v.public, v.name
        assert ed.sign(secret, bytes.fromhex(v.message)).hex() == v.signature, v.name


def test_curve_constants_are_rfc_8032s() -> None:
    assert ed.D == ed.RFC_D
    assert ed.BASE[0] == ed.RFC_BASE_X
    assert ed.encode_point(ed.BASE) == ed.BASE_ENC
    assert ed.point_equal(ed.scalar_mult(ed.L, ed.BASE), ed.IDENTITY)
    assert ed.point_equal(ed.point_double(ed.BASE), ed.point_add(ed.BASE, ed.BASE))
    three_b = ed.scalar_mult(3, ed.BASE)
    assert ed.point_equal(ed.joint_mult(5, ed.BASE, 2, (ed.P - ed.BASE[0], ed.BASE[1],
                                                        ed.BASE[2], ed.P - ed.BASE[3])),
                          three_b)


def test_pure_sha512_equals_hashlib_and_its_constants_their_definition() -> None:
    assert ed.sha512_constants() == (ed.SHA512_K, ed.SHA512_H0)
    for n in range(0, 300):
        data = bytes((i * 131 + n) & 0xFF for i in range(n))
        assert ed.sha512_pure(data) == hashlib.sha512(data).digest(), n


def test_own_replacements_equal_the_builtins() -> None:
    for base, exp in ((7, ed.L - 2), (ed.P - 1, (ed.P - 5) // 8), (0, 5), (3, 0)):
        assert ed.modpow_own(base, exp, ed.P) == pow(base, exp, ed.P)
    for data in (b"", b"\x01", ed.BASE_ENC, bytes(range(64))):
        assert ed.le_int_own(data) == int.from_bytes(data, "little")
        assert ed.be_int_own(data) == int.from_bytes(data, "big")
    for n, length in ((0, 8), (ed.MASK64, 8), (ed.P, 32), (12345, 16)):
        assert ed.be_bytes_own(n, length) == n.to_bytes(length, "big")


def _run_steps(steps: Iterator[int]) -> tuple[Any, int]:
    """Drive a stepped copy to its end: its result and how many steps it yielded."""
    count = 0
    while True:
        try:
            assert next(steps) == 0
        except StopIteration as stop:
            return stop.value, count
        count += 1


def test_the_stepped_copy_verifies_as_the_board_code_does_one_step_per_operation() -> None:
    # The heap profile's verify is derived from the board code's text (stepped_source);
    # run here under CPython, with the pure SHA-512 as under MicroPython.
    namespace = dict(vars(ed))
    exec(ed.stepped_source(ed.board_source()), namespace)
    for c in ed.cases():
        ok, steps = _run_steps(namespace["verify_steps"](c.public, c.message, c.signature))
        assert ok is c.valid, c.name
    timed = ed.cases()[-2]
    ops = ed.count_ops(timed)["double-and-add"]
    _, steps = _run_steps(namespace["verify_steps"](timed.public, timed.message,
                                                    timed.signature))
    # each decoding, SHA-512's 64 schedule words and 80 rounds (one block), k, each
    # doubling and addition (R + [k]A included)
    assert steps == ops.decodings + 64 + 80 + 1 + ops.doublings + ops.additions


@pytest.mark.parametrize("marked", ["    return (e * f % P, g * h % P, f * g % P, e * h % P)\n",
                                    "    while n:\n"])
def test_a_step_mark_off_a_stepped_functions_simple_statement_is_refused(marked: str) -> None:
    source = ed.board_source()
    assert marked in source
    with pytest.raises(ValueError, match="step marks"):
        ed.stepped_source(source.replace(marked, marked[:-1] + "  # step\n", 1))


def test_cpython_checks_all_pass() -> None:
    checks = ed.check_cpython()
    assert checks.items and checks.ok, [name for name, ok in checks.items if not ok]


@pytest.fixture(scope="module")
def micropython() -> Iterator[tuple[Any, dict[str, bool]]]:
    rt = MicroPythonRuntime()
    try:
        ed.load_board_code(rt)
        builtins = ed.probe_builtins(rt)
        yield ed.check_micropython(rt, ed.micropython_version(rt)), builtins
    finally:
        rt.close()


def test_micropython_vectors_verify_and_tampered_ones_fail(micropython: Any) -> None:
    checks, _ = micropython
    failed = [name for name, ok in checks.items if not ok]
    assert not failed
    names = [name for name, _ in checks.items]
    assert len(names) == 2 * len(ed.cases()) + 2  # both verifies, SHA-512, builtins
    assert "TEST 1 verifies (pure SHA-512)" in names
    assert "TEST 3, message bit flipped fails (pure SHA-512, joint)" in names


def test_micropython_probes_are_booleans(micropython: Any) -> None:
    _, builtins = micropython
    assert set(builtins) == {"3-argument pow", "int.from_bytes little/big",
                             "int.to_bytes big", "hashlib.sha512"}
    assert all(isinstance(v, bool) for v in builtins.values())


def test_quick_mode_reports_every_check_passed(capsys: pytest.CaptureFixture[str]) -> None:
    assert ed.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^correctness \(.*\): PASS$", out, re.MULTILINE), out
    assert "the stepped verify accepts" in out
    assert re.search(r"^  CPython [\d.]+: (\d+)/\1 checks pass$", out, re.MULTILINE), out
    assert re.search(r"^  MicroPython [\d.]+ \(WebAssembly\): (\d+)/\1 checks pass$", out,
                     re.MULTILINE), out
    for variant in ("double-and-add", "joint"):  # present; PASS or FAIL is not asserted
        assert re.search(rf"^Ed25519 verify at boot < 2 s on an RP2040 \(projected\), "
                         rf"{variant}: [\d.,]+ s: (PASS|FAIL)$", out, re.MULTILINE), out
