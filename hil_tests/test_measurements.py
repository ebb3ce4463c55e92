"""The board measures the pack as the rig's meters do: its pack voltage against a
DMM's (or a supply's, or the plant's on a simulated board), its current against
what the supply or load drives. On a bench this is the calibration check that
every other test's figures rest on."""

from __future__ import annotations

from cellguard.hil import BoardLimits, HilClient, Rig

VOLTAGE_TOLERANCE = 0.02  # of the reading, beside the cells' own accuracy
CURRENT_TOLERANCE = 0.03  # of the reading ...
CURRENT_FLOOR_A = 0.05  # ... and this much (a shunt amplifier's offset)


def test_the_board_reads_the_pack_as_the_rigs_meters_do(client: HilClient, rig: Rig,
                                                        limits: BoardLimits) -> None:
    info = limits.info
    metered_v = rig.measure_pack_voltage_v()  # a rig without a meter skips here
    board = client.next_telemetry()
    allowed_v = VOLTAGE_TOLERANCE * metered_v + info.cell_count * rig.cell_accuracy_v()
    assert abs(board.pack_v - metered_v) <= allowed_v, (
        f"the board reads {board.pack_v:.3f} V, the meter {metered_v:.3f} V")
    amps = min(info.capacity_ah / 2, info.charge_current_max_a / 2)
    rig.set_current(amps)
    try:
        client.run(2.0 + rig.latency_s)
        metered_a = rig.measure_current_a()
        board = client.next_telemetry(client.mark())
    finally:
        rig.set_current(0.0)
    assert abs(metered_a - amps) <= CURRENT_TOLERANCE * amps + CURRENT_FLOOR_A, (
        f"the rig drives {metered_a:.3f} A, set to {amps:.3f} A")
    assert abs(board.current_a - metered_a) <= (CURRENT_TOLERANCE * abs(metered_a)
                                                + CURRENT_FLOOR_A), (
        f"the board reads {board.current_a:.3f} A, the rig {metered_a:.3f} A")
