"""Model-based state estimation: SoC by extended Kalman filter, health and power.

Not on the safety path: it runs once per estimation period (1 s by default)
with the current averaged over that period (the readings, taken at the last
control step, are compared at that step's current).

Written for a board's heap (docs/estimation.md, *Cost on a board*): every
float result is a 16-byte heap object on both ports, so a run keeps floats to
the pack filter's few dozen and does everything per cell in integers (small
ints never allocate): the cell model's tables are integers (uV, micro-ohm,
0.1 s), the cells' SoC offsets are in 0.001 %, the current limits in mA, the
balancer's heat in mK. The floats that remain are single precision on an
RP2040 and an ESP32, so the filter is kept small and well conditioned: SoC in
percent, a two-state covariance whose update keeps it positive.

The model is a cell equivalent circuit: OCV(SoC, T) + R0(SoC, T) * I + two RC
pairs (R1, tau1; R2, tau2), from a ``cell.json`` (docs/cell-model.md) or, when
the board gives none, from the chemistry's OCV table with typical resistances.
Current is in A, positive when charging; voltages in V; temperatures in degC.

- :class:`PackEkf`: the mean cell (pack voltage / cells): states SoC (%) and
  the current sensor's bias (A), with covariance; the two RC voltages are
  propagated from the current; coulomb counting is its process model.
- Per cell, its SoC as an offset from the pack's (0.001 %), tracked from how
  its reading differs from the other cells' (integers): the weakest and
  strongest cells for the power limits and balancing.
- :class:`Health`: capacity relearned from the charge counted between two
  rested, well-known SoC points; R0 growth from current steps; both persisted.
- :func:`current_limit`: the voltage-limited current over a horizon, projected
  through the RC states, derated by temperature and SoC (integers, mA).
"""

from array import array
from math import exp, sqrt

from micropython import const

from . import codec
from .balancing import Balancer
from .health import Health
from .link import PAYLOAD_AT

# The protocol numbers used here, as folded copies of codec.py's: the board
# interns no name for them (tests/test_firmware_build.py holds them equal).
# The lifetime record's words the self-discharge is kept in (lifetime.py's layout)
_LIFE_OP_S = const(14)
_LIFE_SD_LOST = const(79)  # then the SoC gained, then the rest seconds
_LIFE_RELAXED_MS = const(3600000)  # lifetime.py's _RELAXED_MS: an hour at rest
_LIFE_SD_MIN_S = const(43200)  # a rest measured over 12 h or more counts
_ESTIMATOR_COULOMB = const(0)
_ESTIMATOR_EKF = const(1)
_FAULT_OPEN_WIRE = const(0x10000)
_FAULT_PACK_VOLTAGE_MISMATCH = const(0x100000)
_FAULT_SENSOR_DISCONNECTED = const(0x40000)
_FAULT_SENSOR_RANGE = const(0x20000)
_FAULT_SENSOR_STUCK = const(0x80000)
_MSG_ESTIMATE = const(18)

# Typical resistances when the board has no cell model (SI units).
DEFAULT_R0_OHM = 0.020
DEFAULT_R1_OHM = 0.015
DEFAULT_TAU1_S = 60.0
DEFAULT_R2_OHM = 0.010
DEFAULT_TAU2_S = 600.0
TABLES = ("ocv_v", "r0_ohm", "r1_ohm", "tau1_s", "r2_ohm", "tau2_s")
# Each table's integer unit: uV, micro-ohm, 0.1 s (a tau of 1,000 s times the
# interpolation's 1024 stays a small int).
_SCALE = (1000000, 1000000, 1000000, 10, 1000000, 10)
OCV, R0, R1, TAU1, R2, TAU2 = 0, 1, 2, 3, 4, 5

_Q = const(10)  # interpolation fractions in 1/1024
_ONE = const(1024)
_DQ = const(12)  # decay factors in 1/4096
_DONE = const(4096)
_DERATE = const(256)  # derating factors in 1/256


def _dc(temp_c):
    """degC to 0.1 degC, rounded."""
    return int(temp_c * 10 + (0.5 if temp_c >= 0 else -0.5))


def _locate(axis, n, x):
    """Where ``x`` lies on ``axis[:n]`` (rising, clamped at the ends): the
    segment's index shifted 11 bits left, its fraction in 1/1024 below (one int:
    a pair would be a tuple on the heap)."""
    if x <= axis[0]:
        return 0
    if x >= axis[n - 1]:
        return (n - 2) << 11 | _ONE
    i = 0
    while axis[i + 1] < x:
        i += 1
    return i << 11 | ((x - axis[i]) << _Q) // (axis[i + 1] - axis[i])


