"""A register-level model of the TI BQ76952 battery monitor (docs/bq76952.md, "The
simulated chip").

The chip sits on an :class:`~cellguard.sim.i2c.I2cBus` at 7-bit address 0x08 and behaves
as the silicon does on the wire, after TI's Technical Reference Manual (SLUUBY2), the
data sheet (SLUSE13) and the Software Development Guide (SLUAA11):

- the direct commands 0x00..0x7F, 16-bit values little-endian, auto-incrementing block
  reads (0x14..0x3B in one read);
- the subcommand engine: a subcommand id written to 0x3E/0x3F, 0xFF 0xFF read back there
  while the chip is busy (a busy time per subcommand on the chip's clock), the response
  in the transfer buffer 0x40..0x5F with its checksum at 0x60 and length at 0x61; writes
  (data memory, CB_ACTIVE_CELLS, FET_CONTROL) validated against checksum and length;
- data memory 0x9180.. with the TRM's defaults, written only in CONFIG_UPDATE mode (a
  write outside it is ignored, as on silicon; reads always work), applied on exit;
- optional CRC-8 framing (poly 0x07, init 0): the first data byte's CRC covers the address
  and register bytes, each later byte's CRC only that byte; a bad CRC is NACKed;
- measurements from the plant (SI units in, chip units out per DA Configuration), the
  shunt seen only as a voltage and turned into current through CC Gain;
- the chip's own protections on the simulated clock (alert → status after the delay →
  FETs off per the CHG/DSG FET Protections masks → recovery), with each trip recorded;
- FET_EN (autonomous) versus FET test mode, host FET blocking, balancing, the ALERT pin;
- fault injection: NACKs, a stuck busy subcommand, corrupted CRC bytes, power-on reset.

The chip's clock: ``time_ms`` from the bus at each transfer's START, :meth:`advance` from
the board at each plant tick, and the bus time of the bytes themselves (9 bit times per
byte at ``bus_hz``), so a driver that polls 0x3E sees the chip finish even when the
board's clock stands still during one control step. The clock never runs backwards.
"""

from __future__ import annotations

import functools
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .i2c import I2cDevice

ADDRESS = 0x08  # 7-bit I2C address (0x10 write / 0x11 read on the wire)
DEVICE_NUMBER = 0x7695
FW_VERSION = (0x7695, 0x0100, 0x0036)  # device number, firmware 1.00, build (big-endian)
HW_VERSION = 0x0002

# -- direct commands (TRM "Direct Commands")
CONTROL_STATUS = 0x00
SAFETY_ALERT_A, SAFETY_STATUS_A = 0x02, 0x03
SAFETY_ALERT_B, SAFETY_STATUS_B = 0x04, 0x05
SAFETY_ALERT_C, SAFETY_STATUS_C = 0x06, 0x07
BATTERY_STATUS = 0x12
CELL1_VOLTAGE = 0x14  # .. 0x32 (cell 16), mV
STACK_VOLTAGE, PACK_VOLTAGE, LD_VOLTAGE = 0x34, 0x36, 0x38  # userV
CC2_CURRENT = 0x3A  # userA
SUBCMD_LO, SUBCMD_HI = 0x3E, 0x3F
TRANSFER_BUFFER = 0x40  # .. 0x5F
CHECKSUM, LENGTH = 0x60, 0x61
ALARM_STATUS, ALARM_RAW_STATUS, ALARM_ENABLE = 0x62, 0x64, 0x66
INT_TEMPERATURE = 0x68  # 0.1 K
TS1_TEMPERATURE, TS2_TEMPERATURE, TS3_TEMPERATURE = 0x70, 0x72, 0x74  # 0.1 K
FET_STATUS = 0x7F

# -- subcommands (TRM "Subcommands")
SUB_DEVICE_NUMBER = 0x0001
SUB_FW_VERSION = 0x0002
SUB_HW_VERSION = 0x0003
SUB_RESET = 0x0012
SUB_PCHGTEST, SUB_CHGTEST, SUB_DSGTEST, SUB_PDSGTEST = 0x001E, 0x001F, 0x0020, 0x001C
SUB_FET_ENABLE = 0x0022
SUB_MANUFACTURING_STATUS = 0x0057
SUB_CB_ACTIVE_CELLS = 0x0083
SUB_SET_CFGUPDATE = 0x0090
SUB_EXIT_CFGUPDATE = 0x0092
SUB_DSG_PDSG_OFF = 0x0093
SUB_CHG_PCHG_OFF = 0x0094
SUB_ALL_FETS_OFF = 0x0095
SUB_ALL_FETS_ON = 0x0096
SUB_FET_CONTROL = 0x0097
SUB_SLEEP_ENABLE, SUB_SLEEP_DISABLE = 0x0099, 0x009A
SUB_SWAP_COMM_MODE = 0x29BC

# Safety Alert/Status A bits
SCD, OCD2, OCD1, OCC, COV, CUV = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04
# Safety Alert/Status B bits
OTF, OTINT, OTD, OTC, UTINT, UTD, UTC = 0x80, 0x40, 0x20, 0x10, 0x04, 0x02, 0x01
# Battery Status bits
BS_CFGUPDATE, BS_SLEEP_EN, BS_POR, BS_SS, BS_SLEEP = 0x0001, 0x0004, 0x0008, 0x0800, 0x8000
BS_SEC_FULLACCESS = 0x0100  # SEC[1:0] = 1
# Alarm (Raw) Status bits
AL_SSBC, AL_SSA, AL_PF, AL_MSK_SFALERT, AL_MSK_PFALERT = 0x8000, 0x4000, 0x2000, 0x1000, 0x0800
AL_INITSTART, AL_INITCOMP, AL_FULLSCAN, AL_XCHG, AL_XDSG = 0x0400, 0x0200, 0x0080, 0x0040, 0x0020
AL_CB, AL_ADSCAN = 0x0004, 0x0002
# FET Status bits (0x7F)
FS_CHG, FS_PCHG, FS_DSG, FS_PDSG, FS_ALRT = 0x01, 0x02, 0x04, 0x08, 0x40
# FET_CONTROL (0x0097) bits: a different order from FET Status
FC_DSG_OFF, FC_PDSG_OFF, FC_CHG_OFF, FC_PCHG_OFF = 0x01, 0x02, 0x04, 0x08
# Manufacturing Status bits
MS_PCHG_TEST, MS_CHG_TEST, MS_DSG_TEST, MS_FET_EN, MS_PDSG_TEST = 0x01, 0x02, 0x04, 0x10, 0x20
# Power Config bits
PC_SLEEP = 0x0080
# FET Options bits
FO_HOST_FET_EN, FO_FET_CTRL_EN, FO_FET_INIT_OFF = 0x04, 0x08, 0x20

