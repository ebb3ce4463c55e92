"""The simulated board's HAL: sensor codes and serial bytes come from the host.

The host-side simulator (``cellguard.sim``) owns the plant model. Each control
period it hands this module the ADC codes the board would read and the bytes the
host sent, runs one firmware step, and takes back the bytes written and the
output state. It is the only firmware module the simulator talks to, under
MicroPython (WebAssembly port, via hex strings) and CPython (via bytes) alike.
"""

import json
from binascii import hexlify, unhexlify
from struct import unpack_from

from .app import Bms
from .hal import Hal

# Output flags returned by SimBoard.step: what the board drives.
OUT_CLOSED = 1  # main contactor / FETs closed
OUT_PRECHARGE = 2  # precharge relay on
OUT_CHARGE = 4  # charge direction allowed
OUT_DISCHARGE = 8  # discharge direction allowed
OUT_BALANCE_SHIFT = 4  # bits 4 and up: the balancing mask (flags >> 4, bit i = cell i)
EXTRA_BYTES = 8  # after the u16 codes: pack code u16, link mV i32, feedback i8, presence u8


class SimHal(Hal):
    """Codes: u16 per cell, current, u16 per temperature sensor, then the pack
    code (u16), the DC-link voltage (i32 mV, -1: not measured), the contactor
    feedback (i8, -1: not read) and the presence button (u8: 1 held; a simulated
    board has one). The pack code counts only on a board whose front end has a
    ``pack_adc``."""

    def __init__(self, n_cells, n_temps, unique_id, storage=None, has_pack_adc=False):
        self.n_cells = n_cells
        self.n_temps = n_temps
        self.tail = 2 * (n_cells + 1 + n_temps)
        self.codes = bytearray(self.tail + EXTRA_BYTES)
        self.output_closed = False
        self.precharge_on = False
        self.charge_allowed = True
        self.discharge_allowed = True
        self.balancing = 0  # bit i: cell i bleeds through its balancing resistor
        self.has_pack_adc = has_pack_adc
        self._uid = unique_id
        self._storage = storage

    def sample(self, raw_cells, raw_temps):
        codes = self.codes
        for i in range(self.n_cells):
            raw_cells[i] = unpack_from("<H", codes, 2 * i)[0]
        base = 2 * (self.n_cells + 1)
        for i in range(self.n_temps):
            raw_temps[i] = unpack_from("<H", codes, base + 2 * i)[0]
        return unpack_from("<H", codes, 2 * self.n_cells)[0]

    def release(self):
        """What a reset does to the outputs: every pin released."""
        self.output_closed = False
        self.precharge_on = False
        self.charge_allowed = True
        self.discharge_allowed = True
        self.balancing = 0

    def set_output(self, closed):
        self.output_closed = closed

    def set_precharge(self, on):
        self.precharge_on = on

    def set_directions(self, charge, discharge):
        self.charge_allowed = charge
        self.discharge_allowed = discharge

    def set_balancing(self, mask):
        self.balancing = mask & ((1 << self.n_cells) - 1)

    def read_pack_code(self):
        if not self.has_pack_adc:
            return -1
        return unpack_from("<H", self.codes, self.tail)[0]

    def read_link_mv(self):
        return unpack_from("<l", self.codes, self.tail + 2)[0]

    def output_feedback(self):
        return unpack_from("<b", self.codes, self.tail + 6)[0]

    def presence(self):
        return self.codes[self.tail + 7]

    def outputs(self):
        """The OUT_* flags of what the board drives now, the balancing mask above
        them (``flags >> OUT_BALANCE_SHIFT``)."""
        return ((OUT_CLOSED if self.output_closed else 0)
                | (OUT_PRECHARGE if self.precharge_on else 0)
                | (OUT_CHARGE if self.charge_allowed else 0)
                | (OUT_DISCHARGE if self.discharge_allowed else 0)
                | (self.balancing << OUT_BALANCE_SHIFT))

    def unique_id(self):
        return self._uid

    def storage_dir(self):
        """Folder that survives resets (the simulated flash), or None."""
        return self._storage


class SimPort:
    """Serial port whose input is filled by the simulator and output collected."""

    def __init__(self):
        self.rx = bytearray()
        self.tx = bytearray()

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        if not n:
            return 0
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n

    def write(self, data):
        self.tx.extend(data)
        return len(data)


_EIO = 5
_ETIMEDOUT = 110