class CellModel:
    """The cell tables, ``[temperature][soc]`` flattened, in integers (uV,
    micro-ohm, 0.1 s), interpolated bilinearly and clamped at the edges. SoC
    in 0.01 % and temperature in 0.1 degC: :meth:`at` locates a point, then
    :meth:`get` reads any table there without searching again."""

    def __init__(self, cfg):
        self.capacity_ah = float(cfg["capacity_ah"])
        self.soc = array("i", [int(x * 100 + 0.5) for x in cfg["soc_pct"]])
        self.temps = array("i", [_dc(x) for x in cfg["temps_c"]])
        ns, nt = len(self.soc), len(self.temps)
        if ns < 2:
            raise ValueError("cell model needs two SoC points or more")
        self.ns, self.nt = ns, nt
        self.tables = []
        for k in range(len(TABLES)):
            rows = cfg[TABLES[k]]
            if len(rows) != nt or any(len(r) != ns for r in rows):
                raise ValueError("cell model table %s is not %d x %d" % (TABLES[k], nt, ns))
            s = _SCALE[k]
            self.tables.append(array("i", [int(v * s + 0.5) for row in rows for v in row]))
        self._i = 0
        self._fs = 0
        self._j = 0
        self._ft = 0

    @staticmethod
    def from_profile(profile, capacity_mah):
        """A model from a chemistry profile's OCV table (mV every 5 %), with the
        typical resistances of a 3 Ah cell scaled to the capacity (a cell of ten
        times the capacity has about a tenth of the resistance: more electrode in
        parallel)."""
        ocv = [mv / 1000.0 for mv in profile["ocv_mv"]]
        n = len(ocv)
        step = 100.0 / (n - 1)
        f = 3000.0 / capacity_mah
        return CellModel({
            "capacity_ah": capacity_mah / 1000.0,
            "soc_pct": [i * step for i in range(n)],
            "temps_c": [25.0],
            "ocv_v": [ocv],
            "r0_ohm": [[DEFAULT_R0_OHM * f] * n],
            "r1_ohm": [[DEFAULT_R1_OHM * f] * n],
            "tau1_s": [[DEFAULT_TAU1_S] * n],
            "r2_ohm": [[DEFAULT_R2_OHM * f] * n],
            "tau2_s": [[DEFAULT_TAU2_S] * n],
        })

    def at(self, soc_cpct, temp_dc):
        v = _locate(self.soc, self.ns, soc_cpct)
        self._i, self._fs = v >> 11, v & 2047
        if self.nt > 1:
            v = _locate(self.temps, self.nt, temp_dc)
            self._j, self._ft = v >> 11, v & 2047

    def get(self, key):
        """Table ``key`` (OCV, R0, ...) at the located point, in its integer unit."""
        return self.read(self.tables[key])

    def read(self, t):
        """Any table laid out as the model's (:meth:`decays`) at the located point."""
        b = self._j * self.ns + self._i
        fs = self._fs
        a = t[b] + ((t[b + 1] - t[b]) * fs >> _Q)
        if self.nt == 1:
            return a
        b += self.ns
        c = t[b] + ((t[b + 1] - t[b]) * fs >> _Q)
        return a + ((c - a) * self._ft >> _Q)

    def slope(self):
        """dOCV/dSoC at the located point, uV per %: the segment's slope."""
        t = self.tables[OCV]
        i = self._i
        ds = self.soc[i + 1] - self.soc[i]
        b = self._j * self.ns + i
        a = (t[b + 1] - t[b]) * 100 // ds
        if self.nt == 1:
            return a
        b += self.ns
        c = (t[b + 1] - t[b]) * 100 // ds
        return a + ((c - a) * self._ft >> _Q)

    def soc_from_ocv(self, uv, temp_dc):
        """The SoC (0.01 %) whose OCV is ``uv`` (the table rises strictly)."""
        lo, hi = 0, 10000
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            self.at(mid, temp_dc)
            if self.get(OCV) < uv:
                lo = mid
            else:
                hi = mid
        return lo if uv - self.get(OCV) < 0 else hi

    def decays(self, key, horizon_s):
        """A table of exp(-horizon / tau) in 1/4096, laid out as ``key``'s (a
        tau table): what an RC voltage keeps after the horizon."""
        t = self.tables[key]
        return array("i", [int(_DONE * exp(-horizon_s * 10.0 / tau)) if tau > 0 else 0
                           for tau in t])