# -- data memory (TRM "Data Memory" tables: Calibration, Settings, Protections)
DM_START, DM_END = 0x9180, 0x9400
CC_GAIN = 0x91A8  # Calibration:Current:CC Gain, F4
CAPACITY_GAIN = 0x91AC  # Calibration:Current:Capacity Gain, F4
POWER_CONFIG = 0x9234
REG12_CONFIG, REG0_CONFIG = 0x9236, 0x9237
COMM_TYPE = 0x9239
PROTECTION_CONFIG = 0x925F
ENABLED_PROT_A, ENABLED_PROT_B, ENABLED_PROT_C = 0x9261, 0x9262, 0x9263
CHG_FET_PROT_A, CHG_FET_PROT_B, CHG_FET_PROT_C = 0x9265, 0x9266, 0x9267
DSG_FET_PROT_A, DSG_FET_PROT_B, DSG_FET_PROT_C = 0x9269, 0x926A, 0x926B
DEFAULT_ALARM_MASK = 0x926D
SF_ALERT_MASK_A, SF_ALERT_MASK_B, SF_ALERT_MASK_C = 0x926F, 0x9270, 0x9271
CUV_THRESHOLD, CUV_DELAY, COV_THRESHOLD, COV_DELAY = 0x9275, 0x9276, 0x9278, 0x9279
CUV_RECOVERY_HYST, COV_RECOVERY_HYST = 0x927B, 0x927C
OCC_THRESHOLD, OCC_DELAY = 0x9280, 0x9281
OCD1_THRESHOLD, OCD1_DELAY, OCD2_THRESHOLD, OCD2_DELAY = 0x9282, 0x9283, 0x9284, 0x9285
SCD_THRESHOLD, SCD_DELAY = 0x9286, 0x9287
OCC_RECOVERY_THRESHOLD = 0x9288  # mA
OCD_RECOVERY_THRESHOLD = 0x928D  # mA
SCD_RECOVERY_TIME = 0x9294  # s
OTC_THRESHOLD, OTC_DELAY, OTC_RECOVERY = 0x929A, 0x929B, 0x929C
OTD_THRESHOLD, OTD_DELAY, OTD_RECOVERY = 0x929D, 0x929E, 0x929F
OTF_THRESHOLD, OTF_DELAY, OTF_RECOVERY = 0x92A0, 0x92A1, 0x92A2
OTINT_THRESHOLD, OTINT_DELAY, OTINT_RECOVERY = 0x92A3, 0x92A4, 0x92A5
UTC_THRESHOLD, UTC_DELAY, UTC_RECOVERY = 0x92A6, 0x92A7, 0x92A8
UTD_THRESHOLD, UTD_DELAY, UTD_RECOVERY = 0x92A9, 0x92AA, 0x92AB
UTINT_THRESHOLD, UTINT_DELAY, UTINT_RECOVERY = 0x92AC, 0x92AD, 0x92AE
PROTECTION_RECOVERY_TIME = 0x92AF  # s
OCC_PACK_TOS_DELTA = 0x92B0  # 10 mV
TS1_CONFIG, TS2_CONFIG, TS3_CONFIG = 0x92FD, 0x92FE, 0x92FF
DA_CONFIGURATION = 0x9303
VCELL_MODE = 0x9304
FET_OPTIONS = 0x9308
CHG_PUMP_CONTROL = 0x9309
BALANCING_CONFIGURATION = 0x9335
MFG_STATUS_INIT = 0x9343

# (address, struct format, default): the defaults as SLUUBY2's data memory tables give them
DATA_MEMORY_DEFAULTS: tuple[tuple[int, str, float], ...] = (
    (CC_GAIN, "<f", 7.4768),
    (CAPACITY_GAIN, "<f", 2230042.463),
    (POWER_CONFIG, "<H", 0x2982),
    (REG12_CONFIG, "<B", 0x00),
    (REG0_CONFIG, "<B", 0x00),
    (COMM_TYPE, "<B", 0x00),
    (PROTECTION_CONFIG, "<H", 0x0002),
    (ENABLED_PROT_A, "<B", 0x88),
    (ENABLED_PROT_B, "<B", 0x00),
    (ENABLED_PROT_C, "<B", 0x00),
    (CHG_FET_PROT_A, "<B", 0x98),
    (CHG_FET_PROT_B, "<B", 0xD5),
    (CHG_FET_PROT_C, "<B", 0x56),
    (DSG_FET_PROT_A, "<B", 0xE4),
    (DSG_FET_PROT_B, "<B", 0xE6),
    (DSG_FET_PROT_C, "<B", 0xE2),
    (DEFAULT_ALARM_MASK, "<H", 0xF800),
    (SF_ALERT_MASK_A, "<B", 0xFC),
    (SF_ALERT_MASK_B, "<B", 0xF7),
    (SF_ALERT_MASK_C, "<B", 0xF4),
    (CUV_THRESHOLD, "<B", 50),  # × 50.6 mV
    (CUV_DELAY, "<H", 74),  # (n + 2) × 3.3 ms
    (COV_THRESHOLD, "<B", 86),
    (COV_DELAY, "<H", 74),
    (CUV_RECOVERY_HYST, "<B", 2),
    (COV_RECOVERY_HYST, "<B", 2),
    (OCC_THRESHOLD, "<B", 2),  # × 2 mV across the shunt
    (OCC_DELAY, "<B", 4),
    (OCD1_THRESHOLD, "<B", 4),
    (OCD1_DELAY, "<B", 1),
    (OCD2_THRESHOLD, "<B", 3),
    (OCD2_DELAY, "<B", 7),
    (SCD_THRESHOLD, "<B", 0),  # an index into SCD_THRESHOLDS_MV
    (SCD_DELAY, "<B", 2),  # 1: no delay, n: (n - 1) × 15 µs
    (OCC_RECOVERY_THRESHOLD, "<h", -200),
    (OCD_RECOVERY_THRESHOLD, "<h", 200),
    (SCD_RECOVERY_TIME, "<B", 5),
    (OTC_THRESHOLD, "<b", 55), (OTC_DELAY, "<B", 2), (OTC_RECOVERY, "<b", 50),
    (OTD_THRESHOLD, "<b", 60), (OTD_DELAY, "<B", 2), (OTD_RECOVERY, "<b", 55),
    (OTF_THRESHOLD, "<b", 80), (OTF_DELAY, "<B", 2), (OTF_RECOVERY, "<b", 65),
    (OTINT_THRESHOLD, "<b", 85), (OTINT_DELAY, "<B", 2), (OTINT_RECOVERY, "<b", 80),
    (UTC_THRESHOLD, "<b", 0), (UTC_DELAY, "<B", 2), (UTC_RECOVERY, "<b", 5),
    (UTD_THRESHOLD, "<b", 0), (UTD_DELAY, "<B", 2), (UTD_RECOVERY, "<b", 5),
    (UTINT_THRESHOLD, "<b", -20), (UTINT_DELAY, "<B", 2), (UTINT_RECOVERY, "<b", -15),
    (PROTECTION_RECOVERY_TIME, "<B", 3),
    (OCC_PACK_TOS_DELTA, "<h", 200),
    (TS1_CONFIG, "<B", 0x07),
    (TS2_CONFIG, "<B", 0x00),
    (TS3_CONFIG, "<B", 0x00),
    (DA_CONFIGURATION, "<B", 0x05),
    (VCELL_MODE, "<H", 0x0000),
    (FET_OPTIONS, "<B", 0x0D),
    (CHG_PUMP_CONTROL, "<B", 0x01),
    (BALANCING_CONFIGURATION, "<B", 0x00),
    (0x9336, "<b", -20),  # Cell Balancing Config: Min Cell Temp, °C
    (0x9337, "<b", 60),  # Max Cell Temp
    (0x9338, "<b", 70),  # Max Internal Temp
    (0x9339, "<B", 20),  # Cell Balance Interval, s
    (0x933A, "<B", 1),  # Cell Balance Max Cells
    (0x933B, "<h", 3900),  # Cell Balance Min Cell V (Charge), mV
    (0x933D, "<B", 40),  # Cell Balance Min Delta (Charge), mV
    (0x933E, "<B", 20),  # Cell Balance Stop Delta (Charge), mV
    (0x933F, "<h", 3900),  # Cell Balance Min Cell V (Relax), mV
    (0x9341, "<B", 40),  # Cell Balance Min Delta (Relax), mV
    (0x9342, "<B", 20),  # Cell Balance Stop Delta (Relax), mV
    (MFG_STATUS_INIT, "<H", 0x0040),
)

