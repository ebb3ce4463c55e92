"""Model-based state estimation: SoC by extended Kalman filter, health and power.

Not on the safety path: it runs once per estimation period (1 s by default)
with the current averaged over that period (the readings, taken at the last
control step, are compared at that step's current), in floats (MicroPython's floats
are single precision on an RP2040, so the filter is written to stay well
conditioned in float32: SoC in percent, Joseph-form covariance update).

The model is a cell equivalent circuit: OCV(SoC, T) + R0(SoC, T) * I + two RC
pairs (R1, tau1; R2, tau2), from a ``cell.json`` (docs/cell-model.md) or, when
the board gives none, from the chemistry's OCV table with typical resistances.
Current is in A, positive when charging; voltages in V; temperatures in degC.

- :class:`PackEkf`: the mean cell (pack voltage / cells), states SoC (%), the
  two RC voltages and the current sensor's bias (A), with covariance; coulomb
  counting is its process model.
- Per cell, a one-state filter on the cell's SoC with the RC voltages
  propagated, using the pack filter's bias-corrected current: the weakest and
  strongest cells for the power limits and balancing.
- :class:`Health`: capacity relearned from the charge counted between two
  rested, well-known SoC points; R0 growth from current steps; both persisted.
- :func:`current_limit`: the voltage-limited current over a horizon, projected
  through the RC states, derated by temperature and SoC.
"""

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


class CellModel:
    """The cell tables, ``[temperature][soc]`` flattened, interpolated bilinearly
    and clamped at the edges. :meth:`at` locates a point; the getters then read
    every table at it without searching again."""

    def __init__(self, cfg):
        self.capacity_ah = float(cfg["capacity_ah"])
        self.soc = [float(x) for x in cfg["soc_pct"]]
        self.temps = [float(x) for x in cfg["temps_c"]]
        ns, nt = len(self.soc), len(self.temps)
        self.tables = {}
        for key in TABLES:
            rows = cfg[key]
            if len(rows) != nt or any(len(r) != ns for r in rows):
                raise ValueError("cell model table %s is not %d x %d" % (key, nt, ns))
            self.tables[key] = [float(v) for row in rows for v in row]
        self._i = 0
        self._fs = 0.0
        self._j = 0
        self._ft = 0.0

    @staticmethod
    def from_profile(profile, capacity_mah):
        """A model from a chemistry profile's OCV table (mV every 5 %), with the
        typical resistances of a 3 Ah cell scaled to the capacity (a cell of ten
        times the capacity has about a tenth of the resistance: more electrode in
        parallel)."""
        ocv = [mv / 1000.0 for mv in profile["ocv_mv"]]
        n = len(ocv)
        step = 100.0 / (n - 1)
        row = [3000.0 / capacity_mah] * n
        return CellModel({
            "capacity_ah": capacity_mah / 1000.0,
            "soc_pct": [i * step for i in range(n)],
            "temps_c": [25.0],
            "ocv_v": [ocv],
            "r0_ohm": [[DEFAULT_R0_OHM * x for x in row]],
            "r1_ohm": [[DEFAULT_R1_OHM * x for x in row]],
            "tau1_s": [[DEFAULT_TAU1_S] * n],
            "r2_ohm": [[DEFAULT_R2_OHM * x for x in row]],
            "tau2_s": [[DEFAULT_TAU2_S] * n],
        })

    @staticmethod
    def _find(axis, x):
        n = len(axis)
        if n == 1 or x <= axis[0]:
            return 0, 0.0
        if x >= axis[n - 1]:
            return n - 2, 1.0
        i = 0
        while axis[i + 1] < x:
            i += 1
        return i, (x - axis[i]) / (axis[i + 1] - axis[i])

    def at(self, soc_pct, temp_c):
        self._i, self._fs = self._find(self.soc, soc_pct)
        self._j, self._ft = self._find(self.temps, temp_c)

    def get(self, key):
        t = self.tables[key]
        ns = len(self.soc)
        i, fs = self._i, self._fs
        i1 = i + 1 if ns > 1 else i
        base = self._j * ns
        a = t[base + i] + (t[base + i1] - t[base + i]) * fs
        if len(self.temps) == 1:
            return a
        base += ns
        b = t[base + i] + (t[base + i1] - t[base + i]) * fs
        return a + (b - a) * self._ft

    def ocv_slope(self):
        """dOCV/dSoC at the located point, V per %: the segment's slope."""
        t = self.tables["ocv_v"]
        ns = len(self.soc)
        i = self._i
        ds = self.soc[i + 1] - self.soc[i]
        base = self._j * ns
        a = (t[base + i + 1] - t[base + i]) / ds
        if len(self.temps) == 1:
            return a
        base += ns
        b = (t[base + i + 1] - t[base + i]) / ds
        return a + (b - a) * self._ft

    def soc_from_ocv(self, volts, temp_c):
        """The SoC (%) whose OCV is ``volts`` (the table rises strictly)."""
        lo, hi = 0.0, 100.0
        for _ in range(24):  # bisection: 100 / 2**24 % is far below any sensor
            mid = (lo + hi) * 0.5
            self.at(mid, temp_c)
            if self.get("ocv_v") < volts:
                lo = mid
            else:
                hi = mid
        return (lo + hi) * 0.5