class PackEkf:
    """Extended Kalman filter on the mean cell: x = [SoC %, bias A] with the RC
    voltages v1, v2 (V) propagated; covariance ``p00, p01, p11``."""

    def __init__(self, model, soc_pct, soc_std_pct=20.0, voltage_std_v=0.005,
                 current_std_a=0.05, bias_std_a=0.05, bias_drift_a_per_h=0.01,
                 bias_max_a=1.0, nis_gate=100.0, gate_floor_v=0.1,
                 nis_soft=9.0, inflate=1.2, band_gain=4.0, band_tau_s=120.0,
                 band_slope_min=0.0002, band_floor_pct=0.0, over_error_frac=2.0,
                 count_error_frac=0.0, prior_std_pct=20.0, rest_error_share=0.25,
                 rest_bias_std_pct=2.0):
        self.model = model
        # The reported band (soc_std_pct): the innovations' mean over band_tau_s
        # (what lasts: the model's error), over the OCV slope (at least band_slope_min V per %)
        self.band_gain = band_gain
        self.band_tau_ms = band_tau_s * 1000.0
        self.band_slope_min = band_slope_min
        self.band_floor_var = band_floor_pct * band_floor_pct
        self.nu_mean = 0.0
        self._band_alpha = 0.0
        # The model's voltage error grows with the overpotential (a two-RC
        # circuit is linear; a cell is not, least of all in the diffusion knee at
        # the end of a long discharge): the measurement variance gets
        # (over_error_frac * (R0 I + v1 + v2))^2 on top, so a large innovation
        # under load is not read as a SoC error and the filter leans on the
        # counter there (docs/estimation.md).
        self.over_error_frac = over_error_frac
        # Coulomb counting's own error (the capacity, a gain error) is this
        # fraction of the SoC moved, and it adds up: the SoC's standard deviation
        # grows by it each period (not a random walk's square root).
        self.count_error_frac = count_error_frac
        self.rest_error_share = rest_error_share
        self.rest_bias_var = rest_bias_std_pct * rest_bias_std_pct
        self.rest_a = model.capacity_ah / 20.0
        self.soc = float(soc_pct)
        self.bias = 0.0
        self.v1 = 0.0
        self.v2 = 0.0
        self.p00 = soc_std_pct * soc_std_pct
        self.p01 = 0.0
        self.p11 = bias_std_a * bias_std_a
        self.r_meas = voltage_std_v * voltage_std_v
        self.current_var = current_std_a * current_std_a
        self.bias_var_per_ms = (bias_drift_a_per_h * bias_drift_a_per_h) / 3.6e6
        self.capacity_ah = model.capacity_ah
        # The bias is a sensor offset: never beyond what the sensor can be off by.
        self.bias_max_a = bias_max_a
        # Innovation gate: an update whose innovation is more than sqrt(nis_gate)
        # standard deviations out is not taken; the SoC's variance grows instead
        # (by ``inflate``, up to its prior), so a filter that is confident and
        # wrong takes the measurements again after a while.
        self.nis_gate = nis_gate
        self.gate_floor_v2 = gate_floor_v * gate_floor_v
        self.nis_soft = nis_soft
        self.inflate = inflate
        self.p_max = prior_std_pct * prior_std_pct
        # Per-step constants, recomputed only when what they depend on changes.
        self._dt_ms = -1
        self._cap = -1.0
        self._g = 0.0  # % per A over the period
        self._g2q = 0.0  # the current noise's share of the SoC variance per period
        self._qb = 0.0  # the bias's drift variance per period
        self._rc = [-1, -1, 1.0, 0.0, -1, -1, 1.0, 0.0]  # tau, R, decay, gain per RC pair
        self.moved = 0.0  # the last period's SoC change, %
        self.settled = False  # the last update's reading was within 3 sigma
        self._soc_lo = 0.0  # what the SoC's last digit could not hold (compensated sum)
        # the last update's linearisation (the cells use it): V per %, ohm, V
        self.h = 0.0
        self.r0 = 0.0
        self.over = 0.0
        self.drop = 0.0  # the R0 part of it
        # How polarised the cell may still be from before the start (V): the RC
        # voltages start at 0, but a board reset in a short rest of a drive finds
        # the cell unrelaxed. Until that has decayed (as the slow pair does) the
        # readings cannot place the SoC better than it over the OCV slope: the
        # SoC's variance is kept at least at that (StateEstimator._start).
        self.unknown_v = 0.0

    def _constants(self, dt_ms):
        if dt_ms != self._dt_ms or self.capacity_ah != self._cap:
            self._dt_ms = dt_ms
            self._cap = self.capacity_ah
            g = dt_ms / (36000.0 * self.capacity_ah)
            self._g = g
            self._g2q = g * g * self.current_var
            self._qb = self.bias_var_per_ms * dt_ms
            a = dt_ms / self.band_tau_ms
            self._band_alpha = a if a < 1.0 else 1.0
            self._rc[0] = self._rc[4] = -1

    def _pair(self, k, tau, r, dt_ms):
        """An RC pair's decay over the period and its gain (V per A), cached
        while its tau and R (integers) stay."""
        rc = self._rc
        if rc[k] != tau or rc[k + 1] != r:
            rc[k] = tau
            rc[k + 1] = r
            a = exp(-dt_ms / (tau * 100.0)) if tau > 0 else 0.0
            rc[k + 2] = a
            rc[k + 3] = r * (1.0 - a) / 1e6

    def predict(self, current_a, dt_ms, temp_dc):
        m = self.model
        m.at(int(self.soc * 100), temp_dc)
        self._constants(dt_ms)
        self._pair(0, m.get(TAU1), m.get(R1), dt_ms)
        self._pair(4, m.get(TAU2), m.get(R2), dt_ms)
        rc = self._rc
        i = current_a - self.bias
        g = self._g
        moved = self.moved = g * i
        # Compensated (Kahan): a float32 SoC of 80 % has 7 digits, and a period's
        # change on a large pack at a small current is below half of its last one
        # (10 mA on 100 Ah is 3e-6 %): summed plainly it would never count.
        c = moved - self._soc_lo
        x = self.soc + c
        self._soc_lo = (x - self.soc) - c
        self.soc = x
        self.v1 = rc[2] * self.v1 + rc[3] * i
        self.v2 = rc[6] * self.v2 + rc[7] * i
        u = self.unknown_v
        if u:  # (decayed: 0.0, and no float per period from then on)
            self.unknown_v = u * rc[6] if u > 1e-4 else 0.0
        # P = F P F^T + Q with F = [[1, -g], [0, 1]]
        p11 = self.p11
        p01 = self.p01 - g * p11
        p00 = self.p00 + self._g2q - g * (self.p01 + p01)
        if moved != 0.0 and self.count_error_frac:
            sd = sqrt(p00) + self.count_error_frac * (moved if moved > 0 else -moved)
            p00 = sd * sd
        self.p00 = p00
        self.p01 = p01
        self.p11 = p11 + self._qb

    def linearise(self, now_a, temp_dc):
        """The model at the present state and the reading's current: sets ``h``
        (V per %), ``r0`` (ohm) and ``over`` (V, the overpotential:
        R0 * I + v1 + v2). The OCV itself is read per cell (their innovations)."""
        m = self.model
        m.at(int(self.soc * 100), temp_dc)
        r0 = self.r0 = m.get(R0) / 1e6
        self.h = m.slope() / 1e6
        drop = self.drop = r0 * (now_a - self.bias)
        self.over = self.v1 + self.v2 + drop

    def update(self, y, now_a, learn_bias=True):
        """The voltage update, after :meth:`linearise`, with the innovation ``y``
        (V: the taken cells' readings less the model at each one's SoC, their
        mean; on a curved OCV the mean cell's reading is not the reading at the
        mean SoC, which the cells' own places on the curve account for);
        ``learn_bias`` False
        leaves the bias where it is. Returns False when the innovation gate
        refused the measurement."""
        h = self.h
        r0 = self.r0
        drop = self.drop
        rc = self.over - drop
        err = rc if rc > 0 else -rc
        if -self.rest_a < now_a < self.rest_a:
            err *= self.rest_error_share
            # At rest the current read is the sensor's offset, and the voltage
            # shows it through R0 only once the SoC is known: before, on a flat
            # OCV with a large R0, the offset would explain a rest reading's whole
            # mismatch and a wrong start would creep towards the truth at the
            # offset's pace. The SoC takes the rest reading first.
            if self.p00 >= self.rest_bias_var:
                r0 = 0.0
        err = (err + (drop if drop > 0 else -drop)) * self.over_error_frac
        r = self.r_meas + err * err
        p00 = self.p00
        p01 = self.p01
        p11 = self.p11
        # H = [h, -r0]
        ph0 = p00 * h - p01 * r0
        ph1 = p01 * h - p11 * r0
        s = h * ph0 - r0 * ph1 + r
        yy = y * y
        self.nu_mean += (y - self.nu_mean) * self._band_alpha
        # (Only a filter that knows its SoC can call a reading absurd: with the
        # SoC unknown the linearised S is no measure of what the OCV can be.)
        if yy > self.nis_gate * s + self.gate_floor_v2 and p00 < self.p_max * 0.25:
            # More SoC uncertainty, not correlated with the bias (so a later
            # update puts the correction into the SoC); growing a diagonal
            # element keeps P positive.
            if p00 < self.p_max:
                self.p00 = p00 * self.inflate
            self.settled = False
            return False
        self.settled = yy <= self.nis_soft * s
        if not self.settled:
            # Far out but taken: as if the measurement were noisier (Huber), so one
            # update moves the state a few standard deviations at most and the
            # next ones, relinearised, carry on; P then shrinks only a little.
            s = yy / self.nis_soft
        k0 = ph0 / s
        k1 = ph1 / s
        self.soc += k0 * y
        # P - K S K^T, the optimal gain's update. With the bias held its gain is
        # 0: a consider state (Schmidt), whose own variance is not reduced while
        # its correlation with the SoC is.
        self.p00 = p00 - k0 * ph0
        self.p01 = p01 - k0 * ph1
        if learn_bias:
            self.bias += k1 * y
            self.p11 = p11 - k1 * ph1
        u = self.unknown_v
        if u and h > 0.0:
            u = u * u / (h * h)
            if u > self.p_max:
                u = self.p_max
            if self.p00 < u:
                self.p00 = u
        if self.p01 * self.p01 >= self.p00 * self.p11:  # rounding: keep P positive
            self.p01 *= 0.99
        # A SoC past 0 or 100 % is clamped, and the bias correlated with it moves
        # with it (the clamp projected through the covariance): clamping SoC alone
        # leaves the bias holding the excess, and the filter drifts off.
        x = self.soc
        if x < 0.0 or x > 100.0:
            bound = 0.0 if x < 0.0 else 100.0
            if self.p00 > 0:
                self.bias -= self.p01 / self.p00 * (x - bound)
            self.soc = bound
        b = self.bias_max_a
        if self.bias > b:
            self.bias = b
        elif self.bias < -b:
            self.bias = -b
        return True

    @property
    def soc_std_pct(self):
        """The band reported, 1 sigma in %: the covariance's, and the model's own
        error as the innovations show it, over the OCV slope. The filter's
        covariance alone takes the model's error, which lasts, for noise that
        averages away, and reports a fraction of the real error."""
        h = self.h if self.h > self.band_slope_min else self.band_slope_min
        v = self.nu_mean / h
        v = self.p00 + self.band_floor_var + self.band_gain * v * v
        return sqrt(v) if v < self.p_max else sqrt(self.p_max)


