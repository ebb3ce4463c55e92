"""I2C buses and the chips on them, for the simulated boards (docs/virtual_board.md, "I2C").

A chip is an :class:`I2cDevice`: it sees what a target sees on the wire, one transfer at a
time — its address (ACK or NACK), the bytes the controller writes (ACK each or NACK one),
the bytes the controller reads, the STOP. :class:`RegisterDevice` is the common case: a
register pointer set by the first byte(s) of a write, then reads and writes that
auto-increment it (an EEPROM, a sensor, a battery monitor's direct commands).

An :class:`I2cBus` carries the devices attached at their 7-bit addresses and the faults
the host injects (a NACK at an address, a bus timeout, a corrupted byte). The virtual
board sends it the board's transfers as a list of operations (``S``, ``W<hex>``,
``R<n>``, ``P``) and sends back what the controller saw; the bus keeps the state between
them (a transfer that ends without a STOP leaves its device addressed for a repeated
START).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

ADDRESSES = range(0x08, 0x78)  # 7-bit addresses a scan probes (the others are reserved)


class I2cDevice(ABC):
    """A chip on an I2C bus, as a target sees the wire.

    A transfer is: :meth:`address` (after a START or a repeated START), then
    :meth:`write` or :meth:`read` (whichever the address byte's R/W bit chose), then
    either :meth:`stop` or a repeated START (:meth:`address` again). ``time_ms`` is the
    board's clock (ms since power-on) at the START of the transfer in progress.
    """

    time_ms: float = 0.0

    def address(self, read: bool) -> bool:
        """Addressed (a write if not ``read``): True to ACK, False to NACK."""
        return True

    @abstractmethod
    def write(self, data: bytes) -> int:
        """Bytes from the controller, in order: return how many were ACKed (fewer than
        ``len(data)`` NACKs the byte at that index; the controller sends no more)."""

    @abstractmethod
    def read(self, n: int) -> bytes:
        """``n`` bytes to the controller (exactly ``n``)."""

    def stop(self) -> None:  # noqa: B027 (most devices need no STOP)
        """A STOP condition (or the bus released after a fault)."""


class RegisterDevice(I2cDevice):
    """A register map behind a pointer: a write sets the pointer from its first
    ``addrsize // 8`` bytes (big-endian, as ``machine.I2C``'s ``*_mem`` methods send it)
    and writes the rest from there; a read reads from the pointer; both advance it
    (wrapping at ``size``). ``readonly`` registers ignore writes (still ACKed).

    Override :meth:`read_register` / :meth:`write_register` for registers with effects.
    """

    def __init__(self, size: int = 256, *, addrsize: int = 8,
                 registers: Mapping[int, int] | None = None, fill: int = 0,
                 readonly: Iterable[int] = ()) -> None:
        if addrsize not in (8, 16, 24, 32):
            raise ValueError(f"addrsize must be 8, 16, 24 or 32, not {addrsize}")
        if not 0 < size <= 1 << addrsize:
            raise ValueError(f"size must be 1 to {1 << addrsize} registers, not {size}")
        self.size = size
        self.addrsize = addrsize
        self.memory = bytearray([fill & 0xFF]) * size
        for reg, value in (registers or {}).items():
            self.memory[reg] = value & 0xFF
        self.readonly = frozenset(readonly)
        self.pointer = 0
        self._pointer_bytes: list[int] | None = None  # collecting the pointer of a write

    def address(self, read: bool) -> bool:
        self._pointer_bytes = None if read else []
        return True

    def write(self, data: bytes) -> int:
        for byte in data:
            if self._pointer_bytes is not None:
                self._pointer_bytes.append(byte)
                if len(self._pointer_bytes) == self.addrsize // 8:
                    self.pointer = int.from_bytes(bytes(self._pointer_bytes), "big") % self.size
                    self._pointer_bytes = None
                continue
            self.write_register(self.pointer, byte)
            self.pointer = (self.pointer + 1) % self.size
        return len(data)

    def read(self, n: int) -> bytes:
        out = bytearray()
        for _ in range(n):
            out.append(self.read_register(self.pointer) & 0xFF)
            self.pointer = (self.pointer + 1) % self.size
        return bytes(out)

    def stop(self) -> None:
        self._pointer_bytes = None

    def read_register(self, reg: int) -> int:
        return self.memory[reg]

    def write_register(self, reg: int, value: int) -> None:
        if reg not in self.readonly:
            self.memory[reg] = value


@dataclass
class _Fault:
    kind: str  # "nack", "timeout", "corrupt"
    address: int | None  # None: any address
    times: int | None  # None: until cleared
    xor: int = 0x01
    index: int = 0
    direction: str = "read"

    def hits(self, address: int | None) -> bool:
        return (self.times is None or self.times > 0) and (
            self.address is None or self.address == address)

    def use(self) -> None:
        if self.times is not None:
            self.times -= 1


class I2cBus:
    """The devices on one bus and the faults injected on it; thread-safe (the virtual
    board's reader thread runs transfers while a test attaches devices or faults)."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.devices: dict[int, I2cDevice] = {}
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self._active: I2cDevice | None = None  # addressed, until a STOP
        self._active_address: int | None = None
        self._reading = False
        self._addressing = False  # a START came: the next byte written is an address
        self.transfers = 0  # address phases (START + address byte), ACKed or not
        self.data_bytes = 0  # bytes after the address bytes, either way
        self.nacks = 0
        self.timeouts = 0

    # -- the host's side
    def attach(self, address: int, device: I2cDevice) -> None:
        if not isinstance(address, int) or not 0 <= address <= 0x7F:
            raise ValueError(f"an I2C address is 7 bits (0 to 0x7f), not {address!r}")
        if not isinstance(device, I2cDevice):
            raise TypeError(f"an I2C device is an I2cDevice, not {type(device).__name__}")
        with self._lock:
            if address in self.devices and self.devices[address] is not device:
                raise ValueError(f"address 0x{address:02x} is taken on bus {self.name}")
            self.devices[address] = device

    def detach(self, address: int) -> I2cDevice:
        with self._lock:
            if address not in self.devices:
                raise ValueError(f"no device at 0x{address:02x} on bus {self.name}")
            device = self.devices.pop(address)
            if device is self._active:
                self._active = None
            return device

    def nack(self, address: int, times: int | None = None) -> None:
        """NACK ``address`` at its next ``times`` address phases (None: until cleared)."""
        self._add(_Fault("nack", address, times))

    def timeout(self, times: int = 1, address: int | None = None) -> None:
        """The next ``times`` transfers (to ``address``, or any) find the bus stuck (a
        target holding SCL low): the controller gives up after its timeout."""
        self._add(_Fault("timeout", address, times))

    def corrupt(self, times: int = 1, *, address: int | None = None, xor: int = 0x01,
                index: int = 0, direction: str = "read") -> None:
        """Flip bits (``xor``) of byte ``index`` of the next ``times`` reads by the
        controller (``direction="read"``) or writes a device receives (``"write"``)."""
        if direction not in ("read", "write"):
            raise ValueError(f"direction is 'read' or 'write', not {direction!r}")
        if not 0 < xor <= 0xFF:
            raise ValueError(f"xor must flip 1 to 8 bits (1 to 0xff), not {xor!r}")
        self._add(_Fault("corrupt", address, times, xor=xor, index=index, direction=direction))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add(self, fault: _Fault) -> None:
        if fault.times is not None and fault.times < 1:
            raise ValueError(f"times must be 1 or more (None: until cleared), not {fault.times}")
        with self._lock:
            self._faults.append(fault)

    def _fault(self, kind: str, address: int | None, direction: str = "read") -> _Fault | None:
        for fault in self._faults:
            if fault.kind == kind and fault.direction == direction and fault.hits(address):
                fault.use()
                return fault
        return None

    # -- the board's side
    def transfer(self, ops: Sequence[str], time_ms: float = 0.0) -> list[str]:
        """Run the controller's operations in order, one result each: ``S`` (START) and
        ``P`` (STOP) → ``-``; ``W<hex>`` → the count of bytes ACKed, or ``T`` (timed
        out at the address); ``R<n>`` → the bytes read, hex. After a START the first
        byte written is the address byte (7-bit address, R/W bit). After a timeout the
        operations up to the next STOP are skipped (``x``), as after a NACK: a
        controller abandons the transfer (the STOP itself is made)."""
        with self._lock:
            out: list[str] = []
            skipping = False
            for op in ops:
                kind, arg = op[:1], op[1:]
                if kind == "P":
                    skipping = False
                    self._release()
                    self._addressing = False
                    out.append("-")
                elif skipping:
                    out.append("x")
                elif kind == "S":
                    self._addressing = True
                    out.append("-")
                elif kind == "W":
                    data = bytes.fromhex(arg)
                    result = self._write(data, time_ms)
                    skipping = result == "T" or int(result) < len(data)
                    out.append(result)
                elif kind == "R":
                    out.append(self._read(int(arg)).hex())
                else:
                    raise ValueError(f"unknown I2C operation {op!r}")
            return out

    def _release(self) -> None:
        if self._active is not None:
            self._active.stop()
        self._active = None
        self._active_address = None

    def _write(self, data: bytes, time_ms: float) -> str:
        acks = 0
        if self._addressing and data:
            self._addressing = False
            address, reading = data[0] >> 1, bool(data[0] & 1)
            self.transfers += 1
            if self._fault("timeout", address) is not None:
                self.timeouts += 1
                self._release()
                return "T"
            device = self.devices.get(address)
            if device is not self._active:
                self._release()  # a repeated START to another chip ends the last one's
            acked = device is not None and self._fault("nack", address) is None
            if acked:
                assert device is not None
                device.time_ms = time_ms
                acked = bool(device.address(reading))
            if not acked:
                self.nacks += 1
                self._release()
                return "0"
            self._active, self._active_address, self._reading = device, address, reading
            acks, data = 1, data[1:]
        if not data:
            return str(acks)
        self.data_bytes += len(data)
        if self._active is None or self._reading:
            return str(acks)  # nobody listens: the byte is NACKed
        fault = self._fault("corrupt", self._active_address, "write")
        if fault is not None and -len(data) <= fault.index < len(data):
            buf = bytearray(data)
            buf[fault.index] ^= fault.xor
            data = bytes(buf)
        taken = self._active.write(data)
        taken = max(0, min(int(taken), len(data)))
        if taken < len(data):
            self.nacks += 1
        return str(acks + taken)

    def _read(self, n: int) -> bytes:
        self.data_bytes += n
        if self._active is None or not self._reading:
            return b"\xff" * n  # nobody drives SDA: the pull-up reads 1s
        data = bytearray(self._active.read(n))
        if len(data) != n:
            raise ValueError(f"{type(self._active).__name__}.read({n}) gave {len(data)} bytes")
        fault = self._fault("corrupt", self._active_address, "read")
        if fault is not None and -n <= fault.index < n:
            data[fault.index] ^= fault.xor
        return bytes(data)
