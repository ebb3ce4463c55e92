"""Keysight 34970A / 34972A / DAQ970A data-acquisition mainframe with a 34903A
(DAQM903A) 20-channel actuator in slot 1: a relay card.

Dialect: the 34970A/34972A User's Guide (and DAQ970A Programming Guide) ROUTe
commands, GPIB, RS-232, USBTMC or LAN, LF-terminated.
"""

from __future__ import annotations

from typing import ClassVar

from ..roles import RelayCard
from ._checks import Checks


class Keysight34970a(Checks, RelayCard):
    """Channels 101..120 (slot 1): ``ROUT:CLOS (@101)``, ``ROUT:OPEN (@101)``, read
    back with ``ROUT:CLOS? (@101)`` (1: closed); ``open_all`` opens the whole slot
    (``ROUT:OPEN (@101:120)``) and reads all twenty back."""

    MODEL: ClassVar[str] = r"(Keysight|Agilent|HEWLETT-PACKARD).*,(3497[02]A|DAQ970A),"
    DESCRIPTION: ClassVar[str] = "Keysight 34970A relay card"
    CHANNELS: ClassVar[tuple[int, ...]] = tuple(range(101, 121))

    def set_closed(self, channel: int, closed: bool) -> None:
        channel = self.check_index("relay channel", channel, self.CHANNELS)
        verb = "CLOS" if closed else "OPEN"
        self.confirm_bool(f"ROUT:{verb} (@{channel})", f"ROUT:CLOS? (@{channel})",
                          bool(closed))

    def closed(self, channel: int) -> bool:
        channel = self.check_index("relay channel", channel, self.CHANNELS)
        return self.query_bool(f"ROUT:CLOS? (@{channel})")

    def open_all(self) -> None:
        span = f"(@{self.CHANNELS[0]}:{self.CHANNELS[-1]})"
        command = f"ROUT:OPEN {span}"
        self.write(command)
        self.check_errors(command)
        answer = self.query(f"ROUT:CLOS? {span}")
        states = [s.strip() for s in answer.split(",")]
        if len(states) != len(self.CHANNELS) or any(s not in ("0", "+0") for s in states):
            raise self.refuse(f"sent {command!r} but 'ROUT:CLOS? {span}' reads back "
                              f"{answer!r}")
