"""What the virtual dev board's chip does where silicon bites: one switch per behaviour.

``Silicon.default(mcu)`` is the chip as it is (an RP2040 with its native USB, an ESP32
on a dev board with a USB–UART bridge); a test switches one behaviour off, or changes
a figure, to prove the board path against it (``VirtualBoard(..., silicon=...)``,
``cellguard sim --virtual --silicon NAME=VALUE``). docs/virtual_board.md, "What is
faithful", names the switch of each row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..errors import CellguardError

# A 4 KB sector erase of the NOR flash both boards carry (W25Q16JV on a Pico, the
# ESP32 module's 4 MB part): typically 45 ms, at most 400 ms (datasheets).
FLASH_ERASE_TYPICAL_MS = 45.0
FLASH_ERASE_WORST_MS = 400.0
RP2_USB_WRITE_TIMEOUT_MS = 500.0  # the rp2 port's stdout waits this long for a USB host
RP2_CDC_TX_BYTES = 256.0  # TinyUSB's CDC TX buffer on a full-speed port
HOST_SERIAL_BUFFER_BYTES = 65536.0  # behind a USB-UART bridge: the host's serial buffer

_TRUE = {"1", "on", "true", "yes"}
_FALSE = {"0", "off", "false", "no"}


@dataclass(frozen=True)
class Silicon:
    """The chip's behaviours the virtual board emulates (each can be switched off).

    - ``soft_reset_keeps_pins``: pad levels and modes survive a soft reset and the
      REPL (off: a soft reset puts them back to the reset default);
    - ``hard_reset_resets_pins``: a hard or watchdog reset puts every pad back to its
      reset default (rp2: input with pull-down; esp32: input, no pull), so an
      output opens (off: the pads keep their levels, as no chip does);
    - ``watchdog_survives_soft_reset``: a started watchdog keeps running across a
      soft reset and bites at the REPL (off: a soft reset stops it);
    - ``usb_write_timeout_ms``: how long a write waits for a host that holds the port
      open without reading before its bytes are dropped (rp2 native USB: 500; 0: it
      never waits, as an ESP32's UART does: its USB–UART bridge takes the bytes
      whether or not the host reads them);
    - ``tx_buffer_bytes``: what the board's output path holds for a host that does
      not read (rp2: TinyUSB's 256-byte CDC TX buffer, then the write waits; esp32:
      the bytes leave on the UART at once and wait in the host's serial buffer, 64 KB
      here, so a host that pauses loses nothing until that fills);
    - ``drop_output_without_host``: output while no host has the port open is lost
      (off: it waits, up to 64 KB, and reaches the next host to open the port);
    - ``flash_stall_ms``: a flash erase/program (a file written and closed, or
      removed) stalls the interpreter this long (0: never);
      ``flash_stall_worst_ms`` and ``flash_worst_share``: that share of the stalls
      (drawn from the board's seed) lasts the worst case instead.
    """

    soft_reset_keeps_pins: bool = True
    hard_reset_resets_pins: bool = True
    watchdog_survives_soft_reset: bool = True
    usb_write_timeout_ms: float = RP2_USB_WRITE_TIMEOUT_MS
    tx_buffer_bytes: float = RP2_CDC_TX_BYTES
    drop_output_without_host: bool = True
    flash_stall_ms: float = FLASH_ERASE_TYPICAL_MS
    flash_stall_worst_ms: float = FLASH_ERASE_WORST_MS
    flash_worst_share: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "bool":
                if not isinstance(value, bool):
                    raise CellguardError(f"silicon {f.name} is on or off, not {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value) and value >= 0):
                raise CellguardError(f"silicon {f.name} must be a number, 0 or more, "
                                     f"not {value!r}")
        if self.tx_buffer_bytes < 1:
            raise CellguardError(f"silicon tx_buffer_bytes must be at least 1, not "
                                 f"{self.tx_buffer_bytes!r}")
        if self.flash_worst_share > 1:
            raise CellguardError(f"silicon flash_worst_share is a share, 0 to 1, not "
                                 f"{self.flash_worst_share!r}")
        if self.flash_worst_share and self.flash_stall_worst_ms < self.flash_stall_ms:
            raise CellguardError(
                f"silicon flash_stall_worst_ms ({self.flash_stall_worst_ms:g}) is below "
                f"flash_stall_ms ({self.flash_stall_ms:g}), the typical stall")

    @classmethod
    def default(cls, mcu: str, **changes: Any) -> Silicon:
        """The chip of a board file's ``mcu`` (``rp2040``, ``esp32``), with ``changes``."""
        if mcu == "esp32":
            # A plain ESP32 has no USB: its REPL is UART0 through the dev board's
            # USB-UART bridge, which never holds a write back for the host.
            base = cls(usb_write_timeout_ms=0.0, tx_buffer_bytes=HOST_SERIAL_BUFFER_BYTES)
        elif mcu == "rp2040":
            base = cls()
        else:
            raise CellguardError(f"no silicon model for mcu {mcu!r} (rp2040, esp32)")
        return base.changed(**changes) if changes else base

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def changed(self, **changes: Any) -> Silicon:
        unknown = [k for k in changes if k not in self.names()]
        if unknown:
            raise CellguardError(f"unknown silicon switch {unknown[0]!r}; switches: "
                                 f"{', '.join(self.names())}")
        return replace(self, **changes)

    def parsed(self, settings: Iterable[str]) -> Silicon:
        """These switches changed by ``NAME=VALUE`` texts (the CLI's ``--silicon``):
        ``on``/``off`` (or true/false, yes/no, 1/0) for a behaviour, a number for a
        figure (milliseconds, or a share from 0 to 1)."""
        kinds = {f.name: f.type for f in fields(self)}
        changes: dict[str, Any] = {}
        for text in settings:
            name, eq, value = text.partition("=")
            name, value = name.strip(), value.strip().lower()
            if not eq or not name or not value:
                raise CellguardError(f"--silicon {text!r}: give NAME=VALUE, such as "
                                     "usb_write_timeout_ms=0")
            if name not in kinds:
                raise CellguardError(f"--silicon {text!r}: unknown switch {name!r}; "
                                     f"switches: {', '.join(kinds)}")
            if kinds[name] == "bool":
                if value not in _TRUE | _FALSE:
                    raise CellguardError(f"--silicon {text!r}: {name} is on or off")
                changes[name] = value in _TRUE
            else:
                try:
                    changes[name] = float(value)
                except ValueError:
                    raise CellguardError(f"--silicon {text!r}: {name} is a number") from None
        return self.changed(**changes)

    def options(self) -> dict[str, Any]:
        """For the board process (vboard.mjs)."""
        return asdict(self)
