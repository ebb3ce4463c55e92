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

    def storage_dir(self):
        """A folder in flash that survives resets, or None."""
        return None