def _rc(tau_s, dt_s):
    return exp(-dt_s / tau_s) if tau_s > 0 else 0.0


class PackEkf:
    """Extended Kalman filter on the mean cell: x = [SoC %, v1 V, v2 V, bias A]."""

    def __init__(self, model, soc_pct, soc_std_pct=20.0, voltage_std_v=0.005,
                 current_std_a=0.05, bias_std_a=0.05, bias_drift_a_per_h=0.01,
                 model_error_frac=0.5, bias_max_a=1.0, nis_gate=100.0, gate_floor_v=0.1,
                 nis_soft=9.0, inflate=1.2):
        self.model = model
        # The model's voltage error grows with the current (a two-RC circuit is
        # linear; a cell is not): the measurement variance gets
        # (model_error_frac * R0 * I)^2 on top, so a large innovation under load
        # is not read as a sensor bias or a SoC error.
        self.model_error_frac = model_error_frac
        self.x = [soc_pct, 0.0, 0.0, 0.0]
        self.p = [[0.0] * 4 for _ in range(4)]
        self.p[0][0] = soc_std_pct * soc_std_pct
        self.p[1][1] = self.p[2][2] = 0.01 * 0.01
        self.p[3][3] = bias_std_a * bias_std_a
        self.r_meas = voltage_std_v * voltage_std_v
        self.current_var = current_std_a * current_std_a
        self.bias_var_per_s = (bias_drift_a_per_h * bias_drift_a_per_h) / 3600.0
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
        self.p_max = soc_std_pct * soc_std_pct
        self._tmp = [[0.0] * 4 for _ in range(4)]
        self._a = [[0.0] * 4 for _ in range(4)]
        self._h = [0.0] * 4
        self._ph = [0.0] * 4
        self._k = [0.0] * 4

    def predict(self, current_a, dt_s, temp_c):
        m = self.model
        x = self.x
        m.at(x[0], temp_c)
        r1, r2 = m.get("r1_ohm"), m.get("r2_ohm")
        a1, a2 = _rc(m.get("tau1_s"), dt_s), _rc(m.get("tau2_s"), dt_s)
        gain = 100.0 * dt_s / (3600.0 * self.capacity_ah)  # % per A over dt
        i_eff = current_a - x[3]
        x[0] += gain * i_eff
        x[1] = a1 * x[1] + r1 * (1.0 - a1) * i_eff
        x[2] = a2 * x[2] + r2 * (1.0 - a2) * i_eff
        # P = F P F^T with F = [[1,0,0,-g],[0,a1,0,-b1],[0,0,a2,-b2],[0,0,0,1]], its
        # zeros skipped: a quarter of the float operations (each one allocates on
        # a board) of the full product.
        b1 = r1 * (1.0 - a1)
        b2 = r2 * (1.0 - a2)
        p, t = self.p, self._tmp
        for c in range(4):  # t = F P, row by row
            p3 = p[3][c]
            t[0][c] = p[0][c] - gain * p3
            t[1][c] = a1 * p[1][c] - b1 * p3
            t[2][c] = a2 * p[2][c] - b2 * p3
            t[3][c] = p3
        for r in range(4):  # P = t F^T
            tr = t[r]
            t3 = tr[3]
            p[r][0] = tr[0] - gain * t3
            p[r][1] = a1 * tr[1] - b1 * t3
            p[r][2] = a2 * tr[2] - b2 * t3
            p[r][3] = t3
        # Process noise: the current sensor's noise drives SoC and the RC states.
        q_i = self.current_var
        p[0][0] += gain * gain * q_i
        p[1][1] += b1 * b1 * q_i + 1e-8 * dt_s
        p[2][2] += b2 * b2 * q_i + 1e-8 * dt_s
        p[3][3] += self.bias_var_per_s * dt_s

    def update(self, cell_v, current_a, temp_c, learn_bias=True):
        """The voltage update; ``learn_bias`` False leaves the bias where it is.
        Returns False when the innovation gate refused the measurement."""
        m = self.model
        x = self.x
        m.at(x[0], temp_c)
        r0 = m.get("r0_ohm")
        i_eff = current_a - x[3]
        predicted = m.get("ocv_v") + x[1] + x[2] + r0 * i_eff
        h = self._h
        h[0] = m.ocv_slope()
        h[1] = h[2] = 1.0
        h[3] = -r0
        err = self.model_error_frac * r0 * current_a
        r_meas = self.r_meas + err * err
        p = self.p
        ph = self._ph
        for r in range(4):
            pr = p[r]
            ph[r] = pr[0] * h[0] + pr[1] + pr[2] - pr[3] * r0
        s = h[0] * ph[0] + ph[1] + ph[2] - r0 * ph[3] + r_meas
        innovation = cell_v - predicted
        if innovation * innovation > self.nis_gate * s + self.gate_floor_v2:
            # More SoC uncertainty, not correlated with the other states (so a later
            # update puts the correction into the SoC, not the RC voltages); adding
            # to a diagonal element keeps P positive semi-definite.
            if p[0][0] < self.p_max:
                p[0][0] *= self.inflate
            return False
        if innovation * innovation > self.nis_soft * s:
            # Far out but taken: as if the measurement were noisier (Huber), so one
            # update moves the state a few standard deviations at most and the
            # next ones, relinearised, carry on; P then shrinks only a little.
            d = innovation * innovation / self.nis_soft - s
            s += d
            r_meas += d
        k = self._k
        for r in range(4):
            k[r] = ph[r] / s
        if not learn_bias:
            k[3] = 0.0  # any gain is valid in the Joseph form below
        for r in range(4):
            x[r] += k[r] * innovation
        # Joseph form, P = (I - K H) P (I - K H)^T + K R K^T: stays symmetric and
        # positive in single precision.
        t = self._tmp
        for r in range(4):
            for c in range(4):
                t[r][c] = (1.0 if r == c else 0.0) - k[r] * h[c]
        a = self._a
        for r in range(4):
            tr = t[r]
            for c in range(4):
                a[r][c] = tr[0] * p[0][c] + tr[1] * p[1][c] + tr[2] * p[2][c] + tr[3] * p[3][c]
        for r in range(4):
            for c in range(r, 4):
                v = a[r][0] * t[c][0] + a[r][1] * t[c][1] + a[r][2] * t[c][2] \
                    + a[r][3] * t[c][3] + k[r] * k[c] * r_meas
                p[r][c] = v
                p[c][r] = v
        # A SoC past 0 or 100 % is clamped, and the states correlated with it move
        # with it (the clamp projected through the covariance): clamping SoC alone
        # leaves the bias holding the excess, and the filter drifts off.
        bound = 0.0 if x[0] < 0.0 else (100.0 if x[0] > 100.0 else x[0])
        if bound != x[0] and p[0][0] > 0:
            d = x[0] - bound
            for r in range(1, 4):
                x[r] -= p[r][0] / p[0][0] * d
            x[0] = bound
        b = self.bias_max_a
        if x[3] > b:
            x[3] = b
        elif x[3] < -b:
            x[3] = -b
        return True

    @property
    def soc_std_pct(self):
        return sqrt(max(self.p[0][0], 0.0))


