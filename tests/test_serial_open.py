"""Issue 12, item 7: the host opens a port without resetting an ESP32 DevKit.

Its USB-UART bridge pulls the chip's EN (reset) low while RTS is asserted and
DTR is not; pyserial asserts both by default. The lines must be set before the
port opens (pyserial then applies them as it opens), RTS off and DTR on.
"""

from __future__ import annotations

from typing import Any

import pytest
import serial
from serial.urlhandler import protocol_loop

from cellguard.errors import CellguardError
from cellguard.hil.client import HilClient
from cellguard.link.client import BoardClient


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, bool]]:
    """Every port opened, as (DTR, RTS) at the moment it opened; any port name
    is a pyserial loopback."""
    states: list[tuple[bool, bool]] = []
    real_open = protocol_loop.Serial.open
    real_for_url = serial.serial_for_url

    def recording_open(self: Any) -> None:
        states.append((self.dtr, self.rts))
        real_open(self)

    def loopback(url: str, *args: Any, **kwargs: Any) -> Any:
        return real_for_url("loop://", *args, **kwargs)

    monkeypatch.setattr(protocol_loop.Serial, "open", recording_open)
    monkeypatch.setattr(serial, "serial_for_url", loopback)
    return states


def test_board_client_opens_with_rts_off_and_dtr_on(opened: list[tuple[bool, bool]]) -> None:
    client = BoardClient("/dev/ttyUSB0")
    try:
        assert opened == [(True, False)]
        assert client.serial.rts is False and client.serial.dtr is True
    finally:
        client.close()


def test_hil_reconnect_opens_with_rts_off_too(opened: list[tuple[bool, bool]]) -> None:
    client = HilClient("/dev/ttyUSB0")
    try:
        with pytest.raises(CellguardError):  # nothing answers HELLO on a loopback
            client.reconnect(wait_s=0.0)
        assert opened[:2] == [(True, False), (True, False)]
    finally:
        client.close()
