"""The BMS application: one control step is measure -> protect -> estimate -> report.

``Bms`` is hardware-free: it is given a HAL (sensors and the output switch) and
a port (bytes in and out). A board's ``main.py`` calls :meth:`Bms.poll` and
:meth:`Bms.step` on a timer; the simulator calls them on simulated time.
"""

from binascii import hexlify

from . import FIRMWARE_VERSION
from .chemistry import PROFILES
from .codec import (
    MSG_HELLO,
    MSG_INFO,
    MSG_NAK,
    MSG_TELEMETRY,
    NAK_ERROR_BAD_PAYLOAD,
    NAK_ERROR_INCOMPATIBLE_VERSION,
    NAK_ERROR_UNKNOWN_MESSAGE,
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    STATE_ACTIVE,
    STATE_FAULT,
    STATE_STARTUP,
    decode_hello,
    encode_info,
    encode_nak,
    encode_telemetry,
)
from .frontend import Frontend
from .link import PAYLOAD_AT, Link
from .measurement import Measurement
from .protection import Protection
from .soc import CoulombCounter


def board_limits(board):
    """The (trip, release) limit pairs: chemistry defaults, board overrides."""
    profile = PROFILES[board["chemistry"]]
    limits = {}
    for key in ("cell_ov_mv", "cell_uv_mv", "temp_max_dc", "temp_min_dc"):
        limits[key] = tuple(board.get("limits", {}).get(key, profile[key]))
    for key in ("charge_current_max_ma", "discharge_current_max_ma"):
        trip = board[key]
        limits[key] = (trip, trip // 2)
    return limits


class Bms:
    def __init__(self, board, hal, port):
        self.board = board
        self.hal = hal
        self.n_cells = board["cells"]
        self.n_temps = board["temp_sensors"]
        self.profile = PROFILES[board["chemistry"]]
        self.control_period_ms = board["control_period_ms"]
        self.telemetry_period_ms = board["telemetry_period_ms"]
        self.limits = board_limits(board)
        self.frontend = Frontend(board["frontend"])
        self.meas = Measurement(self.n_cells, self.n_temps)
        self.protection = Protection(self.limits, board.get("delays"))
        self.soc = CoulombCounter(board["capacity_mah"], self.profile["ocv_mv"])
        self.link = Link(port)
        self.unique_id = hexlify(hal.unique_id())
        self.board_name = board["name"].encode()
        self.state = STATE_STARTUP
        self.output_closed = False
        self.time_ms = 0
        self.telemetry_due_ms = 0
        self.telemetry_seq = 0
        hal.set_output(False)

    # -- control step ------------------------------------------------------
    def step(self, dt_ms):
        """One control step, ``dt_ms`` after the previous one."""
        self.time_ms += dt_ms
        m = self.meas
        # measure
        raw_current = self.hal.sample(m.raw_cells, m.raw_temps)
        m.update(self.frontend, raw_current)
        # protect
        p = self.protection
        p.load(m)
        faults = p.step(dt_ms)
        self._drive_output(faults)
        # estimate
        self.soc.step(dt_ms, m.current_ma, m.pack_mv // self.n_cells)
        # report
        self.telemetry_due_ms -= dt_ms
        if self.telemetry_due_ms <= 0:
            self.telemetry_due_ms += self.telemetry_period_ms
            if self.telemetry_due_ms <= 0:  # fell behind: do not burst
                self.telemetry_due_ms = self.telemetry_period_ms
            self.send_telemetry()

    def _drive_output(self, faults):
        if faults:
            close = False
            self.state = STATE_FAULT
        else:
            close = True
            self.state = STATE_ACTIVE
        if close != self.output_closed:
            self.output_closed = close
            self.hal.set_output(close)

    def send_telemetry(self):
        m = self.meas
        link = self.link
        end = encode_telemetry(
            link.payload_buffer(), PAYLOAD_AT,
            self.telemetry_seq, self.time_ms & 0xFFFFFFFF, self.state, self.protection.faults,
            m.pack_mv, m.current_ma, self.soc.soc_cpct(), m.cells_mv, m.temps_dc,
        )
        link.send(MSG_TELEMETRY, link.next_seq(), end)
        self.telemetry_seq = (self.telemetry_seq + 1) & 0xFFFFFFFF

    # -- commands ------------------------------------------------------------
    def poll(self):
        """Handle whatever the host has sent."""
        self.link.poll(self._on_frame)

    def _on_frame(self, version, msg_type, seq, start, end):
        if version != PROTOCOL_MAJOR:
            self._nak(seq, msg_type, NAK_ERROR_INCOMPATIBLE_VERSION)
            return
        if msg_type == MSG_HELLO:
            try:
                decode_hello(self.link.frame, start, end)
            except ValueError:
                self._nak(seq, msg_type, NAK_ERROR_BAD_PAYLOAD)
                return
            self._send_info(seq)
        else:
            self._nak(seq, msg_type, NAK_ERROR_UNKNOWN_MESSAGE)

    def _nak(self, seq, msg_type, error):
        end = encode_nak(self.link.payload_buffer(), PAYLOAD_AT, msg_type, error)
        self.link.send(MSG_NAK, seq, end)

    def _send_info(self, seq):
        lim = self.limits
        end = encode_info(
            self.link.payload_buffer(), PAYLOAD_AT,
            PROTOCOL_MAJOR, PROTOCOL_MINOR, FIRMWARE_VERSION.encode(), self.board_name,
            self.unique_id, self.profile["id"], self.n_cells, self.n_temps,
            self.board["capacity_mah"], self.control_period_ms, self.telemetry_period_ms,
            lim["cell_ov_mv"][0], lim["cell_uv_mv"][0], lim["temp_max_dc"][0],
            lim["temp_min_dc"][0], lim["charge_current_max_ma"][0],
            lim["discharge_current_max_ma"][0],
        )
        self.link.send(MSG_INFO, seq, end)