def _median(values, n):
    """The lower median of ``values[:n]``, by counting (n is a cell count: no
    sort, no list)."""
    for k in range(n):
        x = values[k]
        below = equal = 0
        for j in range(n):
            if values[j] < x:
                below += 1
            elif values[j] == x:
                equal += 1
        if below <= (n - 1) // 2 < below + equal:
            return x
    return values[0]


def current_limit(model, soc_cpct, v1_uv, v2_uv, temp_dc, decay1, decay2, per_pct_q12,
                  limit_uv, charge):
    """The largest current (mA, magnitude) the cell takes for a horizon without
    its terminal voltage passing ``limit_uv``: the model's voltage after the
    horizon, linear in the current (OCV slope, R0 and the RC pairs' step
    response), solved for the limit. ``decay1``, ``decay2``: the horizon's
    decay tables (:meth:`CellModel.decays`); ``per_pct_q12``: the SoC the
    horizon moves per A, % in 1/4096."""
    model.at(soc_cpct, temp_dc)
    a1 = model.read(decay1)
    a2 = model.read(decay2)
    free = model.get(OCV) + (v1_uv * a1 >> _DQ) + (v2_uv * a2 >> _DQ)  # no current, uV
    slope = model.slope()
    per_amp = (model.get(R0) + (model.get(R1) * (_DONE - a1) >> _DQ)
               + (model.get(R2) * (_DONE - a2) >> _DQ)
               + ((slope >> 4) * per_pct_q12 >> 8))  # uV per A
    if per_amp <= 0:
        return 0
    room = limit_uv - free if charge else free - limit_uv
    if room <= 0:
        return 0
    if room > 10000000:
        room = 10000000
    return room * 100 // per_amp * 10


def trapezoid(x, zero_lo, full_lo, full_hi, zero_hi):
    """256 between ``full_lo`` and ``full_hi``, falling linearly to 0 at
    ``zero_lo`` and ``zero_hi`` (foxBMS-style derating; integers)."""
    if x <= zero_lo or x >= zero_hi:
        return 0
    if x < full_lo:
        return (x - zero_lo) * _DERATE // (full_lo - zero_lo)
    if x > full_hi:
        return (zero_hi - x) * _DERATE // (zero_hi - full_hi)
    return _DERATE


# Protections (codec bits) that say the cell voltages cannot be trusted: no voltage
# update while one holds (active, or its trip condition holding: pending).
VOLTS_SUSPECT = (_FAULT_OPEN_WIRE | _FAULT_SENSOR_RANGE | _FAULT_SENSOR_STUCK
                 | _FAULT_PACK_VOLTAGE_MISMATCH)
