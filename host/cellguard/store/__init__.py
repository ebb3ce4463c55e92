"""Where the data lands: the log's writer, the one reader interface, the logger.

``LogReader(path)`` opens a log with the backend that recognises it (SQLite is
the one there is; :mod:`.base` says what a second must implement).
``LogWriter`` writes the SQLite log; :mod:`.logger` fills it from boards and
:mod:`.query` reads it back for analysis.
"""

from .base import (
    BOARD_RESTARTED,
    LOST_FRAMES,
    UNPLUGGED,
    BoardSummary,
    Gap,
    LogEvent,
    LogReader,
    LogSummary,
    Sample,
    Series,
    SocEstimates,
)
from .sqlite import LogWriter, SqliteLogReader

__all__ = [
    "BOARD_RESTARTED",
    "LOST_FRAMES",
    "UNPLUGGED",
    "BoardSummary",
    "Gap",
    "LogEvent",
    "LogReader",
    "LogSummary",
    "LogWriter",
    "Sample",
    "Series",
    "SocEstimates",
    "SqliteLogReader",
]