class CellFilter:
    """One cell's SoC (%) with its RC voltages propagated; the pack filter's
    bias-corrected current drives it. A scalar Kalman filter on SoC, in three
    steps so the estimator can compare the cells' innovations before any
    update: :meth:`predict`, :meth:`innovation`, :meth:`update`."""

    def __init__(self, model, soc_pct, soc_std_pct=20.0, voltage_std_v=0.005,
                 current_std_a=0.05):
        self.model = model
        self.soc = soc_pct
        self.var = soc_std_pct * soc_std_pct
        self.v1 = 0.0
        self.v2 = 0.0
        self.r_meas = voltage_std_v * voltage_std_v
        self.current_var = current_std_a * current_std_a
        self.h = 0.0  # the OCV slope and innovation variance of the last innovation()
        self.s = 0.0

    def predict(self, current_a, dt_s, temp_c):
        m = self.model
        m.at(self.soc, temp_c)
        a1, a2 = _rc(m.get("tau1_s"), dt_s), _rc(m.get("tau2_s"), dt_s)
        gain = 100.0 * dt_s / (3600.0 * m.capacity_ah)
        self.soc += gain * current_a
        self.v1 = a1 * self.v1 + m.get("r1_ohm") * (1.0 - a1) * current_a
        self.v2 = a2 * self.v2 + m.get("r2_ohm") * (1.0 - a2) * current_a
        self.var += gain * gain * self.current_var

    def innovation(self, cell_v, current_a, temp_c):
        """The reading less the model's voltage (V); its variance is then ``s``."""
        m = self.model
        m.at(self.soc, temp_c)
        h = self.h = m.ocv_slope()
        self.s = h * h * self.var + self.r_meas
        return cell_v - (m.get("ocv_v") + self.v1 + self.v2 + m.get("r0_ohm") * current_a)

    def update(self, innovation):
        h = self.h
        k = self.var * h / self.s
        self.soc += k * innovation
        self.var *= 1.0 - k * h
        if self.soc < 0.0:
            self.soc = 0.0
        elif self.soc > 100.0:
            self.soc = 100.0


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


