"""Every script in benchmarks/ runs: a quick smoke run of each, so none can rot unseen.

Each script is run as a user would run it (``python benchmarks/<name>.py --quick``,
from the repository root, as a subprocess) and must exit 0, without a traceback,
printing its figure lines. Only the lines' shape is checked, never their values:
the figures of a seconds-long run on a shared machine mean nothing (and timings
are never asserted). A script added to benchmarks/ without an entry in SMOKE
fails ``test_every_benchmark_has_a_smoke_run``.

The PyBaMM benchmarks run with an empty trace cache (a fresh clone's situation):
their quick runs share one short PyBaMM trace, made once per session.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

NUMBER = r"[-+]?[\d,]+(?:\.\d+)?"

# script -> (needs PyBaMM, patterns each of which must match a line of its output)
SMOKE: dict[str, tuple[bool, tuple[str, ...]]] = {
    "auth_cost.py": (False, (
        r"^open\s+1\s+1\s+\d+\s+\d+  set_config \d+ -> config_value \d+$",
        r"^locked\s+2\s+2\s+\d+\s+\d+  get_nonce \d+, auth \d+ -> nonce \d+, config_value \d+$",
        rf"^micropython\s+locked/open\s+{NUMBER}x\s+{NUMBER}x\s+{NUMBER}–{NUMBER} ",
        r"^\.mpy\s+locked\s+\d+\s+\d+ \+ \d+(\s+\d+){6}$",
        r"^- Wire: a locked write takes \d+ round trips instead of \d+",
    )),
    "boot_check.py": (False, (
        rf"^  pico-4s\s+\d+\s+{NUMBER}\s+{NUMBER}\s+\d+ / \d+$",
        r"^  main\.py compiled: [\d,]+ B of code kept while the firmware runs, \d+ names",
        rf"^  pico-4s\s+{NUMBER}\s+{NUMBER}-{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x$",
        rf"^  pico-4s\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$",
        r"^boot check < 1 s on an RP2040 \(projected\), pico-4s: [\d.]+ s: (PASS|FAIL)$",
        r"^check of a good build passes, one changed byte refused: (PASS|FAIL)$",
    )),
    "ed25519_board.py": (False, (
        r"^correctness \(RFC 8032 TEST 1-3 verify, tampered fail, both interpreters\): "
        r"(PASS|FAIL)$",
        r"^Ed25519 verify at boot < 2 s on an RP2040 \(projected\), double-and-add: [\d.,]+ s: "
        r"(PASS|FAIL)$",
        r"^Ed25519 verify at boot < 2 s on an RP2040 \(projected\), joint: [\d.,]+ s: "
        r"(PASS|FAIL)$",
    )),
    "protocol_throughput.py": (False, (
        r"^\d+ TELEMETRY frames, 16 cells, 16 temperatures: payload \d+ bytes",
        r"^\d+ frames byte-identical to the firmware's Link.send",
        rf"^baseline\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x$",
        rf"^decode\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x$",
        rf"^decode\+store\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x$",
        r"^goal: decode >= [\d,]+ frames/s: (PASS|FAIL)",
    )),
    "reaction_times.py": (False, (
        r"^\| protection \| severity \| quantity \|",
        r"^\| `cell_overvoltage` \| fault: .* \| \d+–\d+ ms: output opens \|",
    )),
    "two_layers.py": (False, (
        r"^\| chip \| condition \| firmware's protection \|",
        r"^\| OCC \| charging at \d+ A \| `overcurrent_charge_peak` > \d+ A \| \d+ ms",
    )),
    "firmware_budget.py": (False, (
        rf"^4s/2t\s+all\s+\d+\s+\d+\s+{NUMBER}$",
        r"^4s/2t\s+\d+\s+\d+\s+\d+\s+no allocation, faults seen 0x[0-9a-f]+",
        rf"^16s/16t \.mpy\s+{NUMBER} KB\s+{NUMBER} KB",
        r"^16s/16t \.mpy\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+ B$",
        rf"^4s/2t\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}–{NUMBER}\s+{NUMBER}\s+{NUMBER}",
        r"^protection step allocates 0 bytes\s+.*(PASS|FAIL)$",
        r"^heap high-water < \d+ KB, 16 cells \(\.mpy\)\s+.*(PASS|FAIL)$",
        rf"^bq 16s/3t \.mpy\s+{NUMBER} KB\s+{NUMBER} KB",
        r"^bq 16s/3t \.mpy\s+\d+\s+\d+\s+\d+\s+no allocation$",
        r"^steady \(\d+ steps, all alike\)\s+4\s+\d+(\s+\d+){5}\s+\d+\.\d+ ms$",
        r"^16-cell BQ76952 heap high-water < \d+ KB \(\.mpy\)\s+.*(PASS|FAIL)$",
        r"^measurement path allocates 0 B \(BQ76952\)\s+.*(PASS|FAIL)$",
    )),
    "estimator_cost.py": (False, (
        r"^4s profile\s+\d+\s+no allocation\s+\d+",
        rf"^4s profile\s+{NUMBER} KB\s+{NUMBER} KB",
        rf"^4s profile\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER} \(",
        r"^sample\(\) allocates 0 bytes \(control step\)\s+.*(PASS|FAIL)$",
        r"^live heap does not grow over the drive cycles\s+.*(PASS|FAIL)$",
        rf"^4s profile\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+"
        rf"{NUMBER}\s+{NUMBER} \({NUMBER}–{NUMBER}\)\s+{NUMBER}–{NUMBER}\s+{NUMBER}$",
        rf"^  The 4-cell heap with the estimator \(.*\): {NUMBER} KB in use$",
        rf"^  of {NUMBER} KB: headroom {NUMBER} KB \({NUMBER}%\)\.$",
        r"^projected GC pause < 100 ms on an RP2040, 4s profile\s+.*(PASS|FAIL)$",
    )),
    "estimator_accuracy.py": (True, (
        r"^  nmc-cc-25C\s+\+\s+seed 1 done in\s+[\d.]+ s",
        r"^  nmc-cc-25C\s+-\s+seed 1 done in\s+[\d.]+ s",
        rf"^nmc-cc-25C\s+\+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+",
        rf"^nmc-cc-25C\s+-\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+",
        r"^  (PASS|FAIL)  NMC at 25 degC: EKF RMSE",
    )),
    "cell_fit.py": (True, (
        rf"^chen2020\s+cc\s+25\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}"
        r"\s+held-out$",
        rf"^chen2020\s+OCV table - PyBaMM bulk OCV at 25 degC, 5\.\.95 %: RMS {NUMBER} mV",
    )),
    "log_scale.py": (False, (
        r"^logged:\s+\d+ telemetry rows, \d+ in the summary",
        rf"^frames/s sustained:\s+{NUMBER}",
        rf"^logger CPU, logging:\s+{NUMBER} % of one core",
        r"^lost frames:\s+\d+",
        r"^goal \(0 lost frames\): (PASS|FAIL)$",
    )),
    "estimator_faults.py": (False, (
        rf"^open_wire\s+cpython\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+",
        r"^protections tripped:$",
    )),
    "flash_budget.py": (False, (
        r"^figure\s+.*steady R0: after\s+.*drifting R0: after$",
        rf"^erases/day(\s+{NUMBER})+$",
        rf"^stall ms/hour(\s+{NUMBER})+$",
        rf"^longest stall in a pass ms(\s+{NUMBER})+$",
        r"^drifting R0: after: \d+ estimation runs, output closed at the end$",
    )),
    "lifetime_year.py": (False, (
        r"^quantity\s+truth\s+record\s+difference\s+tolerance\s+result$",
        rf"^charge_in_ah\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+1 %\s+(PASS|FAIL)$",
        rf"^equivalent_full_cycles\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+2 %\s+(PASS|FAIL)$",
        rf"^harmful: short_circuit\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+exact\s+(PASS|FAIL)$",
        rf"^worst loss at a power cycle, s\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+",
        rf"^record bytes written\s+{NUMBER}\s+{NUMBER}$",
        rf"^most-erased block, erases\s+{NUMBER}\s+{NUMBER}$",
        r"^years to 100,000 erases of the most-erased block: [\d,]+$",
        r"^power cycle during an over-temperature .*: \d+ over-temperature events counted",
        r"^power cycle 5 s after a boot: \d+ boots counted of \d+",
        r"^agreement: (PASS|FAIL)",
    )),
    "sim_speed.py": (False, (
        r"^\| micropython \| 4 \| \d+x \| \d+ \| \d+ / \d+ \| \d+ \|$",
        r"^\| cpython \| 4 \| \d+x \| \d+ \| \d+ / \d+ \| \d+ \|$",
        r"^goal: micropython, 4 cells >= \d+x real time: \d+x\s+(PASS|FAIL)$",
    )),
    "deploy_time.py": (False, (
        r"^cellguard deploy on a virtual pico-4s, median of 1 ",
        rf"^full firmware, empty board\s+{NUMBER} s   \d+ files sent \({NUMBER} B\)",
        rf"^one module changed\s+{NUMBER} s   2 files sent \({NUMBER} B\), \d+ copied",
        rf"^same build again\s+{NUMBER} s   0 files sent \(0 B\)",
    )),
    "virtual_board.py": (False, (
        rf"^power-on to REPL\s+{NUMBER} s$",
        rf"^mpremote fs cp 2 KB to board\s+{NUMBER} s$",
        rf"^mpremote fs cp 2 KB from board\s+{NUMBER} s$",
        rf"^power-on to firmware HELLO\s+{NUMBER} s$",
    )),
    "virtual_i2c.py": (False, (
        r"^board\s+call\s+host ms/call\s+board us/call\s+addr phases$",
        rf"^pico-4s\s+readfrom_mem_into \(2 bytes\)\s+{NUMBER}\s+{NUMBER}\s+2$",
        rf"^pico-4s\s+writeto_mem \(2 bytes\)\s+{NUMBER}\s+{NUMBER}\s+1$",
    )),
}

pytestmark = pytest.mark.timeout(300)


def test_every_benchmark_has_a_smoke_run() -> None:
    scripts = {p.name for p in BENCHMARKS.glob("*.py")}
    assert scripts, f"no scripts in {BENCHMARKS}"
    missing = sorted(scripts - set(SMOKE))
    assert not missing, f"benchmarks without a smoke run: add them to SMOKE: {missing}"
    assert not sorted(set(SMOKE) - scripts), "SMOKE names a script that no longer exists"


def test_every_benchmark_documents_its_quick_mode() -> None:
    readme = (BENCHMARKS / "README.md").read_text()
    assert "--quick" in readme
    for name in SMOKE:
        assert f"`{name}`" in readme, f"benchmarks/README.md does not describe {name}"


@pytest.fixture(scope="session")
def trace_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty PyBaMM trace cache, shared by the session's quick runs."""
    return tmp_path_factory.mktemp("pybamm-cache")


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_quick_run(script: str, trace_cache: Path) -> None:
    needs_pybamm, patterns = SMOKE[script]
    if needs_pybamm and importlib.util.find_spec("pybamm") is None:
        pytest.skip("PyBaMM is not installed (optional extra: `make pybamm-setup`; "
                    "`make test` installs it)")
    env = {**os.environ, "CELLGUARD_CACHE_DIR": str(trace_cache)}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=240)
    output = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, f"{script} --quick exited {proc.returncode}\n{output}"
    assert "Traceback" not in proc.stderr, output
    lines = proc.stdout.splitlines()
    for pattern in patterns:
        rx = re.compile(pattern)
        assert any(rx.search(line) for line in lines), f"no line matches {pattern!r}\n{output}"
