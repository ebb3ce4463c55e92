"""What the lifetime record needs rarely: reading it at boot, a state-of-health
snapshot (weekly), commissioning data (once) and a second-life reset (once a life).

A board would otherwise keep this code in RAM for good. ``lifetime.py`` and
``app.py`` import the module when one of them is due and :func:`release` forgets it
after, so the next collection frees it (as ``bq76952_setup`` does). The words it
writes are those of ``lifetime.py``'s layout 2 (its docstring, and docs/lifetime.md).
"""

import sys
from binascii import crc32
from struct import pack, unpack_from

from micropython import const

from . import codec_rare

_MAGIC = const(0x0046494C)  # lifetime.py's: words 0-84 (b"LIF\0")
_MAGIC_COLD = const(0x0043494C)  # words 85-154, after a copy of word 78 (b"LIC\0")
_HEADER = const(8)
_HOT = const(85)
_WORDS = const(155)
_CHG_AH = const(0)
_DSG_AH = const(3)
_CHG_WH = const(6)
_DSG_WH = const(10)
_OP_S = const(14)
_REST_S = const(16)
_MADE = const(68)  # then the date of putting into service
_IDENTITY = const(70)
_LIVES = const(78)
_HARM_TOTAL = const(51)
_HELD_MS = const(10000)  # longer than any protection's trip delay at boot
_N_SNAP = const(85)
_SNAP = const(86)
_SNAP_WORDS = const(9)
_HISTORY = const(122)
_SNAP_EVERY_S = const(604800)  # a health snapshot a week
_DEPLOYS = const(153)  # then the build's id (3 bytes of its manifest's SHA-256)
_LIFE_WORDS = const(31)  # words 0-30 carry into the history at a new life
_MAS_PER_MAH = const(3600000)
_UNIX_2020 = const(1577836800)

_MSG_COMMISSION = const(82)
_MSG_SECOND_LIFE = const(83)
_EVENT_SECOND_LIFE = const(8)
_EVENT_COMMISSIONED = const(9)
_NAK_ERROR_NOT_AUTHORISED = const(7)
_NAK_ERROR_ALREADY_SET = const(8)
_NAK_ERROR_WRONG_BOARD = const(9)
_NAK_ERROR_BAD_PAYLOAD = const(2)


def decode(data, words=None, start=0, stop=-1, magic=_MAGIC):
    """The sequence number of the record in ``data``, or -1 if it is not a whole
    valid record; with ``words``, a valid record's words are copied into
    ``words[start:stop]`` (``stop`` -1: to the end; words the record lacks, an
    earlier layout's, are 0; words beyond the range are left out)."""
    size = len(data)
    if size < _HEADER + 8:
        return -1
    m, n = unpack_from("<LL", data, 0)
    end = _HEADER + 4 * n
    if m != magic or size != end + 8:
        return -1
    if crc32(data[:end + 4]) != unpack_from("<L", data, end + 4)[0]:
        return -1
    if words is not None:
        if stop < 0:
            stop = len(words)
        for i in range(stop - start):
            words[start + i] = unpack_from("<L", data, _HEADER + 4 * i)[0] if i < n else 0
    return unpack_from("<L", data, end)[0]


def _newest(names, magic):
    """(the newest valid record's data, its slot, its sequence number) of a file
    pair; (None, -1, 0) when neither holds one."""
    best = None
    slot = -1
    seq = 0
    for i in (0, 1):
        try:
            with open(names[i], "rb") as f:
                data = f.read(_WORDS * 4 + 1024)
        except OSError:
            continue
        s = decode(data, magic=magic)
        if s > seq or (best is None and s >= 0):
            best = data
            seq = s
            slot = i
    return best, slot, seq


def _cold_names(life):
    return (life.names[0][:-1] + "2", life.names[0][:-1] + "3")