PLAUSIBLE_MARGIN_MV = 500  # a cell reading this far beyond the chemistry's hard limits
BIAS_HOLD_MS = 60000  # the bias learns again this long after the readings were suspect
# A cell whose innovation is further from the other cells' median than cells of
# one pack differ by is not taken (docs/estimation.md). The model's error is
# common to the cells and cancels in that difference; what is a cell's own, added
# up: the front end's noise band (the board's stuck_band_mv, at least
# _BAND_MIN_MV), its resistances' spread (_SPREAD_PCT of the overpotential: each
# within +/-5 %), and _OUTLIER_SIGMAS of its reading's noise (rms) and its
# offset's uncertainty. A frozen or drifting channel's error is its own.
_OUTLIER_SIGMAS = const(5)
_READ_NOISE_UV = const(2000)
_SPREAD_PCT = const(10)
_BAND_MIN_MV = const(5)
_CELL_SPREAD = 0.02  # cells' capacities differ by up to 2 %
_OFFSET_R_V2 = 8e-06  # two readings' noise (2 mV rms each), V^2
_OFFSET_VAR_MIN = 0.01  # %^2: an offset is never known better than 0.1 points
_PRIOR_STD_PCT = 20.0  # a SoC known no better than this: nothing known
_OCV_START_UV = const(10000)  # a first reading's OCV: relaxation, hysteresis, model
_UNRELAXED_MAX_V = 0.005  # a start's polarisation is taken as at most this (V)
_SLOPE_MIN_UV = const(50)  # uV per %: a flatter OCV segment is taken as this steep
_LEFT_OUT = const(0x3FFFFFFF)  # an innovation not taken
_RESEAT_RUNS = const(120)  # a cell left out this many runs in a row is set from its reading

CONTINUOUS_S = 300.0  # horizon of the "continuous" current limit
PEAK_S = (2.0, 10.0, 30.0)  # horizons of the peak limits


