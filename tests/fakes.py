"""Test helpers: a scripted fake board on a real pseudo-terminal, and typical payloads."""

from __future__ import annotations

import os
import threading
import tty
from collections.abc import Callable
from typing import Any

from cellguard.link.framing import FrameReader
from cellguard.protocol.codec import Frame
from cellguard.protocol.messages import MAX_FRAME, PROTOCOL_MAJOR, PROTOCOL_MINOR

INFO_FIELDS: dict[str, Any] = {
    "protocol_major": PROTOCOL_MAJOR, "protocol_minor": PROTOCOL_MINOR,
    "firmware_version": "fake", "board": "fake", "unique_id": "01", "chemistry": "nmc",
    "cell_count": 2, "temp_count": 1, "capacity_mah": 1000, "control_period_ms": 100,
    "telemetry_period_ms": 1000, "cell_ov_mv": 4250, "cell_uv_mv": 2800, "temp_max_dc": 600,
    "temp_min_dc": -200, "charge_current_max_ma": 1000, "discharge_current_max_ma": 1000,
    "max_frame": MAX_FRAME, "known_types": [0x01, 0x02, 0x10], "boot": [], "key_id": 0,
}

TELEMETRY_FIELDS: dict[str, Any] = {
    "telemetry_seq": 0, "board_time_ms": 100, "state": "active", "faults": 0, "warnings": 0,
    "alarms": 0, "allowed": 3,
    "pack_mv": 7400, "current_ma": 0, "soc_cpct": 5000, "cells_mv": [3700, 3700],
    "temps_dc": [250],
}


class FakeBoard:
    """A device on a pty whose answers a test scripts: ``respond(frame) -> bytes``."""

    def __init__(self, respond: Callable[[Frame], bytes]) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.respond = respond
        self.received: list[Frame] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def _run(self) -> None:
        reader = FrameReader()
        os.set_blocking(self.master, False)
        import select

        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            for frame in reader.feed(data):
                self.received.append(frame)
                reply = self.respond(frame)
                if reply:
                    os.write(self.master, reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)




class ReadCounter:
    """Counts the bytes a host's ``BoardClient`` reads from its port, so a test can
    read until it has everything a simulated board wrote (``sim.tx_bytes`` less what
    was dropped) instead of until the line has been quiet for a while. Wrap the
    client before it reads anything."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        read = client.serial.read

        def counted(size: int = 1) -> bytes:
            data: bytes = read(size)
            self.count += len(data)
            return data

        client.serial.read = counted


def drain_board(client: Any, counter: ReadCounter, sim: Any, guard_s: float = 60.0) -> list[Any]:
    """Every message a (lock-step) simulated board has written to the host so far: the
    pty hands written bytes over asynchronously, so read until the count matches.
    ``guard_s`` (wall seconds) only stops a broken run from hanging."""
    import time

    messages: list[Any] = []
    deadline = time.monotonic() + guard_s
    while counter.count < sim.tx_bytes - sim.tx_dropped_bytes:
        if time.monotonic() > deadline:
            raise AssertionError(f"read {counter.count} of {sim.tx_bytes - sim.tx_dropped_bytes}"
                                 " bytes the board wrote")
        messages += client.receive()
    return messages