COV_CUV_STEP_MV = 50.6  # COV/CUV threshold and hysteresis step
OC_STEP_MV = 2.0  # OCC/OCD1/OCD2 threshold step, across the shunt
OC_DELAY_STEP_MS, OC_DELAY_OFFSET_MS = 3.3, 6.6  # delay = n × 3.3 ms + 6.6 ms
SCD_DELAY_STEP_US = 15.0
SCD_THRESHOLDS_MV = (10, 20, 40, 60, 80, 100, 125, 150, 175, 200, 250, 300, 350, 400, 450, 500)
CC_GAIN_1MOHM = 7.4768  # the CC Gain that reads a 1 mΩ shunt right (TRM: 7.4768 / R in mΩ)
USER_AMPS_MA = (0.1, 1.0, 10.0, 100.0)  # DA Configuration USER_AMPS[1:0]
OPEN_THERMISTOR_C = -40.0  # an open thermistor pulls TS to REG18: the 18K model's cold end
UNUSED_PIN_DECIK = 0  # a pin not configured as a thermistor reports 0 (0.1 K)
ZERO_C_IN_K = 273.15

# busy time of a subcommand before its response is ready (ms), the model's own figures
BUSY_MS_DEFAULT = 0.6
BUSY_MS = {SUB_SET_CFGUPDATE: 2.0, SUB_EXIT_CFGUPDATE: 1.0, SUB_RESET: 1.0}
BUSY_MS_DATA_MEMORY = 0.66
RESET_BOOT_MS = 5.0  # after RESET or a POR the chip answers nothing (NACK) this long
SCAN_MS = 3.0  # one ADC scan (ADSCAN); FULLSCAN after a pass of all channels


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    """One thread at a time in the chip: the board's plant thread calls advance() while
    its bus thread runs transfers."""

    @functools.wraps(method)
    def wrapper(self: Bq76952, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _crc8_bitwise(data: bytes | Sequence[int], crc: int = 0) -> int:
    """CRC-8, polynomial x^8 + x^2 + x + 1 (0x07), a bit at a time: the definition."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


_CRC8_TABLE = bytes(_crc8_bitwise((b,)) for b in range(256))


def crc8(data: bytes | Sequence[int], crc: int = 0) -> int:
    """CRC-8, polynomial x^8 + x^2 + x + 1 (0x07), initial value 0, as the chip uses
    (a byte at a time, from the table of :func:`_crc8_bitwise`)."""
    table = _CRC8_TABLE
    for byte in data:
        crc = table[crc ^ byte]
    return crc


def checksum(data: bytes | Sequence[int]) -> int:
    """The transfer buffer's checksum: the complement of the byte sum (subcommand or
    data-memory address bytes, then the data)."""
    return ~sum(data) & 0xFF


@dataclass
class Trip:
    """One trip of a chip protection: when its condition began, when the status bit set
    (and the FETs opened per the masks), when it recovered (None: not yet)."""

    name: str
    onset_ms: float
    trip_ms: float
    recovered_ms: float | None = None


@dataclass
class _Protection:
    name: str
    register: str  # "A" or "B": Safety Alert/Status A or B
    bit: int
    state: str = "ok"  # ok → alert → tripped → ok
    onset_ms: float = 0.0
    recovery_since: float | None = None
    trip: Trip | None = None


class Bq76952(I2cDevice):
    """The simulated BQ76952 (see the module docstring).

    ``cells``: how many cells the board has; ``cell_inputs``: the VC inputs (1..16) they
    are wired to, lowest cell first (default 1..cells; the other inputs are shorted and
    read 0 mV). ``address``: its 7-bit I2C address (for the CRC). ``shunt_ohm``: the
    board's sense resistor (the chip sees only its voltage). ``crc``: the CRC mode the
    chip starts in (its OTP setting). ``bus_hz``: the I2C clock, for the bus time of a
    byte on the chip's clock.
    """

    def __init__(self, *, cells: int = 16, cell_inputs: Sequence[int] | None = None,
                 shunt_ohm: float = 0.001, crc: bool = False, address: int = ADDRESS,
                 bus_hz: float = 400_000.0) -> None:
        if not 1 <= cells <= 16:
            raise ValueError(f"a BQ76952 measures 1 to 16 cells, not {cells}")
        inputs = list(cell_inputs) if cell_inputs is not None else list(range(1, cells + 1))
        if len(inputs) != cells or len(set(inputs)) != cells or not all(
                1 <= i <= 16 for i in inputs):
            raise ValueError(f"cell_inputs must name {cells} distinct VC inputs 1..16")
        if not shunt_ohm > 0:
            raise ValueError(f"the shunt resistance must be positive, not {shunt_ohm!r} Ω")
        if not bus_hz > 0:
            raise ValueError(f"the bus clock must be positive, not {bus_hz!r} Hz")
        self._lock = threading.RLock()
        self.cells = cells
        self.cell_inputs = inputs
        self.shunt_ohm = float(shunt_ohm)
        self.otp_crc = bool(crc)
        self.i2c_address = address
        self.byte_ms = 9 * 1000.0 / bus_hz
        # plant inputs (SI)
        self._cells_v = [3.3] * cells
        self._current_a = 0.0
        self._ts_c: list[float | None] = [25.0, 25.0, 25.0]
        self._die_c = 25.0
        self._pack_v: float | None = None
        self._ld_v: float | None = None
        # injection
        self.injected = {"nack_address": 0, "nack_data": 0, "stuck_busy": 0,
                         "crc_corrupt": 0, "por": 0}
        self._nack_address = 0
        self._nack_data = 0
        self._stuck_busy = 0
        self._crc_corrupt = 0
        # records
        self.trips: list[Trip] = []
        # The top-of-stack measurement's own error (its divider, its ADC), V: what a
        # fault injection sets; the cells' readings do not share it.
        self.stack_offset_v = 0.0
        self.rejected_writes = 0  # checksum/length or CRC failures, ignored writes
        self.ignored_dm_writes = 0  # data-memory writes outside CONFIG_UPDATE
        self._now = 0.0
        self._prot_ms = 0.0
        self._power_on(0.0, boot=False)

    # ================================================================ host side
    @_locked
    def set_inputs(self, *, cells_v: Sequence[float] | None = None,
                   current_a: float | None = None,
                   ts_c: Sequence[float | None] | None = None,
                   die_c: float | None = None, pack_v: float | None = None,
                   ld_v: float | None = None, at_ms: float | None = None) -> None:
        """The analog inputs from the plant, held from the chip's present time (or
        ``at_ms``, the chip first runs to it) until the next call: cell voltages (V, one
        per cell), the pack current (A, positive charging; the chip sees it as the shunt
        voltage), TS1..TS3 thermistor temperatures (°C, None: open), the die temperature
        (°C), the PACK and LD pin voltages (V; None: the stack voltage)."""
        if at_ms is not None:
            self.advance(at_ms)
        if cells_v is not None:
            values = [float(v) for v in cells_v]
            if len(values) != self.cells:
                raise ValueError(f"{len(values)} cell voltages for a {self.cells}-cell chip")
            self._cells_v = values
        if current_a is not None:
            self._current_a = float(current_a)
        if ts_c is not None:
            temps = list(ts_c)
            if len(temps) != 3:
                raise ValueError(f"TS1..TS3 are 3 temperatures, not {len(temps)}")
            self._ts_c = [None if t is None else float(t) for t in temps]
        if die_c is not None:
            self._die_c = float(die_c)
        if pack_v is not None:
            self._pack_v = float(pack_v)
        if ld_v is not None:
            self._ld_v = float(ld_v)

    @_locked
    def advance(self, to_ms: float) -> None:
        """Run the chip (scans, protections, recovery) up to ``to_ms`` on its clock."""
        self._run_to(to_ms)

    @property
    def chg_on(self) -> bool:
        with self._lock:
            return bool(self._fet_bits() & FS_CHG)

    @property
    def dsg_on(self) -> bool:
        with self._lock:
            return bool(self._fet_bits() & FS_DSG)

    @property
    def pchg_on(self) -> bool:
        return False  # precharge is not modelled

    @property
    def pdsg_on(self) -> bool:
        return False  # predischarge is not modelled

    @property
    def balancing_mask(self) -> int:
        """Cells being balanced, bit 0 = cell 1 (CB_ACTIVE_CELLS)."""
        return 0 if self._cfgupdate else self._cb_mask

    @property
    def alert(self) -> bool:
        """The ALERT pin asserted (active low on the board): Alarm Status nonzero."""
        return self._alarm_status != 0

    @property
    def crc_mode(self) -> bool:
        return self._crc

    @property
    def config_update(self) -> bool:
        return self._cfgupdate

    @property
    def fet_enabled(self) -> bool:
        """FET_EN: the chip controls the FETs itself (False: FET test mode)."""
        return bool(self._mfg_status & MS_FET_EN)

    @property
    def safety_status(self) -> tuple[int, int, int]:
        return self._status_a, self._status_b, 0

    @property
    def safety_alert(self) -> tuple[int, int, int]:
        return self._alert_a, self._alert_b, 0

    @_locked
    def dm_read(self, address: int, fmt: str) -> float:
        """A data-memory value as the chip holds it now (for tests and benches)."""
        return struct.unpack_from(fmt, self._dm, address - DM_START)[0]

    # -- fault injection
    @_locked
    def inject_nack(self, times: int = 1, *, phase: str = "address") -> None:
        """NACK the next ``times`` address phases (``"address"``) or the first data byte
        of the next ``times`` writes (``"data"``)."""
        if times < 1:
            raise ValueError(f"times must be 1 or more, not {times}")
        if phase == "address":
            self._nack_address += times
        elif phase == "data":
            self._nack_data += times
        else:
            raise ValueError(f"phase is 'address' or 'data', not {phase!r}")

    @_locked
    def inject_stuck_busy(self, times: int = 1) -> None:
        """The next ``times`` subcommands never finish: 0x3E/0x3F read 0xFF 0xFF until
        another subcommand is written (or the chip resets)."""
        if times < 1:
            raise ValueError(f"times must be 1 or more, not {times}")
        self._stuck_busy += times

    @_locked
    def inject_crc_error(self, times: int = 1) -> None:
        """Corrupt the CRC byte(s) of the next ``times`` reads (in CRC mode)."""
        if times < 1:
            raise ValueError(f"times must be 1 or more, not {times}")
        self._crc_corrupt += times

    @_locked
    def power_on_reset(self) -> None:
        """A POR: RAM data memory back to its defaults, FETs off, protections cleared."""
        self.injected["por"] += 1
        self._power_on(self._now)

    # ================================================================ the wire
    @_locked
    def address(self, read: bool) -> bool:
        self._finish_write()
        self._sync(self.time_ms)
        if self._now < self._offline_until:
            return False  # booting after a reset
        if self._nack_address:
            self._nack_address -= 1
            self.injected["nack_address"] += 1
            return False
        self._now += self.byte_ms
        self._rd_index = 0
        if read:
            ar = (self.i2c_address << 1) | 1
            reg = self._chain_reg
            self._crc_prefix = [ar] if reg is None else [self.i2c_address << 1, reg, ar]
            self._snapshot = self._direct_map()
            self._corrupt_this_read = False
            if self._crc and self._crc_corrupt:
                self._crc_corrupt -= 1
                self.injected["crc_corrupt"] += 1
                self._corrupt_this_read = True
        else:
            self._wr_bytes = []
        return True

    @_locked
    def write(self, data: bytes) -> int:
        self._now += self.byte_ms * len(data)
        taken = 0
        for byte in data:
            if self._wr_bad:
                return taken
            if self._nack_data and not self._wr_bytes:
                self._nack_data -= 1
                self.injected["nack_data"] += 1
                self._wr_bad = True
                return taken
            if self._crc and len(self._wr_bytes) >= 2 and len(self._wr_bytes) % 2 == 0:
                # this byte is the CRC of the data byte before it: the first covers the
                # address and register bytes too, each later one only its data byte
                data_byte = self._wr_bytes[-1]
                cover = ([self.i2c_address << 1, self._wr_bytes[0], data_byte]
                         if len(self._wr_bytes) == 2 else [data_byte])
                if crc8(cover) != byte:
                    self._wr_bad = True
                    self.rejected_writes += 1
                    return taken  # NACK the CRC byte: the transaction is dropped
            self._wr_bytes.append(byte)
            taken += 1
        return taken

    @_locked
    def read(self, n: int) -> bytes:
        self._now += self.byte_ms * n
        out = bytearray()
        for _ in range(n):
            if self._crc and self._rd_index % 2 == 1:
                value = self._rd_last
                cover = [*self._crc_prefix, value] if self._rd_index == 1 else [value]
                crc = crc8(cover)
                if self._corrupt_this_read:
                    crc ^= 0xFF
                out.append(crc)
            else:
                self._rd_last = self._snapshot[self.pointer & 0x7F]
                out.append(self._rd_last)
                self.pointer = (self.pointer + 1) & 0x7F
            self._rd_index += 1
        return bytes(out)

    @_locked
    def stop(self) -> None:
        self._finish_write()
        self._chain_reg = None

    # ================================================================ internals
    def _power_on(self, now: float, *, boot: bool = True) -> None:
        self._dm = bytearray(DM_END - DM_START)
        for address, fmt, value in DATA_MEMORY_DEFAULTS:
            struct.pack_into(fmt, self._dm, address - DM_START,
                             value if fmt == "<f" else int(value))
        self._applied = bytes(self._dm)
        self._crc = self.otp_crc
        self._cfgupdate = False
        self._por_flag = True
        self._sleep_en = bool(self._applied_u("<H", POWER_CONFIG) & PC_SLEEP)
        self._mfg_status = self._applied_u("<H", MFG_STATUS_INIT) & 0x00F0
        fet_options = self._applied_u("<B", FET_OPTIONS)
        self._host_chg_off = self._host_dsg_off = bool(fet_options & FO_FET_INIT_OFF)
        self._cb_mask = 0
        self._alarm_enable = self._applied_u("<H", DEFAULT_ALARM_MASK)
        self._alarm_status = 0
        self._raw_prev = 0
        self._alert_a = self._status_a = self._alert_b = self._status_b = 0
        self._prots = [
            _Protection("COV", "A", COV), _Protection("CUV", "A", CUV),
            _Protection("OCC", "A", OCC), _Protection("OCD1", "A", OCD1),
            _Protection("OCD2", "A", OCD2), _Protection("SCD", "A", SCD),
            _Protection("OTC", "B", OTC), _Protection("OTD", "B", OTD),
            _Protection("UTC", "B", UTC), _Protection("UTD", "B", UTD),
            _Protection("OTINT", "B", OTINT), _Protection("UTINT", "B", UTINT),
        ]
        # subcommand engine
        self._sub_lo = self._sub_hi = 0
        self._sub_id = 0
        self._sub_ready_ms = now
        self._sub_stuck = False
        self._buffer = bytearray(32)
        self._buf_checksum = 0
        self._buf_length = 0
        self._pending_fill: bytes | None = None
        # wire state
        self.pointer = 0
        self._wr_bytes: list[int] = []
        self._wr_bad = False
        self._rd_index = 0
        self._rd_last = 0
        self._chain_reg: int | None = None  # the register written since the last STOP
        self._crc_prefix: list[int] = []
        self._snapshot = bytes(128)
        self._corrupt_this_read = False
        self._offline_until = now + RESET_BOOT_MS if boot else now
        self._last_scan_ms = now
        self._now = max(self._now, now)
        self._prot_ms = max(self._prot_ms, now)

    @property
    def _applied(self) -> bytes:
        """The data memory the chip acts on (immutable: replaced whole when it changes)."""
        return self._applied_dm

    @_applied.setter
    def _applied(self, data: bytes) -> None:
        self._applied_dm = data
        self._applied_values: dict[tuple[str, int], int] = {}  # _applied_u's, of this data

    def _applied_u(self, fmt: str, address: int) -> int:
        # read ~200 times a control period (protections, FETs, alarms): each value is
        # decoded once per version of the applied data memory
        values = self._applied_values
        key = (fmt, address)
        value = values.get(key)
        if value is None:
            value = values[key] = struct.unpack_from(fmt, self._applied_dm,
                                                     address - DM_START)[0]
        return value

    def _applied_f(self, address: int) -> float:
        return struct.unpack_from("<f", self._applied_dm, address - DM_START)[0]

    def _sync(self, t: float) -> None:
        self._run_to(t)
        self._now = max(self._now, t)

    # -- writes: collected per transaction, applied at its end (STOP or repeated START)
    def _finish_write(self) -> None:
        data, bad = self._wr_bytes, self._wr_bad
        self._wr_bytes, self._wr_bad = [], False
        if not data or bad:
            return
        reg = data[0] & 0x7F
        if self._crc:  # [reg, d0, crc0, d1, crc1, ...]: the complete pairs only
            pairs = data[1:]
            payload = [pairs[i] for i in range(0, len(pairs) - 1, 2)]
        else:
            payload = data[1:]
        self.pointer = reg
        self._chain_reg = reg
        if not payload:
            return  # a pointer write, before a read
        touched = set()
        for offset, value in enumerate(payload):
            r = (reg + offset) & 0x7F
            touched.add(r)
            self._write_register(r, value)
        self.pointer = (reg + len(payload)) & 0x7F
        if SUBCMD_HI in touched:  # the subcommand (or data-memory address) is complete
            wrote_data = any(TRANSFER_BUFFER <= r <= LENGTH for r in touched)
            self._start_subcommand(prepare_write=wrote_data)
        elif any(TRANSFER_BUFFER <= r < CHECKSUM for r in touched):
            self._pending_fill = None  # the host is preparing a write: no response fill
        if LENGTH in touched:
            self._commit_buffer_write()

    def _write_register(self, reg: int, value: int) -> None:
        if reg == SUBCMD_LO:
            self._sub_lo = value
        elif reg == SUBCMD_HI:
            self._sub_hi = value
        elif TRANSFER_BUFFER <= reg < CHECKSUM:
            self._buffer[reg - TRANSFER_BUFFER] = value
        elif reg == CHECKSUM:
            self._buf_checksum = value
        elif reg == LENGTH:
            self._buf_length = value
        elif reg == ALARM_STATUS:
            self._alarm_status &= ~value & 0xFF | 0xFF00
        elif reg == ALARM_STATUS + 1:
            self._alarm_status &= ~(value << 8) & 0xFF00 | 0x00FF
        elif reg == ALARM_ENABLE:
            self._alarm_enable = (self._alarm_enable & 0xFF00) | value
        elif reg == ALARM_ENABLE + 1:
            self._alarm_enable = (self._alarm_enable & 0x00FF) | (value << 8)
        # every other direct command is read-only: the byte is ACKed and ignored

    # -- subcommands
    def _start_subcommand(self, *, prepare_write: bool) -> None:
        sub = self._sub_lo | (self._sub_hi << 8)
        self._sub_id = sub
        self._sub_stuck = False
        if self._stuck_busy:
            self._stuck_busy -= 1
            self.injected["stuck_busy"] += 1
            self._sub_stuck = True
        busy = BUSY_MS_DATA_MEMORY if DM_START <= sub < DM_END else BUSY_MS.get(
            sub, BUSY_MS_DEFAULT)
        self._sub_ready_ms = self._now + busy
        self._pending_fill = None
        # command-only subcommands take effect on the write
        if sub == SUB_RESET:
            self._power_on(self._now)
            self._sub_id = sub
            return
        if sub == SUB_FET_ENABLE:
            self._mfg_status ^= MS_FET_EN
            if not self._mfg_status & MS_FET_EN:
                self._mfg_status &= ~(MS_CHG_TEST | MS_DSG_TEST | MS_PCHG_TEST | MS_PDSG_TEST)
        elif sub == SUB_SET_CFGUPDATE:
            self._cfgupdate = True
            self._cb_mask = 0
        elif sub == SUB_EXIT_CFGUPDATE:
            if self._cfgupdate:
                self._cfgupdate = False
                self._applied = bytes(self._dm)
                self._alarm_enable = self._applied_u("<H", DEFAULT_ALARM_MASK)
                self._sleep_en = bool(self._applied_u("<H", POWER_CONFIG) & PC_SLEEP)
                self._por_flag = False
        elif sub in (SUB_DSG_PDSG_OFF, SUB_CHG_PCHG_OFF, SUB_ALL_FETS_OFF, SUB_ALL_FETS_ON):
            if self._applied_u("<B", FET_OPTIONS) & FO_HOST_FET_EN:
                if sub in (SUB_DSG_PDSG_OFF, SUB_ALL_FETS_OFF):
                    self._host_dsg_off = True
                if sub in (SUB_CHG_PCHG_OFF, SUB_ALL_FETS_OFF):
                    self._host_chg_off = True
                if sub == SUB_ALL_FETS_ON:
                    self._host_chg_off = self._host_dsg_off = False
        elif sub in (SUB_CHGTEST, SUB_DSGTEST, SUB_PCHGTEST, SUB_PDSGTEST):
            if not self._mfg_status & MS_FET_EN:
                self._mfg_status ^= {SUB_CHGTEST: MS_CHG_TEST, SUB_DSGTEST: MS_DSG_TEST,
                                     SUB_PCHGTEST: MS_PCHG_TEST,
                                     SUB_PDSGTEST: MS_PDSG_TEST}[sub]
        elif sub in (SUB_SLEEP_ENABLE, SUB_SLEEP_DISABLE):
            self._sleep_en = sub == SUB_SLEEP_ENABLE  # the flag only: SLEEP is not modelled
        elif sub == SUB_SWAP_COMM_MODE:
            comm = self._dm[COMM_TYPE - DM_START]
            if comm in (0x11, 0x12):
                self._crc = True
            elif comm in (0x07, 0x08, 0x09, 0x1E):
                self._crc = False
            elif comm in (0x00, 0xFF):
                self._crc = self.otp_crc
        if not prepare_write:
            response = self._response(sub)
            if response is not None:
                self._pending_fill = response

    def _response(self, sub: int) -> bytes | None:
        if DM_START <= sub < DM_END:
            start = sub - DM_START
            block = bytes(self._dm[start:start + 32])
            return block + bytes(32 - len(block))
        if sub == SUB_DEVICE_NUMBER:
            return struct.pack("<H", DEVICE_NUMBER)
        if sub == SUB_FW_VERSION:
            return struct.pack(">HHH", *FW_VERSION)
        if sub == SUB_HW_VERSION:
            return struct.pack("<H", HW_VERSION)
        if sub == SUB_MANUFACTURING_STATUS:
            return struct.pack("<H", self._mfg_status)
        if sub == SUB_CB_ACTIVE_CELLS:
            return struct.pack("<H", self._cb_mask)
        if sub == SUB_FET_CONTROL:
            return bytes([self._fet_control_bits()])
        return None

    def _fill_if_ready(self) -> None:
        if self._pending_fill is not None and self._sub_ready():
            data = self._pending_fill
            self._pending_fill = None
            self._buffer[:len(data)] = data
            sub = self._sub_id
            self._buf_checksum = checksum(bytes([sub & 0xFF, sub >> 8]) + data)
            self._buf_length = len(data) + 4

    def _sub_ready(self) -> bool:
        return not self._sub_stuck and self._now >= self._sub_ready_ms

    def _commit_buffer_write(self) -> None:
        """0x61 written: a data-memory or subcommand write of the buffer, if its checksum
        and length hold."""
        sub = self._sub_id
        n = self._buf_length - 4
        if not 1 <= n <= 32:
            self.rejected_writes += 1
            return
        data = bytes(self._buffer[:n])
        if checksum(bytes([sub & 0xFF, sub >> 8]) + data) != self._buf_checksum:
            self.rejected_writes += 1
            return
        if DM_START <= sub < DM_END:
            if not self._cfgupdate:
                self.ignored_dm_writes += 1
                return
            end = min(sub + n, DM_END)
            self._dm[sub - DM_START:end - DM_START] = data[:end - sub]
        elif sub == SUB_CB_ACTIVE_CELLS and n >= 2:
            if not self._cfgupdate:
                self._cb_mask = struct.unpack("<H", data[:2])[0]
        elif sub == SUB_FET_CONTROL:
            if not self._mfg_status & MS_FET_EN:  # FET test mode only
                bits = data[0]
                ms = self._mfg_status & ~(MS_CHG_TEST | MS_DSG_TEST | MS_PCHG_TEST
                                          | MS_PDSG_TEST)
                if not bits & FC_DSG_OFF:
                    ms |= MS_DSG_TEST
                if not bits & FC_CHG_OFF:
                    ms |= MS_CHG_TEST
                self._mfg_status = ms  # precharge/predischarge: not modelled
        else:
            self.rejected_writes += 1

    def _fet_control_bits(self) -> int:
        bits = FC_PCHG_OFF | FC_PDSG_OFF
        if not self._mfg_status & MS_DSG_TEST:
            bits |= FC_DSG_OFF
        if not self._mfg_status & MS_CHG_TEST:
            bits |= FC_CHG_OFF
        return bits

    # -- FETs
    def _fet_bits(self) -> int:
        if self._cfgupdate:
            return 0
        if not self._mfg_status & MS_FET_EN:  # FET test mode: the host's test bits
            bits = 0
            if self._mfg_status & MS_CHG_TEST:
                bits |= FS_CHG
            if self._mfg_status & MS_DSG_TEST:
                bits |= FS_DSG
            return bits
        options = self._applied_u("<B", FET_OPTIONS)
        if not options & FO_FET_CTRL_EN:
            return 0
        chg_block = (self._status_a & self._applied_u("<B", CHG_FET_PROT_A)) or (
            self._status_b & self._applied_u("<B", CHG_FET_PROT_B))
        dsg_block = (self._status_a & self._applied_u("<B", DSG_FET_PROT_A)) or (
            self._status_b & self._applied_u("<B", DSG_FET_PROT_B))
        bits = 0
        if not chg_block and not self._host_chg_off:
            bits |= FS_CHG
        if not dsg_block and not self._host_dsg_off:
            bits |= FS_DSG
        return bits

    # -- measurements in chip units
    def _cell_mv(self) -> list[int]:
        mv = [0] * 16
        for volts, vc in zip(self._cells_v, self.cell_inputs, strict=True):
            mv[vc - 1] = _i16(volts * 1000.0)
        return mv

    def _measured_cells(self) -> list[int]:
        """The cells the chip measures and protects (Vcell Mode; 0: all 16)."""
        mode = self._applied_u("<H", VCELL_MODE)
        mv = self._cell_mv()
        return [mv[i] for i in range(16) if mode == 0 or mode & (1 << i)]

    def _stack_v(self) -> float:
        return sum(self._cells_v) + self.stack_offset_v

    def _user_v(self, volts: float) -> int:
        cv = self._applied_u("<B", DA_CONFIGURATION) & 0x04
        return _i16(volts * (100.0 if cv else 1000.0))

    def _current_ma(self) -> float:
        """The current as the chip computes it: shunt voltage through CC Gain."""
        shunt_uv = self._current_a * self.shunt_ohm * 1e6
        return shunt_uv * self._applied_f(CC_GAIN) / CC_GAIN_1MOHM

    def _user_a(self) -> int:
        lsb = USER_AMPS_MA[self._applied_u("<B", DA_CONFIGURATION) & 0x03]
        return _i16(self._current_ma() / lsb)

    def _ts_deci_k(self, index: int) -> int:
        config = self._applied_u("<B", TS1_CONFIG + index)
        if config & 0x03 != 0x03 or (config >> 2) & 0x03 == 0:
            return UNUSED_PIN_DECIK  # not a thermistor pin (unused or ADCIN)
        temp = self._ts_c[index]
        return _deci_k(OPEN_THERMISTOR_C if temp is None else temp)

    def _cell_temps_c(self) -> list[float]:
        """Thermistors configured for cell temperature protection (OPT[1:0] = 01)."""
        temps: list[float] = []
        for i in range(3):
            config = self._applied_u("<B", TS1_CONFIG + i)
            if config & 0x03 == 0x03 and (config >> 2) & 0x03 == 0x01:
                t = self._ts_c[i]
                temps.append(OPEN_THERMISTOR_C if t is None else t)
        if self._applied_u("<B", DA_CONFIGURATION) & 0x08:  # TINT_EN
            temps.append(self._die_c)
        return temps

    # -- the direct-command map, as read
    def _direct_map(self) -> bytes:
        self._fill_if_ready()
        m = bytearray(128)
        m[SAFETY_ALERT_A] = self._alert_a
        m[SAFETY_STATUS_A] = self._status_a
        m[SAFETY_ALERT_B] = self._alert_b
        m[SAFETY_STATUS_B] = self._status_b
        struct.pack_into("<H", m, BATTERY_STATUS, self._battery_status())
        for i, mv in enumerate(self._cell_mv()):
            struct.pack_into("<h", m, CELL1_VOLTAGE + 2 * i, mv)
        stack = self._stack_v()
        struct.pack_into("<h", m, STACK_VOLTAGE, self._user_v(stack))
        struct.pack_into("<h", m, PACK_VOLTAGE, self._user_v(
            stack if self._pack_v is None else self._pack_v))
        struct.pack_into("<h", m, LD_VOLTAGE, self._user_v(
            stack if self._ld_v is None else self._ld_v))
        struct.pack_into("<h", m, CC2_CURRENT, self._user_a())
        if self._sub_ready():
            struct.pack_into("<H", m, SUBCMD_LO, self._sub_id)
        else:
            m[SUBCMD_LO] = m[SUBCMD_HI] = 0xFF
        m[TRANSFER_BUFFER:CHECKSUM] = self._buffer
        m[CHECKSUM] = self._buf_checksum
        m[LENGTH] = self._buf_length
        struct.pack_into("<H", m, ALARM_STATUS, self._alarm_status)
        struct.pack_into("<H", m, ALARM_RAW_STATUS, self._raw_status())
        struct.pack_into("<H", m, ALARM_ENABLE, self._alarm_enable)
        struct.pack_into("<h", m, INT_TEMPERATURE, _deci_k(self._die_c))
        for i in range(3):
            struct.pack_into("<h", m, TS1_TEMPERATURE + 2 * i, self._ts_deci_k(i))
        m[FET_STATUS] = self._fet_bits() | (FS_ALRT if self.alert else 0)
        return bytes(m)

    def _battery_status(self) -> int:
        bits = BS_SEC_FULLACCESS
        if self._cfgupdate:
            bits |= BS_CFGUPDATE
        if self._por_flag:
            bits |= BS_POR
        if self._sleep_en:
            bits |= BS_SLEEP_EN
        if self._status_a or self._status_b:
            bits |= BS_SS
        return bits

    def _raw_status(self) -> int:
        raw = 0
        if self._status_a:
            raw |= AL_SSA
        if self._status_b:
            raw |= AL_SSBC
        if (self._alert_a & self._applied_u("<B", SF_ALERT_MASK_A)) or (
                self._alert_b & self._applied_u("<B", SF_ALERT_MASK_B)):
            raw |= AL_MSK_SFALERT
        fets = self._fet_bits()
        if not fets & FS_CHG:
            raw |= AL_XCHG
        if not fets & FS_DSG:
            raw |= AL_XDSG
        if self.balancing_mask:
            raw |= AL_CB
        raw |= AL_INITCOMP
        return raw

    def _latch_alarms(self, pulses: int = 0) -> None:
        raw = self._raw_status()
        rising = (raw & ~self._raw_prev) | pulses
        self._raw_prev = raw
        self._alarm_status |= rising & self._alarm_enable

    # -- protections on the chip's clock
    def _run_to(self, t: float) -> None:
        if t <= self._prot_ms:
            return
        start = self._prot_ms
        pulses = 0
        if t - self._last_scan_ms >= SCAN_MS:
            pulses = AL_ADSCAN | AL_FULLSCAN
            self._last_scan_ms = t
        if not self._cfgupdate:
            for p in self._prots:
                self._step_protection(p, start, t)
        self._prot_ms = t
        self._now = max(self._now, t)
        self._latch_alarms(pulses)

    def _step_protection(self, p: _Protection, start: float, t: float) -> None:
        enabled_a = self._applied_u("<B", ENABLED_PROT_A)
        enabled_b = self._applied_u("<B", ENABLED_PROT_B)
        enabled = (enabled_a if p.register == "A" else enabled_b) & p.bit
        cond, delay_ms, recovered, recovery_ms = self._condition(p.name)
        if not enabled:
            cond = False
        if p.state == "ok" and cond:
            p.state, p.onset_ms = "alert", start
        if p.state == "alert":
            if not cond:
                p.state = "ok"
            elif p.onset_ms + delay_ms <= t:
                trip_ms = p.onset_ms + delay_ms
                p.state, p.recovery_since = "tripped", None
                p.trip = Trip(p.name, p.onset_ms, trip_ms)
                self.trips.append(p.trip)
                self._set_bit(p, "status", True)
                start = trip_ms
        if p.state == "tripped":
            if recovered or not enabled:
                since = p.recovery_since if p.recovery_since is not None else start
                p.recovery_since = since
                if since + recovery_ms <= t:
                    p.state, p.recovery_since = "ok", None
                    self._set_bit(p, "status", False)
                    if p.trip is not None:
                        p.trip.recovered_ms = since + recovery_ms
            else:
                p.recovery_since = None
        self._set_bit(p, "alert", cond and p.state != "ok")

    def _set_bit(self, p: _Protection, which: str, on: bool) -> None:
        name = f"_{which}_{p.register.lower()}"
        value = getattr(self, name)
        setattr(self, name, value | p.bit if on else value & ~p.bit)

    def _condition(self, name: str) -> tuple[bool, float, bool, float]:
        """(condition now, delay ms, recovery condition now, recovery time ms)."""
        u1 = self._applied_u
        recovery_ms = u1("<B", PROTECTION_RECOVERY_TIME) * 1000.0
        if name in ("COV", "CUV"):
            cells = self._measured_cells() or [0]
            if name == "COV":
                thr = u1("<B", COV_THRESHOLD) * COV_CUV_STEP_MV
                hyst = u1("<B", COV_RECOVERY_HYST) * COV_CUV_STEP_MV
                delay = _oc_delay_ms(u1("<H", COV_DELAY))
                return max(cells) >= thr, delay, max(cells) < thr - hyst, recovery_ms
            thr = u1("<B", CUV_THRESHOLD) * COV_CUV_STEP_MV
            hyst = u1("<B", CUV_RECOVERY_HYST) * COV_CUV_STEP_MV
            delay = _oc_delay_ms(u1("<H", CUV_DELAY))
            return min(cells) <= thr, delay, min(cells) > thr + hyst, recovery_ms
        shunt_mv = self._current_a * self.shunt_ohm * 1000.0  # positive charging
        current_ma = _i16(self._current_ma())  # as the chip compares it, in whole mA
        if name == "OCC":
            thr = u1("<B", OCC_THRESHOLD) * OC_STEP_MV
            rec = u1("<h", OCC_RECOVERY_THRESHOLD)
            delta_cv = u1("<h", OCC_PACK_TOS_DELTA)  # in 10 mV, compared in 10 mV
            stack_cv = _i16(self._stack_v() * 100.0)
            pack_cv = stack_cv if self._pack_v is None else _i16(self._pack_v * 100.0)
            recovered = current_ma <= rec or pack_cv <= stack_cv - delta_cv
            return (shunt_mv >= thr, _oc_delay_ms(u1("<B", OCC_DELAY)), recovered,
                    recovery_ms)
        if name in ("OCD1", "OCD2"):
            thr_reg, delay_reg = ((OCD1_THRESHOLD, OCD1_DELAY) if name == "OCD1"
                                  else (OCD2_THRESHOLD, OCD2_DELAY))
            thr = u1("<B", thr_reg) * OC_STEP_MV
            rec = u1("<h", OCD_RECOVERY_THRESHOLD)
            return (-shunt_mv >= thr, _oc_delay_ms(u1("<B", delay_reg)),
                    current_ma >= rec, recovery_ms)
        if name == "SCD":
            index = min(u1("<B", SCD_THRESHOLD), len(SCD_THRESHOLDS_MV) - 1)
            thr = SCD_THRESHOLDS_MV[index]
            cond = -shunt_mv >= thr
            return (cond, scd_delay_us(u1("<B", SCD_DELAY)) / 1000.0, not cond,
                    u1("<B", SCD_RECOVERY_TIME) * 1000.0)
        temps = [self._die_c] if name in ("OTINT", "UTINT") else self._cell_temps_c()
        if not temps:
            return False, 0.0, True, recovery_ms
        regs = {"OTC": (OTC_THRESHOLD, OTC_DELAY, OTC_RECOVERY),
                "OTD": (OTD_THRESHOLD, OTD_DELAY, OTD_RECOVERY),
                "OTINT": (OTINT_THRESHOLD, OTINT_DELAY, OTINT_RECOVERY),
                "UTC": (UTC_THRESHOLD, UTC_DELAY, UTC_RECOVERY),
                "UTD": (UTD_THRESHOLD, UTD_DELAY, UTD_RECOVERY),
                "UTINT": (UTINT_THRESHOLD, UTINT_DELAY, UTINT_RECOVERY)}[name]
        thr, delay_s, rec = u1("<b", regs[0]), u1("<B", regs[1]), u1("<b", regs[2])
        if name.startswith("OT"):
            return max(temps) >= thr, delay_s * 1000.0, max(temps) <= rec, recovery_ms
        return min(temps) <= thr, delay_s * 1000.0, min(temps) >= rec, recovery_ms


def _oc_delay_ms(code: int) -> float:
    """COV/CUV/OCC/OCD1/OCD2 delay: n × 3.3 ms with a 6.6 ms offset (1 → 10 ms)."""
    return code * OC_DELAY_STEP_MS + OC_DELAY_OFFSET_MS


def scd_delay_us(code: int) -> float:
    """SCD delay: 1 (or 0) is no delay, n is (n - 1) × 15 µs."""
    return max(0, code - 1) * SCD_DELAY_STEP_US


def _deci_k(celsius: float) -> int:
    return _i16((celsius + ZERO_C_IN_K) * 10.0)


def _i16(value: float) -> int:
    """A reading as the chip's signed 16-bit register holds it: clamped; a NaN (from a
    nonsense float in data memory, e.g. CC Gain) reads 0."""
    # (comparisons, not math.isnan/isinf and max/min: the chip model reads ~140 a
    # control period; the same results, infinities included)
    if value != value:  # NaN
        return 0
    if value >= 32767:
        return 32767
    if value <= -32768:
        return -32768
    return round(value)