def load(life, build=b""):
    """Read the newest valid records into ``life.w``: words 0-84 from the pair
    saved every few minutes, 85-154 from the pair saved when they change. Then
    finish a second-life reset that power cut short (the history already holds
    the ended life, the counters do not yet start again: see :func:`new_life`),
    and count a deploy when ``build`` (main.py's boot record: a status byte, the
    manifest's SHA-256) is not the last boot's. Return the sequence number of the
    first pair's record (0: none found)."""
    try:
        w = life.w
        best, slot, seq = _newest(life.names, _MAGIC)
        if best is not None:
            decode(best, w, 0, _HOT)
            life.seq = seq
            life.slot = slot
            life.prev = life.held = w[_HARM_TOTAL] >> 24  # still active: the same events
            life.held_ms = _HELD_MS
        cold = _newest(_cold_names(life), _MAGIC_COLD)[0]
        if cold is not None:
            words = [0] * (_WORDS - _HOT + 1)
            decode(cold, words, magic=_MAGIC_COLD)
            for i in range(_WORDS - _HOT):
                w[_HOT + i] = words[i + 1]
            if words[0] > w[_LIVES]:
                _restart(life, words[0])
            n = w[_N_SNAP]
            if n:  # the next snapshot: a week after the last one
                life.snap_at = w[_slot(n - 1) + 1] + _SNAP_EVERY_S
        if len(build) > 3 and w[_DEPLOYS + 1] != build[1] | build[2] << 8 | build[3] << 16:
            w[_DEPLOYS] += 1  # another build than the last boot's: a deploy
            w[_DEPLOYS + 1] = build[1] | build[2] << 8 | build[3] << 16
            save_cold(life)
        return seq
    finally:
        release()


def save_cold(life):
    """Save words 85-154 (after a copy of the lives word, which says which life
    they belong to) into the file of their pair not holding the newest record."""
    names = _cold_names(life)
    if not life.names[0]:
        return
    slot, seq = _newest(names, _MAGIC_COLD)[1:]
    body = pack("<LLL", _MAGIC_COLD, _WORDS - _HOT + 1, life.w[_LIVES]) + \
        bytes(memoryview(life.w)[_HOT:]) + pack("<L", seq + 1)
    try:
        with open(names[1 - slot if slot >= 0 else 0], "wb") as f:
            f.write(body + pack("<L", crc32(body)))
    except OSError:
        life.errors += 1


