"""Targets: what the suite runs against, a simulated board or a real one on a port."""

from __future__ import annotations

import functools
import math
import tempfile
from typing import Any

from ..link.client import BoardClient, Info
from .client import HOST_LEAD_S, RUNTIME_HARDWARE, WALL_SLACK_S, HilClient, HilError
from .rigs import Rig, SimRig, VirtualRig


# -- targets ----------------------------------------------------------------------------
class Target:
    """What the suite runs against; it owns the clients it opened and a rig."""

    simulated = False
    runtime = RUNTIME_HARDWARE
    min_speed = 1.0  # board seconds per wall second, at the least (for wall timeouts)

    def __init__(self, port: str, board: str = "") -> None:
        self.port = port
        self.board = board
        self.firmware_version = ""
        self.clients: list[HilClient] = []
        self.rig: Rig = Rig(self)

    def connect(self) -> HilClient:
        client = HilClient(self.port, self.min_speed)
        client.health = self.health
        self.clients.append(client)
        return client

    def health(self) -> None:
        """Raise if the target can no longer answer (a simulation that stopped)."""

    def drain(self) -> None:
        for c in self.clients:
            c.poll()

    def close_clients(self) -> None:
        for c in self.clients:
            c.close()
        self.clients.clear()

    def close(self) -> None:
        self.close_clients()

    def describe(self) -> str:
        return f"real board {self.board or '?'} on {self.port} (rig: {self.rig.describe()})"

    def properties(self) -> dict[str, str]:
        props = {"board": self.board, "runtime": self.runtime, "rig": self.rig.kind,
                 "port": self.port}
        if self.firmware_version:
            props["firmware"] = self.firmware_version
        return props


class PortTarget(Target):
    """A real board on a serial port or pyserial URL."""

    def probe(self) -> Info:
        """Ask the board who it is (fills ``board`` and ``firmware_version``)."""
        client = BoardClient(self.port)
        try:
            info = client.hello()
        finally:
            client.close()
        self.board, self.firmware_version = info.board, info.firmware_version
        return info


class SimTarget(Target):
    """A simulated board, free-running at ``speed`` (``math.inf``: as fast as it
    goes) but never more than ``HOST_LEAD_S`` of board time ahead of what a
    client that has the port open has read, and standing still while no client
    has it open unless the rig waits. ``SimRig.wait`` leaves it held at the
    board time it waited for until a client waits (its frames are answered
    meanwhile), so the next stimulus acts at exactly that time."""

    simulated = True
    min_speed = 10.0

    def __init__(self, board: str = "sim-4s", runtime: str = "micropython", seed: int = 7,
                 speed: float = math.inf, **sim_kw: Any) -> None:
        from ..sim import SimulatedBoard

        # Paced to the suite: while a client has the port open the board waits
        # for it to read (up to the wall slack of a wait).
        sim_kw.setdefault("host_lead_s", HOST_LEAD_S)
        sim_kw.setdefault("host_stall_s", WALL_SLACK_S)
        # With no client on the port the board stands still, except while the
        # rig waits: a test that looks away (at a log it wrote, at the plant's
        # history) finds it where it left it. After rig.wait it holds until a
        # client waits.
        sim_kw.setdefault("hold_while_away", True)
        self.sim = SimulatedBoard(board=board, runtime=runtime, seed=seed, speed=speed,
                                  **sim_kw)
        self.sim.start()
        super().__init__(self.sim.port, self.sim.board["name"])
        self.runtime = runtime
        self.seed = seed
        if math.isfinite(speed) and speed > 0:
            self.min_speed = min(self.min_speed, speed / 2)
        self.rig = SimRig(self)

    def connect(self) -> HilClient:
        client = super().connect()
        client.health = self._client_waits
        client.presence = self.sim.hold_presence  # the rig's hand on the button
        return client

    def _client_waits(self) -> None:
        """A client waits for board time to pass: the rig's hold ends."""
        self.sim.release()
        self.health()

    def health(self) -> None:
        self.sim.check()  # the firmware's or the simulation's own error
        if not self.sim.running:
            raise HilError("the simulated board stopped")

    def close(self) -> None:
        super().close()
        self.sim.close()
        self.sim.check()

    def describe(self) -> str:
        return (f"simulated board {self.board}, firmware under {self.runtime}, seed "
                f"{self.seed}")

    def properties(self) -> dict[str, str]:
        return {"board": self.board, "runtime": self.runtime, "rig": self.rig.kind,
                "seed": str(self.seed)}


VIRTUAL_SPEED = 50.0
"""Board seconds per wall second of a virtual board in the suite unless told:
fast enough for minutes of board time, slow enough that the firmware's 100 ms
control loop keeps its period on a busy 2-core host (docs/hil.md)."""


