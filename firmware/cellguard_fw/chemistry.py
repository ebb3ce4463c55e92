"""Chemistry profiles: open-circuit-voltage tables and default limits.

All values are integers: mV, 0.1 degC, and SoC in 0.01 % (``cpct``). OCV tables
are sampled every 5 % SoC from 0 % to 100 % and rise strictly, so they can be
inverted (OCV to SoC) by interpolation. Limits are (trip, release) pairs: the
protection trips beyond ``trip`` and releases once back past ``release``.
"""

from micropython import const

# The protocol numbers used here, as folded copies of codec.py's: the board
# interns no name for them (tests/test_firmware_build.py holds them equal).
_CHEMISTRY_LFP = const(2)
_CHEMISTRY_NMC = const(1)
_CHEMISTRY_SODIUM_ION = const(3)


OCV_STEP_CPCT = 500  # table spacing: 5 % SoC

PROFILES = {
    "nmc": {
        "id": _CHEMISTRY_NMC,
        # Graphite / NMC, e.g. 21700 cells; 0 % is the 2.5 V low-rate cut-off.
        "ocv_mv": (2500, 3300, 3430, 3500, 3550, 3590, 3625, 3655, 3685, 3715, 3750,
                   3790, 3830, 3875, 3920, 3965, 4010, 4055, 4100, 4145, 4190),
        "charge_mv": 4200,  # end-of-charge voltage a CC charger stops at
        "cell_ov_mv": (4250, 4150),
        "cell_uv_mv": (2800, 2850),
        "temp_max_dc": (600, 550),
        "temp_min_dc": (-200, -150),
        "deep_discharge_mv": (2500, 2700),
        "temp_charge_max_dc": (450, 400),
        "temp_charge_min_dc": (0, 50),
        "cell_spread_mv": (300, 200),
        # No configuration may set a threshold outside these (mV, 0.1 degC).
        "hard_cell_mv": (2500, 4300),
        "hard_temp_dc": (-300, 700),
    },
    "lfp": {
        "id": _CHEMISTRY_LFP,
        # Graphite / LiFePO4: a flat plateau between 20 % and 90 %.
        "ocv_mv": (2500, 2950, 3150, 3220, 3250, 3265, 3275, 3283, 3290, 3295, 3300,
                   3304, 3308, 3313, 3318, 3323, 3330, 3337, 3345, 3380, 3500),
        "charge_mv": 3600,
        "cell_ov_mv": (3650, 3450),
        "cell_uv_mv": (2500, 2600),
        "temp_max_dc": (600, 550),
        "temp_min_dc": (-200, -150),
        "deep_discharge_mv": (2000, 2300),
        "temp_charge_max_dc": (450, 400),
        "temp_charge_min_dc": (0, 50),
        "cell_spread_mv": (200, 100),  # a flat curve: a small spread already means much
        "hard_cell_mv": (2000, 3750),
        "hard_temp_dc": (-300, 700),
    },
    "sodium_ion": {
        "id": _CHEMISTRY_SODIUM_ION,
        # Hard carbon / layered oxide: a sloping curve from 1.5 V to 4.0 V.
        "ocv_mv": (1500, 2300, 2550, 2700, 2800, 2880, 2950, 3020, 3080, 3140, 3200,
                   3260, 3320, 3380, 3440, 3500, 3570, 3640, 3720, 3820, 3950),
        "charge_mv": 3950,
        "cell_ov_mv": (4000, 3900),
        "cell_uv_mv": (1500, 1700),
        "temp_max_dc": (600, 550),
        "temp_min_dc": (-300, -250),
        "deep_discharge_mv": (1000, 1300),
        "temp_charge_max_dc": (450, 400),
        "temp_charge_min_dc": (-100, -50),
        "cell_spread_mv": (400, 300),
        "hard_cell_mv": (1000, 4100),
        "hard_temp_dc": (-400, 700),
    },
}


def soc_from_ocv(table, mv):
    """SoC in 0.01 % for a rested cell voltage ``mv`` (clamped to 0..10000)."""
    if mv <= table[0]:
        return 0
    last = len(table) - 1
    if mv >= table[last]:
        return last * OCV_STEP_CPCT
    i = 1
    while table[i] < mv:
        i += 1
    lo = table[i - 1]
    return (i - 1) * OCV_STEP_CPCT + (mv - lo) * OCV_STEP_CPCT // (table[i] - lo)
