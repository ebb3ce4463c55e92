"""The simulated board: the real firmware, a cell plant model and a pseudo-terminal."""

from .board import SimulatedBoard
from .runtime import RUNTIMES, FirmwareCrash
from .script import Script, ScriptError, ScriptRunner, load_script, parse_script

__all__ = ["RUNTIMES", "FirmwareCrash", "Script", "ScriptError", "ScriptRunner",
           "SimulatedBoard", "load_script", "parse_script"]
