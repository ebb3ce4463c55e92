"""Targets: what the suite runs against, a simulated board or a real one on a port."""

from __future__ import annotations

import math
from typing import Any

from ..link.client import BoardClient, Info
from .client import HOST_LEAD_S, RUNTIME_HARDWARE, WALL_SLACK_S, HilClient, HilError
from .rigs import Rig, SimRig


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
