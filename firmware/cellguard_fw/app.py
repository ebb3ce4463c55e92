"""The BMS application: one control step is measure -> protect -> estimate -> report.

``Bms`` is hardware-free: it is given a HAL (sensors, output switch, reset) and
a port (bytes in and out). A board's ``main.py`` calls :meth:`Bms.poll` and
:meth:`Bms.step` on a timer; the simulator calls them on simulated time.
Requests are answered with the request's sequence number; every refusal is a
NAK that says why.
"""

from binascii import hexlify

from micropython import const

from . import FIRMWARE_VERSION, codec
from .chemistry import PROFILES
from .config import KEYS, Config
from .contactor import PRECHARGE, WAIT_RETRY, Contactor
from .events import EventLog
from .latches import LatchStore
from .link import PAYLOAD_AT, Link
from .measurement import Measurement
from .protection import Protection
from .soc import CoulombCounter

# The protocol numbers used here, as folded copies of codec.py's: the board
# interns no name for them (tests/test_firmware_build.py holds them equal).
_EVENT_BOOT = const(1)
_EVENT_CLEAR = const(4)
_EVENT_RELEASE = const(3)
_EVENT_TIME_SYNC = const(6)
_EVENT_TRIP = const(2)
_FAULT_AFE_PROTECTION = const(0x800000)
_FAULT_CONTACTOR_WELDED = const(0x4000)
_FAULT_FIRMWARE = const(0x400000)
_FAULT_HOST_LOST = const(0x8000)
_FAULT_PRECHARGE_FAILED = const(0x2000)
_FAULT_SENSOR_BUS = const(0x1000000)
_MAX_FRAME = const(264)
_MSG_ACK = const(126)
_MSG_AUDIT = const(101)
_MSG_AUTH = const(98)
_MSG_CLEAR_FAULTS = const(50)
_MSG_COMMISSION = const(82)
_MSG_CONFIG_DUMP = const(36)
_MSG_CONFIG_VALUE = const(34)
_MSG_ENTER_REPL = const(5)
_MSG_ESTIMATE = const(18)
_MSG_EVENTS = const(65)
_MSG_FAULT_EVENT = const(17)
_MSG_FAULT_STATE = const(49)
_MSG_GET_CONFIG = const(32)
_MSG_GET_CONFIG_DUMP = const(35)
_MSG_GET_EVENTS = const(64)
_MSG_GET_FAULTS = const(48)
_MSG_GET_AUDIT = const(100)
_MSG_GET_LIFETIME = const(80)
_MSG_GET_NONCE = const(96)
_MSG_GET_STATS = const(6)
_MSG_HELLO = const(1)
_MSG_INFO = const(2)
_MSG_LIFETIME = const(81)
_MSG_NAK = const(127)
_MSG_NONCE = const(97)
_MSG_RESET = const(4)
_MSG_SECOND_LIFE = const(83)
_MSG_SET_CONFIG = const(33)
_MSG_SET_KEY = const(99)
_MSG_STATS = const(7)
_MSG_TELEMETRY = const(16)
_MSG_TIME_SYNC = const(3)
_NAK_ERROR_AUTH_REQUIRED = const(10)
_NAK_ERROR_BAD_PAYLOAD = const(2)
_NAK_ERROR_INCOMPATIBLE_VERSION = const(3)
_NAK_ERROR_UNKNOWN_KEY = const(4)
_NAK_ERROR_UNKNOWN_MESSAGE = const(1)
_PROTOCOL_MAJOR = const(1)
_PROTOCOL_MINOR = const(8)
_SEVERITY_FAULT = const(2)
_STATE_ACTIVE = const(2)
_STATE_FAULT = const(3)
_STATE_PRECHARGE = const(4)
_STATE_STANDBY = const(1)
_STATE_STARTUP = const(0)

try:
    from gc import mem_free
except ImportError:  # CPython
    mem_free = None

