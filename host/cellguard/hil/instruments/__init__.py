"""Lab instruments for the HIL rig: roles, drivers (SCPI over PyVISA) and emulations.

``roles.py`` holds the contracts a rig uses (source/sink, cell emulator, DMM, relay
card); ``drivers/`` one module per instrument family; ``emulation.py`` the same
instruments emulated against a simulated board's plant, for a rig without hardware.
"""

from .roles import (
    ROLES,
    CellEmulator,
    Dmm,
    InstrumentError,
    RelayCard,
    ScpiInstrument,
    SourceSink,
)

__all__ = [
    "ROLES",
    "CellEmulator",
    "Dmm",
    "InstrumentError",
    "RelayCard",
    "ScpiInstrument",
    "SourceSink",
]