def take(bms):
    """The snapshot that is due, from the estimator's health (without one: the
    capacity as configured, R0 growth and power 0, not estimated)."""
    try:
        est = bms.estimator
        if est is not None and est.runs:
            h = est.health
            if h.relearned:  # equivalent full cycles count in the relearned capacity
                bms.lifetime.cap = int(h.capacity_ah * 1000 + 0.5)
            snapshot(bms.lifetime, int(h.capacity_ah * 1000 + 0.5), h.relearned,
                     int(h.r0_growth * 1000 + 0.5), bms.soc_cpct(),
                     est.limits_ma[6] * bms.meas.pack_mv // 1000000)
        else:
            snapshot(bms.lifetime, bms.soc.capacity_mah, 0, 0, bms.soc_cpct(), 0)
    finally:
        release()


def snapshot(life, capacity_mah, relearns, growth_pm, soc, power_w):
    """Write a dated snapshot: the first stays, later ones fill a ring of three."""
    w = life.w
    n = w[_N_SNAP]
    at = _slot(n)
    vals = (life.unix, w[_OP_S], capacity_mah, relearns, growth_pm, soc, power_w,
            w[_CHG_WH], w[_DSG_WH])
    for i in range(_SNAP_WORDS):
        w[at + i] = max(0, vals[i])
    w[_N_SNAP] = n + 1
    life.snap_at = w[_OP_S] + _SNAP_EVERY_S
    save_cold(life)


def _slot(k):
    """The first word of snapshot ``k`` (0: the first, kept; then a ring of three)."""
    return _SNAP if not k else _SNAP + _SNAP_WORDS * (1 + (k - 1) % 3)


def request(bms, seq, start, end):
    """Answer COMMISSION or SECOND_LIFE (the frame's type says which)."""
    try:
        link = bms.link
        msg = link.frame[1]
        if msg == _MSG_COMMISSION:
            made, since, text, pin = codec_rare.decode_commission(link.frame, start, end)
        else:  # the text is the board's unique id: the confirmation
            text, pin = codec_rare.decode_second_life(link.frame, start, end)
        if bms.config_pin and pin != bms.config_pin:
            bms._nak(seq, msg, _NAK_ERROR_NOT_AUTHORISED, 0)
            return
        text = text.encode()
        life = bms.lifetime
        if msg == _MSG_COMMISSION:
            if len(text) > 24:
                bms._nak(seq, msg, _NAK_ERROR_BAD_PAYLOAD, 24)
                return
            if not commission(life, max(0, made - _UNIX_2020) if made else 0,
                              max(0, since - _UNIX_2020) if since else 0, text):
                bms._nak(seq, msg, _NAK_ERROR_ALREADY_SET, 0)
                return
            life.save()  # written once: a reset right after must not lose it
            bms._log(_EVENT_COMMISSIONED, 0, 0)
            bms.events.flush()
        else:
            if text != bms.unique_id:
                bms._nak(seq, msg, _NAK_ERROR_WRONG_BOARD, 0)
                return
            new_life(life)
            bms._log(_EVENT_SECOND_LIFE, life.w[_LIVES], 0)
            bms.events.flush()
        bms._ack(seq, msg)
    finally:
        release()


def commission(life, made, since, identity):
    """Write the date of manufacture and of putting into service (Unix time from
    2020, s; 0: not given) and the pack identity (bytes, up to 24; empty: not
    given), each once: False, and nothing written, if one given differs from what
    the record holds."""
    w = life.w
    ident = [0] * 8
    for i in range(min(len(identity), 24)):
        ident[i // 3] |= identity[i] << (8 * (i % 3))
    held = other = False  # the record holds an identity; it is not this one
    for i in range(8):
        if w[_IDENTITY + i]:
            held = True
        if w[_IDENTITY + i] != ident[i]:
            other = True
    if made and w[_MADE] not in (0, made) or since and w[_MADE + 1] not in (0, since) \
            or identity and held and other:
        return False
    if made:
        w[_MADE] = made
    if since:
        w[_MADE + 1] = since
    if identity:
        for i in range(8):
            w[_IDENTITY + i] = ident[i]
    life.edge = True
    return True


def new_life(life):
    """A second-life reset: words 0-30 carry into the history, this life's words
    start again from zero (the date of manufacture stays), ``lives`` counts one
    more. The history and the cleared snapshots are saved first, into both files
    of their pair, with the new life's number; then the counters, into both files
    of theirs. Power lost in between is finished at the next boot (:func:`load`):
    no record of the ended life can win, and nothing is counted twice."""
    w = life.w
    for a, units in ((_CHG_AH, (1000, _MAS_PER_MAH)), (_DSG_AH, (1000, _MAS_PER_MAH)),
                     (_CHG_WH, (1000, _MAS_PER_MAH, 1000)),
                     (_DSG_WH, (1000, _MAS_PER_MAH, 1000)), (_OP_S, (1000,))):
        k = len(units)
        c = 0
        while k:
            v = w[_HISTORY + a + k] + w[a + k] + c
            c = v // units[k - 1]
            w[_HISTORY + a + k] = v - c * units[k - 1]
            k -= 1
        w[_HISTORY + a] += w[a] + c
    for i in range(_REST_S, _LIFE_WORDS):
        w[_HISTORY + i] += w[i]
    for i in range(_HOT, _HISTORY):
        w[i] = 0
    lives = w[_LIVES] + 1
    w[_LIVES] = lives  # the cold record's copy says which life it belongs to
    save_cold(life)
    save_cold(life)
    _restart(life, lives)


def _restart(life, lives):
    """Start the counters of life ``lives`` (the history holds the ended ones)."""
    w = life.w
    made = w[_MADE]
    for i in range(_HOT):
        w[i] = 0
    w[_MADE] = made
    w[_LIVES] = lives
    life.snap_at = 3600  # the new life's first snapshot, an hour in
    life.prev = 0
    life.sd[0] = -1
    life.save()
    life.save()


def release():
    """Forget this module, so its code is garbage once nothing else holds it. Not
    under CPython (the host's tests, a simulated board): memory is not the point
    there, and the tests' flash model is this module's ``open``."""
    if sys.implementation.name != "micropython":
        return
    package = sys.modules.get("cellguard_fw")
    for name in ("life_admin", "codec_rare"):
        sys.modules.pop("cellguard_fw." + name, None)
        if package is not None and hasattr(package, name):
            delattr(package, name)