# Message types this firmware answers or sends (reported in INFO).
KNOWN_TYPES = bytes((
    _MSG_HELLO, _MSG_INFO, _MSG_TIME_SYNC, _MSG_RESET,
    _MSG_ENTER_REPL, _MSG_GET_STATS, _MSG_STATS, _MSG_TELEMETRY,
    _MSG_FAULT_EVENT, _MSG_GET_CONFIG, _MSG_SET_CONFIG, _MSG_CONFIG_VALUE,
    _MSG_GET_CONFIG_DUMP, _MSG_CONFIG_DUMP, _MSG_GET_FAULTS,
    _MSG_FAULT_STATE, _MSG_CLEAR_FAULTS, _MSG_GET_EVENTS, _MSG_EVENTS,
    _MSG_ACK, _MSG_NAK, _MSG_ESTIMATE, _MSG_GET_LIFETIME, _MSG_LIFETIME,
    _MSG_COMMISSION, _MSG_SECOND_LIFE, _MSG_GET_NONCE, _MSG_NONCE, _MSG_AUTH, _MSG_SET_KEY,
    _MSG_GET_AUDIT, _MSG_AUDIT,
))
# Requests admin.py answers: the writes (messages.WRITES: a locked board takes them
# only inside AUTH), and GET_NONCE, AUTH, GET_AUDIT.
_ADMIN = bytes((
    _MSG_TIME_SYNC, _MSG_RESET, _MSG_ENTER_REPL, _MSG_SET_CONFIG, _MSG_CLEAR_FAULTS,
    _MSG_COMMISSION, _MSG_SECOND_LIFE, _MSG_SET_KEY, _MSG_GET_NONCE, _MSG_AUTH,
    _MSG_GET_AUDIT,
))
_DUMP_PAGE = const(12)  # config entries per CONFIG_DUMP frame (13 bytes each)
_LIFE_LAYOUT = const(2)  # docs/lifetime.md: the meaning of each counter word
_LIFE_PAGE = const(60)  # u32 counters in one LIFETIME payload
_EVENTS_PAGE = const(10)  # events per EVENTS frame (21 bytes each)
_TIME_WRAP = const(1073741000)  # board time wraps here: whole seconds, below 2**30
_SILENCE_MAX = const(0x20000000)  # host silence saturates here (6.2 days)
_UNIX_2020 = const(1577836800)  # the board keeps Unix time from 2020: a small int


def board_limits(board):
    """The (trip, release) limit pairs: chemistry defaults, board overrides
    (``protection_setup.board_limits``)."""
    from .protection_setup import board_limits

    return board_limits(board)


