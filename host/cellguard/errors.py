"""Errors the command line turns into a clear message and a non-zero exit."""


class CellguardError(Exception):
    """Base of every error a user should see as one clear line, not a traceback."""


class PortError(CellguardError):
    """The serial port cannot be opened or used."""


class NotABoardError(CellguardError):
    """Something answered on the port, or nothing did, but not a cellguard board."""


class LogFileError(CellguardError):
    """A log file that cannot be written or is not a cellguard log."""


class SetupError(CellguardError):
    """Something the tool needs (Node, the MicroPython runtime) is missing."""


class OutputError(CellguardError):
    """An output a command refuses to write: one of its inputs, or an existing file
    without --force (see cellguard.files)."""
