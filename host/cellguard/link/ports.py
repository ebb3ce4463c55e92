"""`cellguard ports`: list serial ports and find the cellguard boards among them.

Each port is probed with HELLO in its own thread, all at once, under one
deadline: a busy port fails at once (ports are opened exclusively), a silent one
after the HELLO timeout, and a port whose driver blocks is reported as not
answering when the deadline passes, never waited for.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import CellguardError, NotABoardError, PortError
from ..units import to_json

BOARD, NO_ANSWER, BUSY, MISSING, ERROR, NOT_PROBED = (
    "board", "no answer", "busy", "missing", "error", "not probed")


@dataclass
class PortReport:
    device: str
    description: str = ""
    hwid: str = ""
    by_id: tuple[str, ...] = ()  # stable names under /dev/serial/by-id that point here
    status: str = NOT_PROBED
    detail: str = ""  # why it is not a board, in a few words
    board: str | None = None
    unique_id: str | None = None
    firmware: str | None = None
    protocol: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["by_id"] = list(self.by_id)
        return d

    def line(self) -> str:
        if self.status == BOARD:
            what = (f"cellguard board {self.board}  id {self.unique_id}  firmware "
                    f"{self.firmware}  protocol {self.protocol}")
        elif self.status == NOT_PROBED:
            what = "-"
        else:
            what = self.status + (f" ({self.detail})" if self.detail else "")
        extra = "  ".join(x for x in (self.description if self.description != "n/a" else "",
                                      f"[{self.hwid}]" if self.hwid not in ("", "n/a") else "")
                          if x)
        aliases = "".join(f"\n{'':24} = {p}" for p in self.by_id)
        return f"{self.device:24} {what}" + (f"   {extra}" if extra else "") + aliases


def _by_id_links() -> dict[str, list[str]]:
    links: dict[str, list[str]] = {}
    for link in sorted(glob.glob("/dev/serial/by-id/*")):
        links.setdefault(os.path.realpath(link), []).append(link)
    return links


def list_ports(extra: list[str] | None = None) -> list[PortReport]:
    """The system's serial ports (pyserial), then ``extra`` ones not among them."""
    from serial.tools import list_ports as lp

    links = _by_id_links()
    reports = []
    seen: set[str] = set()
    for p in sorted(lp.comports(), key=lambda p: p.device):
        reports.append(PortReport(p.device, p.description or "", p.hwid or "",
                                  tuple(links.get(os.path.realpath(p.device), ()))))
        seen.add(os.path.realpath(p.device))
    for device in extra or []:
        if os.path.realpath(device) in seen:
            continue
        seen.add(os.path.realpath(device))
        reports.append(PortReport(device, by_id=tuple(links.get(os.path.realpath(device), ()))))
    return reports


def probe(report: PortReport, timeout_s: float) -> None:
    """Ask ``report.device`` HELLO and fill in what answered."""
    from .client import BoardClient, IncompatibleBoard

    try:
        with BoardClient(report.device) as client:
            info = client.hello(timeout_s=timeout_s, attempts=2)
    except PortError as exc:
        text = str(exc)
        report.status = (BUSY if "busy" in text else
                         MISSING if "no such device" in text else ERROR)
        report.detail = "" if report.status in (BUSY, MISSING) else text
    except IncompatibleBoard as exc:
        report.status, report.detail = ERROR, str(exc)
    except NotABoardError as exc:
        report.status = NO_ANSWER
        report.detail = "" if "no reply" in str(exc) else str(exc)
    except (CellguardError, OSError, ValueError) as exc:
        report.status, report.detail = ERROR, str(exc) or type(exc).__name__
    else:
        report.status = BOARD
        report.board, report.unique_id = info.board, info.unique_id
        report.firmware, report.protocol = info.firmware_version, info.protocol


def probe_all(reports: list[PortReport], timeout_s: float = 1.0,
              grace_s: float = 1.0) -> list[PortReport]:
    """Probe every port at once; whatever has not finished after ``timeout_s +
    grace_s`` is reported as not answering (its thread is left behind, a daemon)."""
    results = [PortReport(**{**r.__dict__}) for r in reports]
    threads = []
    for r in results:
        t = threading.Thread(target=probe, args=(r, timeout_s), daemon=True,
                             name=f"probe {r.device}")
        t.start()
        threads.append(t)
    end = time.monotonic() + timeout_s + grace_s
    out = []
    for r, t in zip(results, threads, strict=True):
        t.join(max(0.0, end - time.monotonic()))
        if t.is_alive():
            out.append(PortReport(r.device, r.description, r.hwid, r.by_id, NO_ANSWER,
                                  "the port did not respond in time"))
        else:
            out.append(r)
    return out


def command(args: Any) -> int:
    """`cellguard ports [PORT ...] [--no-probe] [--timeout S] [--json]`."""

    reports = list_ports(args.extra)
    if not args.no_probe:
        reports = probe_all(reports, timeout_s=args.timeout)
    if args.json:
        print(to_json([r.to_dict() for r in reports]))
    elif not reports:
        print("no serial ports found (a simulated board prints its own port: "
              "`cellguard ports PORT` probes it)")
    else:
        for r in reports:
            print(r.line())
        boards = sum(r.status == BOARD for r in reports)
        if not args.no_probe:
            print(f"{boards} cellguard board{'s' if boards != 1 else ''} on "
                  f"{len(reports)} port{'s' if len(reports) != 1 else ''}")
    return 0