HISTORY_S = 4800.0
"""Board time of plant history a virtual target keeps (the SoC cycle looks back
over its charge leg, about an hour)."""
OFFSET_SAMPLES = 30


@functools.cache
def _built_firmware() -> dict[str, bytes]:
    """The working tree's firmware as a deploy compiles it, once a process (a suite
    boots a fresh virtual board for every test)."""
    from ..deploy.build import built_firmware

    return built_firmware()


class VirtualTarget(Target):
    """A virtual dev board (``cellguard.sim.virtual.VirtualBoard``): real MicroPython
    running the working tree's firmware from its flash (``main.py``,
    ``board_main.run()``, ``hal_adc_mux`` on the board file's pins), the plant wired
    to those pins as its rig. It free-runs at ``speed`` times its process's own time
    (docs/virtual_board.md); it is never held (as a real board is not), so a host
    that pauses lets board time pass."""

    simulated = True
    runtime = "micropython (virtual board)"

    def __init__(self, board: str = "pico-4s", seed: int = 7,
                 speed: float = VIRTUAL_SPEED) -> None:
        from ..sim.virtual import VirtualBoard, install_firmware

        if not (math.isfinite(speed) and speed > 0):
            raise HilError(f"a virtual board runs at a finite speed above 0, not {speed}")
        self._flash = tempfile.TemporaryDirectory(prefix="cellguard-hil-vflash-")
        try:
            # Enough plant history for a test's longest look back (the SoC cycle's
            # charge leg, about an hour of board time).
            self.vboard = VirtualBoard(board, flash=self._flash.name, speed=speed, seed=seed,
                                       history_s=HISTORY_S)
            install_firmware(self._flash.name, self.vboard.board["name"], _built_firmware())
            self.vboard.start()
        except BaseException:
            self._flash.cleanup()
            raise
        super().__init__(self.vboard.port, self.vboard.board["name"])
        self.sim = self.vboard  # the rig drives its plant with the simulator's controls
        # The firmware's board time (telemetry) counts from its first control step,
        # the plant's from power-on: their difference, sampled as telemetry arrives.
        self._offsets: list[int] = []
        self._last_board_ms: int | None = None
        self.seed = seed
        self.speed = speed
        # Wall timeouts: the host may lag the board (a busy machine), never the
        # other way round; a quarter of the speed leaves room for slow hosts.
        self.min_speed = max(speed / 4, 1.0)
        self.rig = VirtualRig(self)

    def connect(self) -> HilClient:
        client = super().connect()
        client.on_telemetry = self._note_telemetry
        client.presence = self.vboard.hold_presence  # the rig's hand on the button
        return client

    def _note_telemetry(self, board_ms: int) -> None:
        """A telemetry frame arrived, stamped ``board_ms`` by the firmware: the
        plant's clock now, less that, is one sample of the offset between them
        (late by the host's latency, early by up to a plant tick)."""
        if self._last_board_ms is not None and board_ms < self._last_board_ms:
            self._offsets.clear()  # the firmware started again: a new offset
        self._last_board_ms = board_ms
        self._offsets.append(self.vboard.time_ms - board_ms)
        del self._offsets[:-OFFSET_SAMPLES]

    def plant_ms(self, board_ms: int) -> int | None:
        """The plant's time (ms from power-on) at the firmware's board time
        ``board_ms``; None before any telemetry."""
        if not self._offsets:
            return None
        # A frame read late (a backlog) overstates the offset; the plant's clock
        # lags by at most a tick: the smallest sample is the closest.
        return board_ms + min(self._offsets)

    def health(self) -> None:
        if not self.vboard.running:
            raise HilError("the virtual board's process stopped")
        self.vboard.poll()
        if self.vboard.watchdog_resets:
            raise HilError(f"the virtual board's watchdog reset it (resets: "
                           f"{', '.join(self.vboard.resets)}): the firmware did not feed it "
                           f"in time at {self.speed:g}x (a lower --sim-speed on a busy host)")

    def power_cycle(self) -> None:
        """Unplug and plug back in: every open client follows to the (new) port."""
        clients = [c for c in self.clients if c.is_open]
        for c in clients:
            c.disconnect()
        self.port = self.vboard.restart()
        self._offsets.clear()
        for c in self.clients:
            c.port_name = self.port
        for c in clients:
            c.reconnect(wait_s=5.0)

    def close(self) -> None:
        super().close()
        try:
            self.vboard.close()
        finally:
            self._flash.cleanup()

    def describe(self) -> str:
        return (f"virtual board {self.board} at {self.speed:g}x, the working tree's "
                f"firmware on its flash, seed {self.seed}")

    def properties(self) -> dict[str, str]:
        return {"board": self.board, "runtime": self.runtime, "rig": self.rig.kind,
                "seed": str(self.seed), "speed": f"{self.speed:g}"}