class StateEstimator:
    """SoC, health, current limits and balancing, once per estimation period.

    The control loop calls :meth:`sample` every step (integers only: it
    allocates nothing) and :meth:`run` when :meth:`due`. ``mode`` "ekf" is the
    model-based filter; "coulomb" keeps the coulomb counter (``soc.py``) as the
    SoC, the baseline.
    """

    def __init__(self, board, profile, storage=None, counter=None):
        cfg = board.get("cell_model")
        m = self.model = CellModel(cfg) if cfg else CellModel.from_profile(
            profile, board["capacity_mah"])
        n = self.n = board["cells"]
        self.mode = board.get("estimator", "ekf")
        if self.mode not in ("ekf", "coulomb"):
            raise ValueError("estimator must be ekf or coulomb")
        self.period_ms = board.get("estimate_period_ms", 1000)
        self.counter = counter  # the coulomb counter: the baseline and coulomb mode
        self.initial_soc_pct = board.get("initial_soc_pct")  # a stored SoC, and how well known
        self.initial_soc_std_pct = board.get("initial_soc_std_pct", 10.0)
        # A rest: below C/20 (and at least 50 mA), for the relaxation time.
        self.health = Health(m.capacity_ah,
                             None if storage is None else storage + "/health.bin",
                             rest_current_a=max(0.05, m.capacity_ah / 20.0))
        self.balancer = Balancer(n, board.get("balance_ohm", 33.0)) \
            if board.get("balancing", True) else None
        m.capacity_ah = self.health.capacity_ah  # as relearned before a reset
        # Cell voltage window for the power limits: the charger's end-of-charge
        # voltage and the under-voltage trip with a margin, uV.
        self.v_max_uv = profile["charge_mv"] * 1000
        self.v_min_uv = (profile["cell_uv_mv"][0] + 50) * 1000
        self.charge_temps = (profile["temp_charge_min_dc"][0], profile["temp_charge_max_dc"][0])
        self.discharge_temps = (profile["temp_min_dc"][0], profile["temp_max_dc"][0])
        # The horizons' decay tables and the SoC each moves per A (limits, in ints)
        self.horizons = (CONTINUOUS_S,) + PEAK_S
        self.decay1 = [m.decays(TAU1, h) for h in self.horizons]
        self.decay2 = [m.decays(TAU2, h) for h in self.horizons]
        self.per_pct = array("i", [0] * 4)
        self._per_pct_cap = -1.0
        # Plausibility (docs/estimation.md): a cell reading 0.5 V beyond the
        # chemistry's hard limits (mV), a temperature beyond them (0.1 degC), a
        # current at the sensor's rail.
        lo, hi = profile["hard_cell_mv"]
        self.cell_window_mv = (lo - PLAUSIBLE_MARGIN_MV, hi + PLAUSIBLE_MARGIN_MV)
        self.temp_window_dc = profile["hard_temp_dc"]
        fe = board.get("frontend")
        fs = fe["current_adc"]["full_scale_ma"] if fe else 0
        self.rail_ma = fs * 99 // 100  # 0: no sensor known (offline): no rail
        self.rail_a = fs / 1000.0
        # The bias is the current sensor's offset: at most 0.5 % of its range (C/20
        # where the range is unknown), unless the board gives its spec.
        self.bias_max_a = board.get("current_bias_max_ma", fs // 200 if fs
                                    else board["capacity_mah"] // 20) / 1000.0
        # the outlier test's floor, uV: the front end's noise band
        self.outlier_band_uv = max(board.get("stuck_band_mv", 0), _BAND_MIN_MV) * 1000
        self.saturated = False
        self.gated = 0  # runs whose cell voltages were not trusted
        self.hold_ms = 0  # the bias learns again once this has run out
        self.ekf = None
        # Per cell: its SoC less the pack's (0.001 %), its last innovation (uV);
        # the offsets' common variance (%^2)
        self.offset = array("i", [0] * n)
        self.nu = array("i", [0] * n)
        self.slope_uv = array("i", [0] * n)  # the OCV slope at each cell, uV per %
        self.offset_var = 0.0
        self._nu_sum = 0  # the taken cells' innovations, uV
        self.left_out = array("i", [0] * n)  # runs each cell has been left out in a row
        self.charge_ma_ms = 0  # integer sums since the last run
        self.elapsed_ms = 0
        self.runs = 0
        self._ratings = None  # the last ratings (A) and the same in mA
        self._ratings_ma = array("i", [0] * 4)
        # outputs (SI, %; the limits in mA)
        self.soc_pct = 0.0
        self.soc_std_pct = 0.0
        self.cell_soc_min_pct = 0.0
        self.cell_soc_max_pct = 0.0
        self.bias_a = 0.0
        self.temp_dc = 250
        self.limits_ma = array("i", [0] * 8)  # charge cont, 2, 10, 30 s; discharge likewise
        self.balancing = 0

    @property
    def temp_c(self):
        return self.temp_dc / 10.0

    @property
    def limits_a(self):
        """The current limits in A (a list: for the host and the tests)."""
        return [x / 1000.0 for x in self.limits_ma]

    def cell_soc_pct(self, k):
        """Cell ``k``'s SoC, %."""
        return _clamped(int(self.soc_pct * 1000) + self.offset[k])

    def sample(self, dt_ms, current_ma, mean_cell_mv):
        self.charge_ma_ms += current_ma * dt_ms
        self.elapsed_ms += dt_ms
        self.health.sample(current_ma, mean_cell_mv)
        r = self.rail_ma
        if r and (current_ma >= r or -current_ma >= r):
            self.saturated = True  # clipped: the charge counted is only a bound

    def due(self):
        return self.elapsed_ms >= self.period_ms

    def follow_rest(self, life):
        """The lifetime record's self-discharge words (79-81, docs/lifetime.md): the
        SoC from an hour into a rest (the cell has relaxed, the filter follows its
        voltage) to the rest's end; a rest measured over 12 h or more adds its SoC
        change (a rise, which is noise, apart) and its time. Only a board with an
        estimator measures it, so the code is here."""
        sd = life.sd
        w = life.w
        op = w[_LIFE_OP_S]
        soc = int(self.soc_pct * 100 + 0.5)
        if life.rest_ms >= _LIFE_RELAXED_MS:
            if sd[0] < 0:
                sd[0] = op
                sd[1] = soc
            sd[2] = op
            sd[3] = soc
        elif sd[0] >= 0:
            if sd[2] - sd[0] >= _LIFE_SD_MIN_S:
                d = sd[1] - sd[3]
                w[_LIFE_SD_LOST if d >= 0 else _LIFE_SD_LOST + 1] += abs(d)
                w[_LIFE_SD_LOST + 2] += sd[2] - sd[0]
                life.edge = True
            sd[0] = -1

    def _start(self, cells_mv, volts_ok, mean_mv, now_ma):
        """The filters at the first run, with the uncertainty their start has
        (docs/estimation.md, *Start*): the first readings' OCV (less the R0 drop;
        as well known as 10 mV over the OCV slope there, and the R0 drop again
        under load, the RC pairs' being unknown), fused with ``initial_soc_pct``
        (a stored SoC, ``initial_soc_std_pct``) where the two agree; where they
        disagree beyond three standard deviations the readings win (a stored
        SoC is stale after weeks in a drawer; the cell's voltage is now)."""
        m = self.model
        t = self.temp_dc
        stored = self.initial_soc_pct
        s_std = self.initial_soc_std_pct
        start, std = 50.0, _PRIOR_STD_PCT
        unknown = 0.0  # V: how polarised the cell may be (PackEkf.unknown_v)
        if stored is not None:
            start, std = stored, s_std
        if volts_ok:
            m.at(5000, t)
            drop = m.get(R0) * now_ma // 1000  # uV
            cpct = m.soc_from_ocv(mean_mv * 1000 - drop, t)
            m.at(cpct, t)
            slope = m.slope()
            o_std = (_OCV_START_UV + (drop if drop > 0 else -drop)) / (
                slope if slope > _SLOPE_MIN_UV else _SLOPE_MIN_UV)
            if o_std > _PRIOR_STD_PCT:
                o_std = _PRIOR_STD_PCT
            o = cpct / 100.0
            if stored is None:
                start, std = o, o_std
            else:
                v = o_std * o_std + s_std * s_std
                d = stored - o
                # The stored SoC and the reading disagree by this much in volts:
                # either the store is stale or the cell is that far from rest.
                unknown = (d if d > 0 else -d) * slope / 1e6
                if unknown > _UNRELAXED_MAX_V:
                    unknown = _UNRELAXED_MAX_V
                if d * d > 9.0 * v:
                    start, std = o, o_std
                else:
                    start = o + o_std * o_std / v * d
                    std = o_std * s_std / sqrt(v)
        ekf = self.ekf = PackEkf(m, start, soc_std_pct=std, bias_max_a=self.bias_max_a)
        ekf.unknown_v = unknown
        n = self.n
        if volts_ok and n > 1:
            base = m.soc_from_ocv(mean_mv * 1000, t)
            for k in range(n):
                self.offset[k] = (m.soc_from_ocv(cells_mv[k] * 1000, t) - base) * 10
        self.offset_var = 4.0  # a 2-point spread; widens on a flat OCV (run())
        return ekf

    def run(self, cells_mv, temps_dc, ratings_a, balance_allowed, suspect=0):
        """One estimation step: the states move with the mean current since the
        last one; the readings are compared at the last control step's current.
        ``ratings_a``: the board's sustained and peak charge and discharge
        currents (A, magnitudes); ``suspect``: the protection bits whose
        condition holds (active or pending), which say what not to trust.
        Returns the balancing mask."""
        elapsed = self.elapsed_ms
        charge = self.charge_ma_ms  # integer mA·ms: health counts it exactly
        self.charge_ma_ms = 0
        self.elapsed_ms = 0
        current_a = charge / (elapsed * 1000.0) if elapsed else 0.0
        n = self.n
        # What this period's readings are worth (docs/estimation.md).
        lo, hi = self.cell_window_mv
        volts_ok = not suspect & VOLTS_SUSPECT
        total_mv = 0
        for i in range(n):
            v = cells_mv[i]
            total_mv += v
            if v < lo or v > hi:
                volts_ok = False  # an open tap spoils two cells and the mean: none
        saturated = self.saturated
        self.saturated = False
        if saturated:
            self.hold_ms = BIAS_HOLD_MS
        elif self.hold_ms > 0:
            self.hold_ms -= elapsed
        if temps_dc:  # the sensors that read inside the chemistry's window
            lo, hi = self.temp_window_dc
            total = 0
            k = 0
            for i in range(len(temps_dc)):
                if lo <= temps_dc[i] <= hi:
                    total += temps_dc[i]
                    k += 1
            if k and (k < len(temps_dc) or not suspect & _FAULT_SENSOR_DISCONNECTED):
                self.temp_dc = total // k
        t = self.temp_dc
        m = self.model
        h = self.health
        # The charge moves the states: the period's mean current. The readings were
        # taken at the last control step, at its current: the voltage model takes
        # that one (a step inside the period would otherwise show as R0 times the
        # difference: on the LFP plateau, points of SoC). Health keeps it (mA).
        now_ma = h.last_ma if elapsed else int(current_a * 1000)
        ekf = self.ekf
        if ekf is None:
            ekf = self._start(cells_mv, volts_ok, total_mv // n, now_ma)
        ekf.predict(current_a, elapsed, t)
        self._predict_offsets(ekf)
        now_a = now_ma / 1000.0
        ekf.linearise(now_a, t)
        used = self._judge_cells(ekf, cells_mv, t) if volts_ok else 0
        if used < n:
            self.hold_ms = BIAS_HOLD_MS
            if not used:
                self.gated += 1
        if saturated:  # the period's charge is known only up to the sensor's range
            g = elapsed * self.rail_a / (36000.0 * ekf.capacity_ah)
            g *= g
            ekf.p00 += g
            self.offset_var += g
        if used:
            if not ekf.update(self._nu_sum / (used * 1e6), now_a, self.hold_ms <= 0):
                self.hold_ms = BIAS_HOLD_MS  # refused as absurd: suspect, as above
            elif used > 1 and ekf.settled:
                # (Only from a settled pack: while it moves far, the cells sit at the
                # wrong places on the curve, and their slopes would spread them.)
                self._update_offsets(ekf.h, used)
        x = ekf.soc
        if x < 0.0 or x > 100.0:  # not updated: a plain clamp, the bias held
            ekf.soc = 0.0 if x < 0.0 else 100.0
        self.bias_a = ekf.bias
        volts_ok = used == n  # health and balancing take only a clean period
        lo_k, hi_k = self._extremes()
        base = int(ekf.soc * 1000)  # the pack's SoC, 0.001 %
        self.cell_soc_min_pct = _clamped(base + self.offset[lo_k])
        self.cell_soc_max_pct = _clamped(base + self.offset[hi_k])
        if self.mode == "ekf":
            self.soc_pct = ekf.soc
            self.soc_std_pct = ekf.soc_std_pct
        else:
            self.soc_pct = self.counter.soc_cpct() / 100.0 if self.counter else ekf.soc
            self.soc_std_pct = -1.0  # coulomb counting reports no uncertainty
        # health: no R0 step and no rested point from readings not trusted
        if not volts_ok:
            h.steps = h.sum_dv_mv = h.sum_di_ma = 0
        if h.steps:
            m.at(int(ekf.soc * 100), t)
            h.update_r0(m.get(R0) / 1e6)
        # A point is taken only at the end of a rest: the OCV inversion runs then.
        if h.count(charge, elapsed) and volts_ok \
                and h.take_point(m.soc_from_ocv(total_mv * 1000 // n, t) / 100.0, ekf.bias):
            ekf.capacity_ah = h.capacity_ah
            m.capacity_ah = h.capacity_ah
        if h.save_due():  # a meaningful change, at most every 5 min (health.py)
            h.save()
        self._limits(ekf, base, t, lo_k, hi_k, ratings_a)
        if self.balancer is not None:
            self.balancing = self.balancer.step(elapsed, base, self.offset,
                                                cells_mv, balance_allowed and volts_ok)
        self.runs += 1
        return self.balancing

    def _predict_offsets(self, ekf):
        # The cells share the current; their capacities differ by up to 2 %: that
        # much of the period's SoC change is each offset's own, and it adds up
        # (a standard deviation growing with the charge, not a random walk).
        g = ekf.moved * _CELL_SPREAD
        if g != 0.0:
            sd = sqrt(self.offset_var) + (g if g > 0 else -g)
            self.offset_var = sd * sd

    def _judge_cells(self, ekf, cells_mv, t):
        """Each cell's innovation against the model at its own SoC (uV, ints),
        and against the other cells': one further off the median than cells of
        one pack differ by is left out (with two cells that disagree, both).
        Returns how many were taken; their innovations' sum is ``_nu_sum``."""
        m = self.model
        n = self.n
        nu = self.nu
        off = self.offset
        base = int(ekf.soc * 1000)
        over = int(ekf.over * 1e6)
        for k in range(n):
            c = (base + off[k]) // 10
            m.at(0 if c < 0 else (10000 if c > 10000 else c), t)
            nu[k] = cells_mv[k] * 1000 - m.get(OCV) - over
            self.slope_uv[k] = m.slope()
        # In uV, the bounds added up: the front end's band, the resistances' spread
        # (of the mean cell's overpotential), and _OUTLIER_SIGMAS of the reading
        # noise and the offset's uncertainty (the steepest cell's OCV slope times
        # its std: at the steep end of the curve the cells' readings spread the most).
        spread = over * _SPREAD_PCT // 100
        steep = 0
        for k in range(n):
            if self.slope_uv[k] > steep:
                steep = self.slope_uv[k]
        hu = float(steep)  # uV per %
        sigma = int(sqrt(_READ_NOISE_UV * _READ_NOISE_UV + hu * hu * self.offset_var))
        bound = self.outlier_band_uv + (spread if spread > 0 else -spread) \
            + _OUTLIER_SIGMAS * sigma
        mid = _median(nu, n)
        used = 0
        self._nu_sum = 0
        out = self.left_out
        for k in range(n):
            d = nu[k] - (nu[1 - k] if n == 2 else mid)
            if n > 1 and (d if d > 0 else -d) > bound:
                nu[k] = _LEFT_OUT  # left out: no update
                out[k] += 1
                if out[k] >= _RESEAT_RUNS:
                    # A lasting disagreement is the offset's, not the reading's (a
                    # frozen channel trips its protection long before): the cell is
                    # set where its reading puts it, and judged again from there.
                    c = m.soc_from_ocv(cells_mv[k] * 1000 - over, t)
                    off[k] = c * 10 - base
                    out[k] = 0
                continue
            out[k] = 0
            used += 1
            self._nu_sum += nu[k]
        return used

    def _update_offsets(self, h, used):
        """Each taken cell's offset moves by its innovation less the taken cells'
        mean (what is common is the pack filter's), over its own OCV slope, by a
        weight the cells share: the scalar Kalman filter's K·H for the offsets'
        common variance at the pack's slope. Integers per cell."""
        var = self.offset_var
        r = _OFFSET_R_V2
        hv = h * h * var
        s = hv + r
        var = var * r / s
        # A floor: the model's OCV curve is one for all cells, theirs differ a little
        self.offset_var = var if var > _OFFSET_VAR_MIN else _OFFSET_VAR_MIN
        w = int(hv * 4096 / s)  # K·H in 1/4096
        mean = self._nu_sum // used
        nu = self.nu
        off = self.offset
        slope = self.slope_uv
        for i in range(self.n):
            e = nu[i]
            if e == _LEFT_OUT:
                continue
            e = (e - mean) * 1000 // (slope[i] if slope[i] > _SLOPE_MIN_UV else _SLOPE_MIN_UV)
            e = -20000 if e < -20000 else (20000 if e > 20000 else e)  # m%
            off[i] += e * w >> _DQ
        # The pack filter follows the mean cell: the offsets are from it, and sum
        # to nothing (each moved over its own slope, they would drift together).
        total = 0
        for i in range(self.n):
            total += off[i]
        total //= self.n
        for i in range(self.n):
            off[i] -= total

    def _extremes(self):
        off = self.offset
        lo = hi = 0
        for k in range(1, self.n):
            if off[k] < off[lo]:
                lo = k
            if off[k] > off[hi]:
                hi = k
        return lo, hi

    def _limits(self, ekf, base, t, lo_k, hi_k, ratings_a):
        # Charging is limited by the fullest cell, discharging by the emptiest.
        m = self.model
        if ratings_a is not self._ratings:
            self._ratings = ratings_a
            for k in range(4):
                self._ratings_ma[k] = int(ratings_a[k] * 1000)
        if m.capacity_ah != self._per_pct_cap:
            self._per_pct_cap = m.capacity_ah
            for k in range(4):  # % per A over the horizon, in 1/4096
                self.per_pct[k] = int(4096 * 100.0 * self.horizons[k] / (3600.0 * m.capacity_ah))
        hi_m = base + self.offset[hi_k]
        lo_m = base + self.offset[lo_k]
        c_lo, c_hi = self.charge_temps
        d_lo, d_hi = self.discharge_temps
        charge_derate = trapezoid(t, c_lo, c_lo + 100, c_hi - 100, c_hi) \
            * trapezoid(hi_m, -1000, -500, 95000, 100000) >> 8
        discharge_derate = trapezoid(t, d_lo, d_lo + 100, d_hi - 100, d_hi) \
            * trapezoid(lo_m, 0, 5000, 100500, 101000) >> 8
        v1 = int(ekf.v1 * 1e6)
        v2 = int(ekf.v2 * 1e6)
        v1 = -200000 if v1 < -200000 else (200000 if v1 > 200000 else v1)
        v2 = -200000 if v2 < -200000 else (200000 if v2 > 200000 else v2)
        hi_c = hi_m // 10
        lo_c = lo_m // 10
        hi_c = 0 if hi_c < 0 else (10000 if hi_c > 10000 else hi_c)
        lo_c = 0 if lo_c < 0 else (10000 if lo_c > 10000 else lo_c)
        lim = self.limits_ma
        rat = self._ratings_ma
        for k in range(4):
            rating = rat[0] if k == 0 else rat[1]
            ma = current_limit(m, hi_c, v1, v2, t, self.decay1[k], self.decay2[k],
                               self.per_pct[k], self.v_max_uv, True)
            lim[k] = (ma if ma < rating else rating) * charge_derate >> 8
            rating = rat[2] if k == 0 else rat[3]
            ma = current_limit(m, lo_c, v1, v2, t, self.decay1[k], self.decay2[k],
                               self.per_pct[k], self.v_min_uv, False)
            lim[4 + k] = (ma if ma < rating else rating) * discharge_derate >> 8

    def send(self, link, time_ms):
        """Send an ESTIMATE frame (its code lives here, not in the control firmware)."""
        h = self.health
        lim = self.limits_ma
        std = -1 if self.soc_std_pct < 0 else min(int(self.soc_std_pct * 100 + 0.5), 32767)
        end = codec.encode_estimate(
            link.payload_buffer(), PAYLOAD_AT, time_ms & 0xFFFFFFFF,
            _ESTIMATOR_EKF if self.mode == "ekf" else _ESTIMATOR_COULOMB,
            _cpct(self.soc_pct), std, _cpct(self.cell_soc_min_pct), _cpct(self.cell_soc_max_pct),
            int(h.capacity_ah * 1000 + 0.5), min(_cpct(h.capacity_pct), 65535),
            min(_cpct(h.r0_growth * 100), 65535), int(self.bias_a * 1000),
            lim[0], lim[1], lim[2], lim[3], lim[4], lim[5], lim[6], lim[7], self.balancing,
        )
        link.send(_MSG_ESTIMATE, link.next_seq(), end)


def _clamped(milli_pct):
    """0.001 % to %, within 0..100."""
    return 0.0 if milli_pct < 0 else (100.0 if milli_pct > 100000 else milli_pct / 1000.0)


def _cpct(pct):
    """A percentage in 0.01 % (rounded, never negative)."""
    return int(pct * 100 + 0.5) if pct > 0 else 0