class SimI2c:
    """The four ``machine.I2C`` transfer methods a chip driver uses, over the
    simulator's bus: ``xfer`` sends a transfer's operations (``S``, ``W<hex>`` whose
    first byte after a START is the address byte, ``R<n>``, ``P``; comma-separated)
    and returns the results (``cellguard.sim.i2c.I2cBus.transfer``). An RP2040's
    errors: a NACK is EIO, a stuck bus ETIMEDOUT; a memory read writes the register
    without a STOP, then reads after a repeated START."""

    def __init__(self, xfer):
        self.xfer = xfer

    def _do(self, ops):
        reply = self.xfer(ops)
        if reply == "H":
            raise OSError(_ETIMEDOUT)
        if reply == "E":
            raise OSError(_EIO)  # the simulator's chip model failed
        res = reply.split(",")
        if "T" in res:
            raise OSError(_ETIMEDOUT)
        return res

    def _write(self, addr, data, stop):
        res = self._do("S,W%02x%s%s" % (addr << 1, hexlify(data).decode(), ",P" if stop else ""))
        if int(res[1]) < 1 + len(data):
            if not stop:
                self._do("P")  # the I2C block aborts with a STOP
            raise OSError(_EIO)

    def _read(self, addr, buf, stop):
        res = self._do("S,W%02x,R%d%s" % ((addr << 1) | 1, len(buf), ",P" if stop else ""))
        if res[1] != "1":
            raise OSError(_EIO)
        data = unhexlify(res[2])
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto(self, addr, buf, stop=True):
        self._write(addr, bytes(buf), stop)
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        self._read(addr, buf, stop)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self._write(addr, bytes((memaddr,)) + bytes(buf), True)

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        self._write(addr, bytes((memaddr,)), False)
        self._read(addr, buf, True)


def _afe_hal(board, i2c, unique_id, storage):
    """The board's own HAL for its monitor chip, with what only a simulated board
    adds: its id, its flash folder, and a reset that leaves the chip as it is (the
    chip is powered by the pack, not by the MCU: its FETs stay as they were until
    the firmware's next boot commands them)."""
    from .hal_bq76952 import Bq76952Hal

    class SimAfeHal(Bq76952Hal):  # (MicroPython: a method cannot close over the function)
        def __init__(self, board, i2c, uid, storage):
            self.uid = uid
            self.storage = storage
            self.held = 0  # the simulator's presence button (SimBoard.step's codes)
            Bq76952Hal.__init__(self, board, i2c)

        def presence(self):
            return self.held

        def unique_id(self):
            return self.uid

        def storage_dir(self):
            return self.storage

        def release(self):
            pass

        def outputs(self):
            return 0  # the chip drives the FETs and the balancing: the simulator reads it

    return SimAfeHal(board, i2c, unique_id, storage)


class SimBoard:
    """Firmware plus simulated HAL, stepped by the host simulator.

    Codes are packed little-endian u16: every cell, then the current channel,
    then every temperature channel.
    """

    def __init__(self, board_json, unique_id=b"\x5e\x11\x00\x00\x00\x00\x00\x01",
                 storage=None, i2c_xfer=None):
        self.board = json.loads(board_json)
        if "afe" in self.board:
            # The cells are measured by a monitor chip on the board's I2C bus (the
            # simulator's model of it); the chip drives the FETs.
            if i2c_xfer is None:
                raise ValueError("board %s has a monitor chip: it needs an I2C bus"
                                 % self.board["name"])
            self.afe_hal = _afe_hal(self.board, SimI2c(i2c_xfer), unique_id, storage)
            self.hal = self.afe_hal
            self.codes = None
        else:
            hal = SimHal(self.board["cells"], self.board["temp_sensors"], unique_id,
                         storage, "pack_adc" in self.board["frontend"])
            self.afe_hal = None
            self.hal = hal
            self.codes = hal.codes
        self.port = SimPort()
        self.resets = 0
        self.in_repl = False
        self.boot()

    def boot(self):
        """Start the firmware afresh, as after a power cycle or machine.reset()."""
        self.hal.release()  # a reset releases every output pin
        self.port.rx = bytearray()
        self.bms = Bms(self.board, self.hal, self.port)
        self.in_repl = False

    def step(self, dt_ms, codes, rx):
        """Run one control period; return (tx bytes, OUT_* flags with the
        balancing mask in bits 4 and up)."""
        afe = self.afe_hal
        if afe is not None:  # a board with a monitor chip has no codes (it measures): the button
            afe.held = codes[-1] if codes else 0
        elif self.codes is not None:
            self.codes[:] = codes
        if self.in_repl:  # the firmware has handed the port back: it is silent
            return b"", self.hal.outputs()
        if rx:
            self.port.rx.extend(rx)
        bms = self.bms
        bms.poll()
        while self.port.rx and not (bms.reset_requested or bms.repl_requested):
            bms.poll()  # a board polls every few ms: all of a period's bytes, here at once
        if not (bms.reset_requested or bms.repl_requested):
            bms.step(dt_ms)
            bms.persist()
            if bms.estimate_due():
                bms.estimate()
        tx = bytes(self.port.tx)
        self.port.tx = bytearray()
        if bms.reset_requested:
            self.resets += 1
            self.boot()
        elif bms.repl_requested:
            self.in_repl = True
        return tx, self.hal.outputs()

    def step_hex(self, dt_ms, codes_hex, rx_hex):
        """step() for the WebAssembly runner: hex in, "<tx hex> <OUT_* flags>" out."""
        tx, outputs = self.step(dt_ms, unhexlify(codes_hex), unhexlify(rx_hex))
        return "%s %d" % (hexlify(tx).decode(), outputs)