def current_limit(model, soc_pct, v1, v2, temp_c, horizon_s, volts_limit, charge):
    """The largest current (A, magnitude) the cell takes for ``horizon_s`` without
    its terminal voltage passing ``volts_limit``: the model's voltage after the
    horizon, linear in the current (OCV slope, R0 and the RC pairs' step
    response), solved for the limit."""
    model.at(soc_pct, temp_c)
    a1 = _rc(model.get("tau1_s"), horizon_s)
    a2 = _rc(model.get("tau2_s"), horizon_s)
    free = model.get("ocv_v") + v1 * a1 + v2 * a2  # the voltage with no current
    per_amp = (model.get("r0_ohm") + model.get("r1_ohm") * (1.0 - a1)
               + model.get("r2_ohm") * (1.0 - a2)
               + model.ocv_slope() * 100.0 * horizon_s / (3600.0 * model.capacity_ah))
    if per_amp <= 0:
        return 0.0
    amps = (volts_limit - free) / per_amp if charge else (free - volts_limit) / per_amp
    return amps if amps > 0 else 0.0


def trapezoid(x, zero_lo, full_lo, full_hi, zero_hi):
    """1 between ``full_lo`` and ``full_hi``, falling linearly to 0 at ``zero_lo``
    and ``zero_hi`` (foxBMS-style derating)."""
    if x <= zero_lo or x >= zero_hi:
        return 0.0
    if x < full_lo:
        return (x - zero_lo) / (full_lo - zero_lo)
    if x > full_hi:
        return (zero_hi - x) / (zero_hi - full_hi)
    return 1.0


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
# within +/-5 %), and _OUTLIER_SIGMAS of its reading's noise (rms) and its filter's
# SoC uncertainty. A frozen or drifting channel's error is its own.
_OUTLIER_SIGMAS = const(5)
_READ_NOISE_UV = const(2000)
_SPREAD_PCT = const(10)
_BAND_MIN_MV = const(5)

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
        self.model = CellModel(cfg) if cfg else CellModel.from_profile(
            profile, board["capacity_mah"])
        self.n = board["cells"]
        self.mode = board.get("estimator", "ekf")
        if self.mode not in ("ekf", "coulomb"):
            raise ValueError("estimator must be ekf or coulomb")
        self.period_ms = board.get("estimate_period_ms", 1000)
        self.counter = counter  # the coulomb counter: the baseline and coulomb mode
        self.initial_soc_pct = board.get("initial_soc_pct")
        # A rest: below C/20 (and at least 50 mA), for the relaxation time.
        self.health = Health(self.model.capacity_ah,
                             None if storage is None else storage + "/health.bin",
                             rest_current_a=max(0.05, self.model.capacity_ah / 20.0))
        self.balancer = Balancer(self.n, board.get("balance_ohm", 33.0)) \
            if board.get("balancing", True) else None
        self.model.capacity_ah = self.health.capacity_ah  # as relearned before a reset
        # Cell voltage window for the power limits: the charger's end-of-charge
        # voltage and the under-voltage trip with a margin, V.
        self.v_max = profile["charge_mv"] / 1000.0
        self.v_min = (profile["cell_uv_mv"][0] + 50) / 1000.0
        self.charge_temps = (profile["temp_charge_min_dc"][0] / 10.0,
                             profile["temp_charge_max_dc"][0] / 10.0)
        self.discharge_temps = (profile["temp_min_dc"][0] / 10.0,
                                profile["temp_max_dc"][0] / 10.0)
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
        # the outlier test's floor, V: the front end's noise band
        self.outlier_band_v = max(board.get("stuck_band_mv", 0), _BAND_MIN_MV) / 1000.0
        self.saturated = False
        self.gated = 0  # runs whose cell voltages were not trusted
        self.hold_ms = 0  # the bias learns again once this has run out
        self.ekf = None
        self.cells = []  # one CellFilter per cell, from the first run
        self._nu = []  # their innovations (V), from the first run
        self.charge_ma_ms = 0  # integer sums since the last run
        self.elapsed_ms = 0
        self.runs = 0
        # outputs (SI, %)
        self.soc_pct = 0.0
        self.soc_std_pct = 0.0
        self.cell_soc_min_pct = 0.0
        self.cell_soc_max_pct = 0.0
        self.bias_a = 0.0
        self.temp_c = 25.0
        self.limits_a = [0.0] * 8  # charge cont, 2, 10, 30 s; discharge cont, 2, 10, 30 s
        self.balancing = 0

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

    def run(self, cells_mv, temps_dc, ratings_a, balance_allowed, suspect=0):
        """One estimation step: the states move with the mean current since the
        last one; the readings are compared at the last control step's current.
        ``ratings_a``: the board's sustained and peak charge and discharge
        currents (A, magnitudes); ``suspect``: the protection bits whose
        condition holds (active or pending), which say what not to trust.
        Returns the balancing mask."""
        elapsed = self.elapsed_ms
        dt_s = elapsed / 1000.0
        charge = self.charge_ma_ms  # integer mA·ms: health counts it exactly
        current_a = charge / elapsed / 1000.0 if elapsed else 0.0
        self.charge_ma_ms = 0
        self.elapsed_ms = 0
        n = self.n
        # What this period's readings are worth (docs/estimation.md).
        lo, hi = self.cell_window_mv
        volts_ok = not suspect & VOLTS_SUSPECT
        for i in range(n):
            if cells_mv[i] < lo or cells_mv[i] > hi:
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
                self.temp_c = total / k / 10.0
        volts = [mv / 1000.0 for mv in cells_mv]
        mean_v = sum(volts) / n
        t = self.temp_c
        m = self.model
        ekf = self.ekf
        if ekf is None:
            start = self.initial_soc_pct
            guess = start is None and volts_ok  # the readings give the start
            if start is None:
                start = m.soc_from_ocv(mean_v, t) if volts_ok else 50.0
            ekf = self.ekf = PackEkf(m, start, bias_max_a=self.bias_max_a)
            self.cells = [CellFilter(m, m.soc_from_ocv(v, t) if guess else start)
                          for v in volts]
            self._nu = [0.0] * n
        # The charge moves the states: the period's mean current. The readings were
        # taken at the last control step, at its current: the voltage model takes
        # that one (a step inside the period would otherwise show as R0 times the
        # difference: on the LFP plateau, points of SoC). Health keeps it (mA).
        now_a = self.health.last_ma / 1000.0 if elapsed else current_a
        ekf.predict(current_a, dt_s, t)
        cells = self.cells
        nu = self._nu
        i_true = current_a - ekf.x[3]
        i_now = now_a - ekf.x[3]
        for k in range(n):
            cells[k].predict(i_true, dt_s, t)
            if volts_ok:
                nu[k] = cells[k].innovation(volts[k], i_now, t)
        # Each cell's reading against its model, and against the other cells': one
        # further off the median than cells differ by is left out (and with two
        # cells that disagree, both). In V, the bounds added up: the front end's
        # band, the resistances' spread (of the mean cell's overpotential), and
        # _OUTLIER_SIGMAS of the reading noise and the cell's own SoC uncertainty.
        used = 0
        total = 0.0
        if volts_ok:
            mid = _median(nu, n)
            x = ekf.x
            m.at(x[0], t)
            spread = (m.get("r0_ohm") * i_now + x[1] + x[2]) * (_SPREAD_PCT / 100.0)
            bound = self.outlier_band_v + (spread if spread > 0 else -spread)
            noise = _READ_NOISE_UV / 1e6
            noise *= noise
            for k in range(n):
                c = cells[k]
                d = nu[k] - (nu[1 - k] if n == 2 else mid)
                # c.s less c.r_meas: H^2 P, the cell's own SoC uncertainty in V^2
                if n > 1 and (d if d > 0 else -d) > bound + _OUTLIER_SIGMAS * sqrt(
                        c.s - c.r_meas + noise):
                    continue
                c.update(nu[k])
                used += 1
                total += volts[k]
        if used < n:
            self.hold_ms = BIAS_HOLD_MS
            if not used:
                self.gated += 1
            for k in range(n):  # counted past an end with nothing measured
                c = cells[k]
                c.soc = 0.0 if c.soc < 0.0 else (100.0 if c.soc > 100.0 else c.soc)
        if saturated:  # the period's charge is known only up to the sensor's range
            g = 100.0 * dt_s * self.rail_a / (3600.0 * ekf.capacity_ah)
            g *= g
            ekf.p[0][0] += g
            for k in range(n):
                cells[k].var += g
        if used and not ekf.update(total / used, now_a, t, self.hold_ms <= 0):
            self.hold_ms = BIAS_HOLD_MS  # refused as absurd: suspect, as above
        x = ekf.x
        if x[0] < 0.0 or x[0] > 100.0:  # not updated: a plain clamp, the bias held
            x[0] = 0.0 if x[0] < 0.0 else 100.0
        self.bias_a = ekf.x[3]
        volts_ok = used == n  # health and balancing take only a clean period
        socs = [c.soc for c in cells]
        self.cell_soc_min_pct = min(socs)
        self.cell_soc_max_pct = max(socs)
        if self.mode == "ekf":
            self.soc_pct = ekf.x[0]
            self.soc_std_pct = ekf.soc_std_pct
        else:
            self.soc_pct = self.counter.soc_cpct() / 100.0 if self.counter else ekf.x[0]
            self.soc_std_pct = -1.0  # coulomb counting reports no uncertainty
        # health: no R0 step and no rested point from readings not trusted
        h = self.health
        if not volts_ok:
            h.steps = h.sum_dv_mv = h.sum_di_ma = 0
        m.at(ekf.x[0], t)
        h.update_r0(m.get("r0_ohm"))
        # A point is taken only at the end of a rest: the OCV inversion runs then.
        if h.count(charge, elapsed) and volts_ok \
                and h.take_point(m.soc_from_ocv(mean_v, t), ekf.x[3]):
            ekf.capacity_ah = h.capacity_ah
            m.capacity_ah = h.capacity_ah  # the cell filters count with it
        if h.save_due():  # a meaningful change, at most every 5 min (health.py)
            h.save()
        self._limits(t, socs, ratings_a)
        if self.balancer is not None:
            self.balancing = self.balancer.step(dt_s, socs, volts,
                                                balance_allowed and volts_ok)
        self.runs += 1
        return self.balancing

    def _limits(self, t, socs, ratings_a):
        # Charging is limited by the fullest cell, discharging by the emptiest.
        hi = socs.index(max(socs))
        lo = socs.index(min(socs))
        ch, dis = self.cells[hi], self.cells[lo]
        m = self.model
        c_lo, c_hi = self.charge_temps
        d_lo, d_hi = self.discharge_temps
        charge_derate = trapezoid(t, c_lo, c_lo + 10.0, c_hi - 10.0, c_hi) \
            * trapezoid(ch.soc, -1.0, -0.5, 95.0, 100.0)
        discharge_derate = trapezoid(t, d_lo, d_lo + 10.0, d_hi - 10.0, d_hi) \
            * trapezoid(dis.soc, 0.0, 5.0, 100.5, 101.0)
        lim = self.limits_a
        for k in range(4):
            horizon = CONTINUOUS_S if k == 0 else PEAK_S[k - 1]
            rating = ratings_a[0] if k == 0 else ratings_a[1]
            amps = current_limit(m, ch.soc, ch.v1, ch.v2, t, horizon, self.v_max, True)
            lim[k] = min(amps, rating) * charge_derate
            rating = ratings_a[2] if k == 0 else ratings_a[3]
            amps = current_limit(m, dis.soc, dis.v1, dis.v2, t, horizon, self.v_min, False)
            lim[4 + k] = min(amps, rating) * discharge_derate

    def send(self, link, time_ms):
        """Send an ESTIMATE frame (its code lives here, not in the control firmware)."""
        h = self.health
        lim = self.limits_a
        std = -1 if self.soc_std_pct < 0 else min(int(self.soc_std_pct * 100 + 0.5), 32767)
        end = codec.encode_estimate(
            link.payload_buffer(), PAYLOAD_AT, time_ms & 0xFFFFFFFF,
            _ESTIMATOR_EKF if self.mode == "ekf" else _ESTIMATOR_COULOMB,
            _cpct(self.soc_pct), std, _cpct(self.cell_soc_min_pct), _cpct(self.cell_soc_max_pct),
            int(h.capacity_ah * 1000 + 0.5), min(_cpct(h.capacity_pct), 65535),
            min(_cpct(h.r0_growth * 100), 65535), int(self.bias_a * 1000),
            _ma(lim[0]), _ma(lim[1]), _ma(lim[2]), _ma(lim[3]),
            _ma(lim[4]), _ma(lim[5]), _ma(lim[6]), _ma(lim[7]), self.balancing,
        )
        link.send(_MSG_ESTIMATE, link.next_seq(), end)


def _cpct(pct):
    """A percentage in 0.01 % (rounded, never negative)."""
    return int(pct * 100 + 0.5) if pct > 0 else 0


def _ma(amps):
    return int(amps * 1000)
