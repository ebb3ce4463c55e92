"""The hardware abstraction every board implements: what the firmware needs.

Subclass :class:`Hal` and override what the board has; the defaults describe a
board without the optional parts (one output switch, no pack-voltage sensor, no
precharge circuit, no DC-link voltage sensor, no contactor feedback, no flash
storage).
"""


class Hal:
    def sample(self, raw_cells, raw_temps):
        """Fill the raw cell and temperature ADC codes; return the current code."""
        raise NotImplementedError

    def set_output(self, closed):
        """Close or open the FET / main contactor."""
        raise NotImplementedError

    def unique_id(self):
        """The MCU's unique id, bytes."""
        raise NotImplementedError

    def set_precharge(self, on):
        """Switch the precharge relay (boards without one ignore it)."""

    def set_directions(self, charge, discharge):
        """Allow or stop each direction on a board with separate charge and
        discharge switches (back-to-back FETs); others ignore it and report the
        directions in telemetry for the charger and the load to follow."""

    def set_balancing(self, mask):
        """Switch the cells' balancing resistors: bit i of ``mask`` on bleeds cell i
        (0 = the bottom cell) through its balancing resistor, off stops it. Boards
        without balancing resistors ignore it."""

    def read_pack_code(self):
        """The pack-voltage ADC code, or -1 where the pack voltage is not measured."""
        return -1

    def read_link_mv(self):
        """The load-side (DC link) voltage in mV, or -1 where it is not measured."""
        return -1

    def output_feedback(self):
        """1 if the contactor's auxiliary contact says closed, 0 if open, -1 if unread."""
        return -1

    def frontend(self, cfg):
        """The front end that turns what :meth:`sample` gives into mV, mA and 0.1 degC
        (the board file's ``frontend`` object)."""
        from .frontend import Frontend

        return Frontend(cfg)

    def chip_trips(self):
        """The protections a battery-monitor chip (AFE) has tripped by itself, the
        second protection layer: its Safety Status A | B << 8 | C << 16 while any
        is set, else 0 (also on boards without such a chip); -1 once the chip has
        failed to answer past its driver's retry bound (the readings are stale and
        the output must open)."""
        return 0

    def bus_errors(self):
        """The sensor chip's bus error counts (STATS' ``sensor_bus_errors``: NACK,
        timeout, CRC, checksum or length, busy, recovered retries, failed cycles),
        or an empty tuple on a board without such a chip."""
        return ()

    def arm(self, trip):
        """Program a monitor chip's own protections from the firmware's trip limits
        (``Protection.trip``, in the protection table's order), a margin beyond
        them: the hardware backstop. Boards without such a chip ignore it."""

    def storage_dir(self):
        """A folder in flash that survives resets, or None."""
        return None

    def presence(self):
        """The presence button (``pins.presence``, active low; a jumper does as well):
        1 held now, 0 not, -1 on a board without one. A locked board changes a
        protection limit, goes back to open mode or to the REPL only while it is
        held, and only a board with one can be locked (admin.py)."""
        return -1
