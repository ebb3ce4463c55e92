"""Hardware in the loop: one test suite for simulated and real boards.

A :class:`Target` is what the suite (``hil_tests/``) runs against: a simulated
board (:class:`SimTarget`: the real firmware under MicroPython or CPython
behind a pseudo-terminal, free-running as fast as it goes) or a real board on
a serial port (:class:`PortTarget`, any pyserial URL). Tests talk to it only
through

- :class:`HilClient`, a :class:`~cellguard.link.client.BoardClient` that keeps every
  message it read and waits in *board* time (read from telemetry), so a wait
  means the same on a board running 365x real time and on one on the desk;
- a :class:`Rig`, which forces plant conditions: the simulator's plant on a
  simulated board (:class:`SimRig`); on a real board an operator at the
  terminal (:class:`OperatorRig`, ``--operator`` with ``-s``) or nothing
  (:class:`NoRig`: every stimulus skips the test, naming what it would need).

Limits for stimuli come from the board itself (:class:`BoardLimits`: INFO, the
configuration dump and the firmware's protection table), never from numbers
written into a test. ``cellguard hil`` runs the suite as a pytest subprocess
(:func:`run_suite`) and prints a table from its JUnit XML.
"""

from .client import (
    BLOCKS_CHARGE,
    BLOCKS_DISCHARGE,
    HOST_LEAD_S,
    RUNTIME_HARDWARE,
    SEVERITIES,
    SILENT_WALL_S,
    WALL_SLACK_S,
    BoardLimits,
    HilClient,
    HilError,
    HilTimeout,
    ProtectionLimits,
    restore_config,
    set_config,
)
from .instrument_rig import InstrumentRig
from .rig_file import RigSpec, load_rig
from .rigs import NEEDS_RIG, OperatorRig, Rig, SimRig, VirtualRig
from .suite import (
    CaseResult,
    SuiteRun,
    check_suite_args,
    cli_hil,
    parse_junit,
    run_suite,
    suite_dir,
    summary_lines,
)
from .targets import VIRTUAL_SPEED, PortTarget, SimTarget, Target, VirtualTarget

__all__ = [
    "BLOCKS_CHARGE",
    "BLOCKS_DISCHARGE",
    "HOST_LEAD_S",
    "NEEDS_RIG",
    "RUNTIME_HARDWARE",
    "SEVERITIES",
    "SILENT_WALL_S",
    "VIRTUAL_SPEED",
    "WALL_SLACK_S",
    "BoardLimits",
    "CaseResult",
    "HilClient",
    "HilError",
    "HilTimeout",
    "InstrumentRig",
    "OperatorRig",
    "PortTarget",
    "ProtectionLimits",
    "Rig",
    "RigSpec",
    "SimRig",
    "SimTarget",
    "SuiteRun",
    "Target",
    "VirtualRig",
    "VirtualTarget",
    "check_suite_args",
    "cli_hil",
    "load_rig",
    "parse_junit",
    "restore_config",
    "run_suite",
    "set_config",
    "suite_dir",
    "summary_lines",
]

