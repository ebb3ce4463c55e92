"""The simulated board: the real firmware, a cell plant model and a pseudo-terminal."""

from .board import SimulatedBoard
from .runtime import RUNTIMES, FirmwareCrash

__all__ = ["RUNTIMES", "FirmwareCrash", "SimulatedBoard"]