class Bms:
    def __init__(self, board, hal, port):
        self.hal = hal
        self.n_cells = board["cells"]
        self.n_temps = board["temp_sensors"]
        self.profile = PROFILES[board["chemistry"]]
        self.control_period_ms = board["control_period_ms"]
        self.telemetry_period_ms = board["telemetry_period_ms"]
        self.frontend = hal.frontend(board["frontend"])  # ADC codes or a chip's units
        # The stuck-reading check: a current step of C/10 (a board may say) that a
        # reading does not follow beyond its front end's noise (stuck_band_mv, codes here).
        fs = board["frontend"]["cell_adc"]["full_scale_mv"]
        self.meas = Measurement(self.n_cells, self.n_temps,
                                board.get("stuck_current_ma", board["capacity_mah"] // 10),
                                -(-board.get("stuck_band_mv", 0) * self.frontend.cell.max_code
                                  // fs))
        # What builds the protection table is needed only now: it leaves RAM after.
        from . import protection_setup as setup

        self.protection = Protection(setup.board_limits(board), board.get("delays"),
                                     setup.board_severities(board), board.get("debounce"))
        # On a board with separate charge and discharge switches a cell-voltage fault
        # stops only the direction it holds: the other one is the way back inside the
        # limits (an empty LFP cell rests below its release: it must be charged).
        self.one_way = setup.one_way(board)
        setup.release()
        self.soc = CoulombCounter(board["capacity_mah"], self.profile["ocv_mv"])
        storage = hal.storage_dir()  # None: nothing survives a reset
        # Estimation (floats, once a second) runs beside the control step, never
        # inside it; "none" leaves it out (and its code out of RAM).
        self.estimator = None
        self.balancing = 0
        if board.get("estimator", "ekf") != "none":
            from .estimator import StateEstimator
            self.estimator = StateEstimator(board, self.profile, storage, self.soc)
        self.estimate_sent_ms = 0
        self.config = Config(self, self.profile, board)
        # A monitor chip's own protections, a margin beyond the firmware's limits as
        # configured now: the second layer, which holds while the MCU does not.
        hal.arm(self.protection.trip)
        self.chip_trips = 0  # the chip's Safety Status A | B << 8 | C << 16, last read
        self.config_pin = board.get("config_pin", 0)
        # Who may write (admin.py, docs/security.md): the key's id, 0 in open mode; the
        # key stays on flash, read only to check a MAC. ``auth``: nonce, refusals and
        # the change log's run.
        self.key_path = None if storage is None else storage + "/key.bin"
        self.key_id = 0 if storage is None else _key_id(self.key_path)
        self.auth = None
        self.last_nak = 0
        self.events = EventLog(path=None if storage is None else storage + "/events.bin")
        self.latch_store = LatchStore(None if storage is None else storage + "/latches.bin")
        # Faults latch until CLEAR_FAULTS, across resets: the output stays open.
        self.latched = self.latch_store.load()
        # The battery's life (EU 2023/1542 Annex VII): counted every step, saved
        # every few minutes and after each event, outside the control step.
        from .lifetime import Lifetime

        self.lifetime = Lifetime(self.profile, None if storage is None else storage + "/life",
                                 board["capacity_mah"], board.get("boot") or b"")
        self.lifetime.boot(board.get("watchdog_reset", False))
        self.link = Link(port)
        self.unique_id = hexlify(hal.unique_id())
        self.board_name = board["name"].encode()
        self.state = _STATE_STARTUP
        self.faults = 0
        self.alarms = 0
        self.warnings = 0
        self.allowed = 3  # directions the alarms allow: bit 0 charge, bit 1 discharge
        self.tripped = 0  # bits that tripped since boot or the last CLEAR_FAULTS
        self.time_ms = 0
        self.time_wraps = 0  # times time_ms wrapped (the wire clock runs on)
        # Unix time at board time 0 once the host set the clock (0: not set), kept
        # from 2020 on so that it is a small int: the wrap adds to it allocation-free.
        self.unix_base = 0
        self.telemetry_due_ms = 0
        self.telemetry_seq = 0
        self.control_steps = 0
        self.control_overruns = 0
        self.unknown_types = 0
        self.naks_sent = 0
        self.reset_requested = False
        self.repl_requested = False
        # Policy when the host falls silent: 0 keeps protecting as ever; otherwise
        # the output opens after this long without a frame, until one arrives.
        self.host_timeout_ms = board.get("host_timeout_ms", 0)
        self.host_silence_ms = 0
        self.handlers = {
            _MSG_HELLO: self._on_hello,
            _MSG_GET_STATS: self._on_get_stats,
            _MSG_GET_CONFIG: self._on_get_config,
            _MSG_GET_CONFIG_DUMP: self._on_get_config_dump,
            _MSG_GET_FAULTS: self._on_get_faults,
            _MSG_GET_EVENTS: self._on_get_events,
            _MSG_GET_LIFETIME: self._on_get_lifetime,
        }  # the writes, GET_NONCE, AUTH, GET_AUDIT: admin.py (_on_frame)
        self.contactor = Contactor(hal, board.get("precharge"))
        hal.set_directions(True, True)
        # The running build (main.py's boot record): status byte, then the manifest's
        # SHA-256; the BOOT event's value is the status (3: fell back to the old build;
        # 5, 6: main.py's check refused this one, whose output the step holds open).
        self.boot = board.get("boot") or b"\x00"
        self._log(_EVENT_BOOT, self.latched, self.boot[0])
        self.events.flush()  # a board that resets in a loop still logs each boot

    @property
    def output_closed(self):
        """Whether current can flow: the contactor state machine is the one truth."""
        return self.contactor.closed

    # -- control step ------------------------------------------------------
    def step(self, dt_ms):
        """One control step, ``dt_ms`` after the previous one: measure, protect
        and drive the outputs, then persist and report what changed."""
        # Board time stays a small int (below 2**30): it wraps every 12.4 days, at
        # a whole second so Unix time carries over exactly; with ``time_wraps`` the
        # u32 clock on the wire runs on (:meth:`clock`).
        t = self.time_ms + dt_ms
        if t >= _TIME_WRAP:
            t -= _TIME_WRAP
            self.time_wraps += 1
            if self.unix_base:
                self.unix_base += _TIME_WRAP // 1000
        self.time_ms = t
        self.control_steps += 1
        m = self.meas
        # measure
        raw_current = self.hal.sample(m.raw_cells, m.raw_temps)
        pack_code = self.hal.read_pack_code()
        pack = self.frontend.pack
        m.update(self.frontend, raw_current, dt_ms,
                 pack.convert(pack_code) if pack_code >= 0 and pack is not None else -1)
        # protect
        p = self.protection
        p.load(m)
        faults = p.step(dt_ms) | self.contactor.faults
        hal = self.hal
        chip = hal.chip_trips()  # the second layer: what a monitor chip tripped by itself
        if chip < 0:  # the chip does not answer: the readings are stale
            faults |= _FAULT_SENSOR_BUS
            chip = self.chip_trips  # its last status stands
        if chip:
            faults |= _FAULT_AFE_PROTECTION
        if self.host_silence_ms < _SILENCE_MAX:  # saturates: stays a small int
            self.host_silence_ms += dt_ms
        if self.host_timeout_ms and self.host_silence_ms >= self.host_timeout_ms:
            faults |= _FAULT_HOST_LOST
        if 4 < self.boot[0] < 7:  # main.py refused this build (files altered, a rollback):
            faults |= _FAULT_FIRMWARE  # active while it runs; CLEAR_FAULTS cannot clear it
        self.alarms = p.alarms
        self.warnings = p.warnings
        # Protection acts first: the outputs follow the decision before any flash
        # write (the latch) or USB write (FAULT_EVENT), which can stall for tens
        # or hundreds of ms.
        self._drive_output(dt_ms, faults | self.latched, m.pack_mv)
        faults |= self.contactor.faults  # precharge failed or welded, found just now
        if faults != self.faults or p.changed or chip != self.chip_trips:
            self._report_changes(faults, p.changed, chip)
        # estimate
        self.soc.step(dt_ms, m.current_ma, m.pack_mv // self.n_cells)
        self.lifetime.update(dt_ms, m.current_ma, m.pack_mv, self.soc.soc_cpct(),
                             m.min_temp_dc, m.max_temp_dc, faults, chip, m.min_cell_mv,
                             m.max_cell_mv)
        if self.estimator is not None:
            self.estimator.sample(dt_ms, m.current_ma, m.pack_mv // self.n_cells)
        # report
        self.telemetry_due_ms -= dt_ms
        if self.telemetry_due_ms <= 0:
            self.telemetry_due_ms += self.telemetry_period_ms
            if self.telemetry_due_ms <= 0:  # fell behind: do not burst
                self.telemetry_due_ms = self.telemetry_period_ms
            self.send_telemetry()

    def clock(self):
        """The u32 board clock the frames carry: ms since boot, wrapping at 2**32
        (``time_ms`` itself wraps sooner, to stay a small int)."""
        if not self.time_wraps:
            return self.time_ms
        return (self.time_wraps * _TIME_WRAP + self.time_ms) & 0xFFFFFFFF

    def persist(self):
        """Deferred flash writes, for the main loop to call after a control step
        (the outputs are driven by then): the events the step logged reach the
        file in one batch. Not later: a trip can be followed by a power loss (an
        under-voltage cut-off of a pack-powered board), and its record with it."""
        ev = self.events
        if ev.saved < ev.total:
            ev.flush()
        life = self.lifetime
        if life.snapshot_due():  # weekly: the code is loaded for it and released
            from . import life_admin

            life_admin.take(self)
        if life.due():
            life.save()

    # -- estimation (not on the safety path) --------------------------------
    def estimate_due(self):
        return self.estimator is not None and self.estimator.due()

    def estimate(self):
        """One estimation step: SoC, health, current limits, balancing. The main
        loop calls it after a control step when :meth:`estimate_due`."""
        est = self.estimator
        if est is None:
            return
        p = self.protection
        ratings = (p.trip[4] / 1000.0, p.trip[9] / 1000.0, p.trip[5] / 1000.0,
                   p.trip[10] / 1000.0)  # sustained and peak over-current trips, A
        within = not (self.faults | self.latched | self.alarms) and self.contactor.closed
        # What the protection engine judges now (active, or its condition holding
        # before the debounce has run): the estimator leaves implausible readings out.
        mask = est.run(self.meas.cells_mv, self.meas.temps_dc, ratings, within,
                       p.faults | p.alarms | p.warnings | p.pending_trips)
        if est.runs:
            est.follow_rest(self.lifetime)
        if mask != self.balancing:
            self.balancing = mask
            self.hal.set_balancing(mask)
        if (self.time_ms - self.estimate_sent_ms) % _TIME_WRAP >= self.telemetry_period_ms:
            self.estimate_sent_ms = self.time_ms
            est.send(self.link, self.clock())

    def soc_cpct(self):
        """The SoC telemetry reports: the estimator's, else the coulomb counter's."""
        est = self.estimator
        if est is not None and est.runs:
            return int(est.soc_pct * 100 + 0.5)
        return self.soc.soc_cpct()

    def _drive_output(self, dt_ms, held, pack_mv):
        # Never close onto a condition that is about to trip (at start-up, or
        # after a clear): wait until every measurement is inside its limits.
        c = self.contactor
        cw, dw = self.one_way
        stop = (1 if held & cw else 0) | (2 if held & dw else 0)
        opens = held & ~(cw | dw) or stop == 3
        want = not opens and (c.closed or not self.protection.pending_trips)
        allowed = self.protection.allowed & ~stop
        if allowed != self.allowed:  # first: a closing output never lets a stopped way through
            self.allowed = allowed
            self.hal.set_directions(allowed & 1, allowed & 2)
        c.step(dt_ms, want, pack_mv)
        if held or c.faults:
            self.state = _STATE_FAULT
        elif c.closed:
            self.state = _STATE_ACTIVE
        elif c.state == PRECHARGE or c.state == WAIT_RETRY:
            self.state = _STATE_PRECHARGE
        else:
            self.state = _STATE_STANDBY

    def _report_changes(self, faults, changed, value=-1):
        """Latch new faults and send a FAULT_EVENT for each change: ``changed``
        holds the protection bits (any severity) that tripped or released;
        contactor, monitor-chip and host-lost bits are found from ``faults``;
        ``value`` is the monitor chip's safety status (a new trip of the chip while
        another holds is an event too, its value the whole status; -1: unchanged).
        (Named as a name the firmware has already: each new one costs heap.)"""
        chip = self.chip_trips if value < 0 else value
        old = self.faults
        trips = faults & ~old
        self.tripped |= trips
        self.faults = faults
        trips &= ~_FAULT_HOST_LOST  # a policy, not a fault of the pack: never latches
        if trips & ~self.latched:
            self.latched |= trips
            self.latch_store.save(self.latched)
        p = self.protection
        if changed:
            for i in range(p.count):
                bit = p.bit[i]
                if changed & bit:
                    kind = _EVENT_TRIP if p.active[i] else _EVENT_RELEASE
                    self._fault_event(kind, p.severity[i], bit, p.value(i))
        flipped = faults ^ old
        contactor_bits = flipped & (_FAULT_PRECHARGE_FAILED | _FAULT_CONTACTOR_WELDED)
        if contactor_bits:
            kind = _EVENT_TRIP if faults & contactor_bits else _EVENT_RELEASE
            self._fault_event(kind, _SEVERITY_FAULT, contactor_bits,
                              self.contactor.fault_value)
        if chip != self.chip_trips:
            self.chip_trips = chip
            kind = _EVENT_TRIP if chip else _EVENT_RELEASE
            self._fault_event(kind, _SEVERITY_FAULT, _FAULT_AFE_PROTECTION, chip)
        if flipped & _FAULT_SENSOR_BUS:
            kind = _EVENT_TRIP if faults & _FAULT_SENSOR_BUS else _EVENT_RELEASE
            self._fault_event(kind, _SEVERITY_FAULT, _FAULT_SENSOR_BUS, 0)
        if flipped & _FAULT_HOST_LOST:
            kind = _EVENT_TRIP if faults & _FAULT_HOST_LOST else _EVENT_RELEASE
            self._fault_event(kind, _SEVERITY_FAULT, _FAULT_HOST_LOST,
                              self.host_silence_ms)

    def _fault_event(self, kind, severity, bits, value):
        index = self._log(kind, bits, value)
        link = self.link
        end = codec.encode_fault_event(link.payload_buffer(), PAYLOAD_AT, index, self.clock(),
                                       kind, severity, bits, value, self.faults | self.latched)
        link.send(_MSG_FAULT_EVENT, link.next_seq(), end)

    def _log(self, kind, code, value):
        # u32 on the wire: wraps in 2106, as the event log's 32-bit array does on a board
        unix = (self.unix_base + _UNIX_2020 + self.time_ms // 1000) & 0xFFFFFFFF \
            if self.unix_base else 0
        return self.events.add(kind, code, value, self.clock(), unix)

    def send_telemetry(self):
        m = self.meas
        link = self.link
        end = codec.encode_telemetry(
            link.payload_buffer(), PAYLOAD_AT,
            self.telemetry_seq, self.clock(), self.state,
            self.faults | self.latched,
            self.warnings, self.alarms, self.allowed if self.contactor.closed else 0,
            m.pack_mv, m.current_ma, self.soc_cpct(), m.cells_mv, m.temps_dc,
        )
        link.send(_MSG_TELEMETRY, link.next_seq(), end)
        self.telemetry_seq = (self.telemetry_seq + 1) & 0xFFFFFFFF

    # -- requests ------------------------------------------------------------
    def poll(self):
        """Handle a chunk of what the host has sent; True when more may wait."""
        return self.link.poll(self._on_frame)

    def _on_frame(self, version, msg_type, seq, start, end):
        self.host_silence_ms = 0  # any intact frame shows the host is there
        if version != _PROTOCOL_MAJOR:
            self._nak(seq, msg_type, _NAK_ERROR_INCOMPATIBLE_VERSION, _PROTOCOL_MAJOR)
            return
        handler = self.handlers.get(msg_type)
        if handler is None and msg_type in _ADMIN:
            handler = self._on_admin  # rare: the code is on the heap only meanwhile
            # What a host may send in a stream is answered here once the change log has
            # the run's record (admin.py, auth[6:9]): the same plain write refused again
            # by a locked board, a clock set after a clock set on an open one, counted.
            a = self.auth
            if a is not None and msg_type == a[6]:
                if self.key_id:
                    a[7] += 1
                    self._nak(seq, msg_type, _NAK_ERROR_AUTH_REQUIRED, self.key_id)
                    return
                handler = self._on_time_sync
        if handler is None:
            self.unknown_types += 1
            self._nak(seq, msg_type, _NAK_ERROR_UNKNOWN_MESSAGE, 0)
            return
        try:
            handler(seq, start, end)
        except ValueError:  # a payload the codec could not parse
            self._nak(seq, msg_type, _NAK_ERROR_BAD_PAYLOAD, 0)

    def _nak(self, seq, msg_type, error, limit):
        self.naks_sent += 1
        self.last_nak = error  # the change log's result (admin.py)
        end = codec.encode_nak(self.link.payload_buffer(), PAYLOAD_AT, msg_type, error, limit)
        self.link.send(_MSG_NAK, seq, end)

    def _ack(self, seq, msg_type):
        end = codec.encode_ack(self.link.payload_buffer(), PAYLOAD_AT, msg_type)
        self.link.send(_MSG_ACK, seq, end)

    def _on_hello(self, seq, start, end):
        host_minor = codec.decode_hello(self.link.frame, start, end)[1]
        p = self.protection
        end = codec.encode_info(
            self.link.payload_buffer(), PAYLOAD_AT,
            _PROTOCOL_MAJOR, _PROTOCOL_MINOR, FIRMWARE_VERSION.encode(), self.board_name,
            self.unique_id, self.profile["id"], self.n_cells, self.n_temps,
            self.soc.capacity_mah, self.control_period_ms, self.telemetry_period_ms,
            p.trip[0], p.trip[1], p.trip[2], p.trip[3], p.trip[4], p.trip[5],
            _MAX_FRAME, KNOWN_TYPES, self.boot, self.key_id,
        )
        if host_minor < 8:  # an older host parses INFO strictly: without key_id ...
            end -= 1
        if host_minor < 4:  # ... and a 1.3 host without the boot field
            end -= 1 + len(self.boot)
        if self.auth is not None:  # a new session: the nonce given out is void
            self.auth[0] = None
        self.link.send(_MSG_INFO, seq, end)

    def _on_get_stats(self, seq, start, end):
        codec.decode_empty(self.link.frame, start, end)
        link = self.link
        free = mem_free() if mem_free is not None else -1
        end = codec.encode_stats(
            link.payload_buffer(), PAYLOAD_AT, self.clock(),
            link.frames_ok, link.frames_bad, link.crc_errors, link.oversize, self.unknown_types,
            self.naks_sent, link.tx_frames, self.control_steps, self.control_overruns, free,
            link.tx_dropped, self.hal.bus_errors(),
        )
        link.send(_MSG_STATS, seq, end)

    def _send_config_value(self, seq, key):
        _, _, lo, hi = self.config.limits(key)
        end = codec.encode_config_value(self.link.payload_buffer(), PAYLOAD_AT, key,
                                  self.config.get(key), lo, hi)
        self.link.send(_MSG_CONFIG_VALUE, seq, end)

    def _on_get_config(self, seq, start, end):
        (key,) = codec.decode_get_config(self.link.frame, start, end)
        if key not in KEYS:
            self._nak(seq, _MSG_GET_CONFIG, _NAK_ERROR_UNKNOWN_KEY, 0)
            return
        self._send_config_value(seq, key)

    def _on_get_config_dump(self, seq, start, end):
        (first,) = codec.decode_get_config_dump(self.link.frame, start, end)
        keys = [k for k in KEYS if k >= first][:_DUMP_PAGE]
        later = [k for k in KEYS if k > keys[-1]] if keys else []
        cfg = self.config
        limits = [cfg.limits(k) for k in keys]
        end = codec.encode_config_dump(
            self.link.payload_buffer(), PAYLOAD_AT, later[0] if later else 0, bytes(keys),
            [cfg.get(k) for k in keys], [x[2] for x in limits], [x[3] for x in limits],
        )
        self.link.send(_MSG_CONFIG_DUMP, seq, end)

    def _on_get_faults(self, seq, start, end):
        codec.decode_empty(self.link.frame, start, end)
        end = codec.encode_fault_state(self.link.payload_buffer(), PAYLOAD_AT, self.faults,
                                       self.latched, self.tripped, self.alarms, self.warnings)
        self.link.send(_MSG_FAULT_STATE, seq, end)

    def clear_faults(self):
        """Clear the latches whose condition is gone (an active fault stays latched);
        return the bits cleared. The output may close from the next step on."""
        self.faults &= ~self.contactor.clear()  # a welded contactor trips again
        cleared = self.latched & ~self.faults
        self.tripped &= self.faults
        if cleared:
            self.latched &= ~cleared
            self.latch_store.save(self.latched)
            self._fault_event(_EVENT_CLEAR, _SEVERITY_FAULT, cleared, 0)
        return cleared

    def _on_get_events(self, seq, start, end):
        first, max_count = codec.decode_get_events(self.link.frame, start, end)
        ev = self.events
        # Past the newest event there is nothing to send; clamping also keeps a u32
        # index (a big int under MicroPython) out of range(), which takes machine words.
        page = ev.page(min(first, ev.total), min(max_count, _EVENTS_PAGE))
        slots = [i % ev.capacity for i in page]
        end = codec.encode_events(
            self.link.payload_buffer(), PAYLOAD_AT, ev.total, ev.oldest(), list(page),
            [ev.times_ms[s] for s in slots], [ev.unix_times[s] for s in slots],
            bytes([ev.kinds[s] for s in slots]), [ev.codes[s] for s in slots],
            [ev.values[s] for s in slots],
        )
        self.link.send(_MSG_EVENTS, seq, end)

    def _on_get_lifetime(self, seq, start, end):
        (first,) = codec.decode_get_lifetime(self.link.frame, start, end)
        life = self.lifetime
        w = life.w
        first = min(first, len(w))
        end = codec.encode_lifetime(self.link.payload_buffer(), PAYLOAD_AT, _LIFE_LAYOUT,
                                    life.seq, len(w), first,
                                    memoryview(w)[first:first + _LIFE_PAGE])
        self.link.send(_MSG_LIFETIME, seq, end)

    def _on_time_sync(self, seq, start, end):
        """TIME_SYNC: the Unix time (s) dates events and the lifetime record. admin.py
        calls this for the first of a run of clock sets, app for the rest (_on_frame)."""
        (unix,) = codec.decode_time_sync(self.link.frame, start, end)
        self.unix_base = unix - _UNIX_2020 - self.time_ms // 1000  # from 2020 (above)
        self.lifetime.unix = max(0, unix - _UNIX_2020)
        # The event value is an i32 on the wire: from 2038 on it wraps, as the event
        # log's 32-bit array does under MicroPython.
        self._log(_EVENT_TIME_SYNC, 0, unix - ((unix & 0x80000000) << 1))
        a = self.auth
        if a and a[6] == _MSG_TIME_SYNC:  # a clock set of admin.py's run: counted
            a[7] += 1
            a[8] = unix
        self._ack(seq, _MSG_TIME_SYNC)

    def _on_admin(self, seq, start, end):
        """The writes, GET_NONCE, AUTH, GET_AUDIT (admin.py)."""
        from . import admin

        admin.request(self, seq, start, end)


def _key_id(path):
    """The id of the key in ``path`` (admin.py's key.bin, whole: it is written beside
    and renamed over; or the key.new a change cut short left), or 0: open mode."""
    for name in (path, path[:-3] + "new"):
        try:
            with open(name, "rb") as f:
                return f.read(1)[0]
        except (OSError, IndexError):
            pass
    return 0
