"""The requests that change the board, and who may make them (docs/security.md).

The writes (TIME_SYNC, RESET, ENTER_REPL, SET_CONFIG, CLEAR_FAULTS; COMMISSION and
SECOND_LIFE are life_admin's) and the key that guards them: nonces and MACs.

Reads are open to anyone with the port. A board with a key (*locked*) takes a
write (``_WRITES``) only inside AUTH: the host asks GET_NONCE
for a single-use nonce, then sends the write with
``HMAC-SHA256(key, AUTH_DOMAIN | unique id | nonce | type | payload)``. The board
checks the MAC in constant time, refuses a stale nonce (used, expired, replaced by
a newer one or by a HELLO, or from before a reset), and after ``_FREE_FAILURES``
refusals in a row hears no AUTH for a doubling wait. A board without a key is in
*open* mode: it takes every write as it comes, and SET_KEY alone locks it.

Writes are rare, so this code is on the heap only meanwhile: ``app.py`` imports
the module for a write, GET_NONCE, AUTH or SET_KEY and :func:`release` forgets it
after, as ``life_admin`` does. The key stays on flash (``key.bin``: its id, then 32
bytes; ``app._key_id`` reads the id at boot); RAM holds only the id.
"""

import os
import sys
from hashlib import sha256
from random import getrandbits
from struct import pack, pack_into, unpack_from

from micropython import const

from . import codec, codec_rare
from .link import PAYLOAD_AT

_KEY_BYTES = const(32)
_NONCE_BYTES = const(16)
_NONCE_VALID_MS = const(30000)  # board time: also at 20x a host's round trip
_FREE_FAILURES = const(3)  # refusals in a row before the waits start
_LONGEST_WAIT_MS = const(300000)
_UNIX_2020 = const(1577836800)
_BOOTS = const(28)  # lifetime.py's word: the nonce differs at every boot

_MSG_TIME_SYNC = const(0x03)
_MSG_RESET = const(0x04)
_MSG_ENTER_REPL = const(0x05)
_MSG_SET_CONFIG = const(0x21)
_MSG_CLEAR_FAULTS = const(0x32)
_MSG_GET_NONCE = const(0x60)
_MSG_NONCE = const(0x61)
_MSG_AUTH = const(0x62)
_MSG_SET_KEY = const(0x63)
_MSG_GET_AUDIT = const(0x64)
_MSG_AUDIT = const(0x65)
_MSG_COMMISSION = const(0x52)
_MSG_SECOND_LIFE = const(0x53)
_NAK_ERROR_AUTH_REQUIRED = const(10)
_NAK_ERROR_BAD_MAC = const(11)
_NAK_ERROR_STALE_NONCE = const(12)
_NAK_ERROR_RATE_LIMITED = const(13)
_NAK_ERROR_WRONG_KEY = const(15)
_NAK_ERROR_BAD_PAYLOAD = const(2)
_NAK_ERROR_NOT_AUTHORISED = const(7)
_NAK_ERROR_PRESENCE_REQUIRED = const(14)
_CONFIG_TELEMETRY_PERIOD_MS = const(100)  # the first key that is not a protection's
_EVENT_CONFIG = const(5)
_EVENT_RESET = const(7)
_EVENT_KEY_CHANGED = const(10)
_EVENT_AUTH_REFUSED = const(11)

DOMAIN = b"cellguard-auth-1"

# Bms.auth, a list once the first GET_NONCE came: the nonce given out (None: none
# valid), the board time (ms, Bms.clock) it expires, refusals in a row, the board
# time before which no AUTH is heard, nonces given out this boot, the run of records
# the change log counts in RAM ([(type, key id, reason, config key), count, index,
# last value] or None), and what app.py answers itself meanwhile.
_NONCE = const(0)
_EXPIRES = const(1)
_FAILURES = const(2)
_QUIET_UNTIL = const(3)
_GIVEN = const(4)
_RUN = const(5)  # identical refusals after the change log's last record, not yet on flash
_FAST_TYPE = const(6)  # app.py answers this request itself while the run lasts (0: none)
_FAST_COUNT = const(7)  # ... and counts it here
_FAST_LAST = const(8)  # the last time a clock set of the run set (app._on_time_sync)

# The change log (docs/security.md): audit.bin, records of codec's AuditRecord, each
# chained to the one before by the first bytes of its SHA-256.
_RECORD = const(32)
_CHAIN = const(8)
_KEPT = const(128)  # records kept; the file holds up to twice as many before compaction
_PAGE = const(7)
# The requests that change the board (messages.WRITES)
_WRITES = bytes((_MSG_TIME_SYNC, _MSG_RESET, _MSG_ENTER_REPL, _MSG_SET_CONFIG,
                 _MSG_CLEAR_FAULTS, _MSG_COMMISSION, _MSG_SECOND_LIFE, _MSG_SET_KEY))


def _load(path):
    """``key.bin``'s bytes (id, key), or None; ``key.new`` if a change was cut short
    between writing it and renaming it over."""
    for name in (path, path[:-3] + "new"):
        try:
            with open(name, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if len(data) == 1 + _KEY_BYTES:
            if name != path:
                try:
                    os.rename(name, path)
                except OSError:
                    pass
            return data
    return None


def _store(path, key_id, key):
    """Write the key (key_id 0: remove it) power-loss safe: beside, then renamed over."""
    if not key_id:
        for name in (path, path[:-3] + "new"):
            try:
                os.remove(name)
            except OSError:
                pass
        return
    new = path[:-3] + "new"
    with open(new, "wb") as f:
        f.write(bytes((key_id,)) + key)
    try:
        os.rename(new, path)
    except OSError:  # FAT cannot rename over a file
        os.remove(path)
        os.rename(new, path)


def mac(key, unique_id, nonce, msg_type, payload):
    """HMAC-SHA256 (RFC 2104) of one write, under ``key`` (32 bytes)."""
    pad = bytearray(64)
    pad[:len(key)] = key
    for i in range(64):
        pad[i] ^= 0x36
    inner = sha256(bytes(pad))
    for part in (DOMAIN, unique_id, nonce, bytes((msg_type,)), payload):
        inner.update(part)
    for i in range(64):
        pad[i] ^= 0x36 ^ 0x5C
    outer = sha256(bytes(pad))
    outer.update(inner.digest())
    return outer.digest()


def same(a, b):
    """Whether two byte strings are equal, in time that depends on their length
    only, never on where the first differing byte is (a MAC must not leak how much
    of a guess was right)."""
    diff = len(a) ^ len(b)
    n = min(len(a), len(b))
    for i in range(n):
        diff |= a[i] ^ b[i]
    return diff == 0


def request(bms, seq, start, end):
    """Answer a write, GET_NONCE, AUTH, SET_KEY or GET_AUDIT (the frame's type says
    which). Every write, taken or refused, goes into the change log."""
    try:
        msg = bms.link.frame[1]
        if msg == _MSG_AUTH:
            _check(bms, seq, start, end)
        elif msg == _MSG_GET_NONCE:
            codec.decode_empty(bms.link.frame, start, end)
            _give_nonce(bms, seq)
        elif msg == _MSG_GET_AUDIT:
            _send_audit(bms, seq, start, end)
        elif bms.key_id and msg != _MSG_SECOND_LIFE:  # locked: a write comes inside AUTH
            bms._nak(seq, msg, _NAK_ERROR_AUTH_REQUIRED, bms.key_id)
            _log_write(bms, msg, 0, _NAK_ERROR_AUTH_REQUIRED, 0, 0, 0)
        elif bms.key_id and _absent(bms, seq, msg):
            # a new owner's SECOND_LIFE needs the presence button, not the old owner's
            # key (docs/security.md, "Second life")
            _log_write(bms, msg, 0, _NAK_ERROR_PRESENCE_REQUIRED, 0, 0, 0)
        else:
            _logged(bms, seq, 0, start, end)
    finally:
        release()


def _logged(bms, seq, key_id, start, end):
    """Carry out the write in link.frame[start:end] and log it, taken or refused."""
    frame = bms.link.frame
    msg = frame[1]
    ckey = new = 0
    if msg == _MSG_SET_CONFIG:
        try:
            ckey, new, _ = codec_rare.decode_set_config(frame, start, end)
        except ValueError:
            _log_write(bms, msg, key_id, _NAK_ERROR_BAD_PAYLOAD, 0, 0, 0)
            raise
    old = _value(bms, msg, ckey)
    naks = bms.naks_sent
    try:
        _write(bms, seq, start, end)
    except ValueError:
        _log_write(bms, msg, key_id, _NAK_ERROR_BAD_PAYLOAD, ckey, old, 0)
        raise
    if msg == _MSG_SECOND_LIFE and not key_id and bms.key_id and bms.naks_sent == naks:
        # a new owner's (the presence button held, no key): the old owner's key goes
        # with the old life; the board is open for the new owner's deploy and key
        old = bms.key_id
        _store(bms.key_path, 0, b"")
        bms.key_id = 0
        bms._log(_EVENT_KEY_CHANGED, 0, 0)
        bms.events.flush()
    elif msg != _MSG_SET_CONFIG:
        new = _value(bms, msg, ckey)
    _log_write(bms, msg, key_id, bms.last_nak if bms.naks_sent != naks else 0, ckey, old,
               new)


def _value(bms, msg, ckey):
    """What a write changes, as the change log records it (AuditRecord's old, new)."""
    if msg == _MSG_SET_CONFIG:
        try:
            return bms.config.get(ckey)
        except KeyError:
            return 0
    if msg == _MSG_TIME_SYNC:
        return bms.unix_base + _UNIX_2020 + bms.time_ms // 1000 if bms.unix_base else 0
    if msg == _MSG_CLEAR_FAULTS:
        return bms.latched
    if msg == _MSG_SET_KEY:
        return bms.key_id
    return 0


def _log_write(bms, msg, key_id, result, ckey, old, new):
    """Append a record of one write to the change log. A refusal like the one before
    (type, key, reason), or a clock set after a clock set, only counts in RAM: a flood
    costs one record (each append can cost a flash erase), whose count and last value
    reach flash with the next record or the next read of the log."""
    path = bms.key_path
    if path is None:  # a board without flash keeps no log
        return
    st = _state(bms)
    run = st[_RUN]
    if run and run[0] == (msg, key_id, result, ckey):  # a refusal, or a clock set, again
        run[1] += 1
        run[3] = new
        return
    _close_run(bms)
    path = path[:-7] + "audit.bin"
    index, previous = _tail(path, bms.unique_id)
    rec = bytearray(_RECORD)
    unix = _value(bms, _MSG_TIME_SYNC, 0)
    pack_into("<LLBBBBllL", rec, 0, index, unix, key_id, msg, result, ckey, _i32(old),
              _i32(new), 1)
    rec[_RECORD - _CHAIN:] = previous
    try:
        with open(path, "ab") as f:
            f.write(rec)
    except OSError:
        return  # a full or failing flash must not stop the board answering
    if result:  # a host may send these in a stream
        st[_RUN] = [(msg, key_id, result, ckey), 1, index, new]
        if result == _NAK_ERROR_AUTH_REQUIRED:  # app.py answers the same again, counted
            st[_FAST_TYPE] = msg
    elif msg == _MSG_TIME_SYNC and not key_id:  # app.py answers the next ones, counted
        st[_RUN] = [(msg, 0, 0, 0), 1, index, new]
        st[_FAST_TYPE] = msg
        st[_FAST_LAST] = new
    if index >= 2 * _KEPT and index % _KEPT == 0:
        _compact(path, _KEPT)


def _i32(x):
    """``x`` as the record's i32 holds it (a Unix time past 2038 wraps, as in the event
    log): struct refuses a larger number under CPython."""
    return ((x + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def _close_run(bms):
    """Write the count and last value of a run (refusals, clock sets) into its record,
    the log's last."""
    st = bms.auth
    if st is None or not st[_RUN]:
        return
    run = st[_RUN]
    st[_RUN] = None
    if st[_FAST_TYPE]:  # the same request again, answered and counted by app.py
        run[1] += st[_FAST_COUNT]
        if run[0][0] == _MSG_TIME_SYNC:
            run[3] = st[_FAST_LAST]
        st[_FAST_TYPE] = st[_FAST_COUNT] = 0
    if run[1] == 1 or bms.key_path is None:
        return
    path = bms.key_path[:-7] + "audit.bin"
    try:
        size = os.stat(path)[6]
        with open(path, "r+b") as f:  # the last record: nothing is chained on it yet
            f.seek(size - _RECORD)
            rec = bytearray(f.read(_RECORD))
            if unpack_from("<L", rec, 0)[0] != run[2]:
                return
            pack_into("<lL", rec, 16, _i32(run[3]), run[1])  # the last value, the count
            f.seek(size - _RECORD)
            f.write(rec)
    except OSError:
        pass


def _tail(path, unique_id):
    """(the next record's index, the chain bytes it carries) from the log's last record."""
    try:
        size = os.stat(path)[6]
        if size % _RECORD:  # a record torn by a power loss: the log goes on without it
            _compact(path, size // _RECORD)
            size -= size % _RECORD
        if size < _RECORD:
            raise OSError
        with open(path, "rb") as f:
            f.seek(size - _RECORD)
            last = f.read(_RECORD)
        if len(last) == _RECORD:
            return unpack_from("<L", last, 0)[0] + 1, sha256(last).digest()[:_CHAIN]
    except OSError:
        pass
    return 0, sha256(unique_id).digest()[:_CHAIN]


def _compact(path, keep):
    """Keep the newest ``keep`` whole records: written beside, then renamed over."""
    new = path[:-3] + "new"
    try:
        with open(path, "rb") as f, open(new, "wb") as g:
            size = f.seek(0, 2)
            f.seek(size - size % _RECORD - keep * _RECORD)
            g.write(f.read(keep * _RECORD))
        try:
            os.rename(new, path)
        except OSError:  # FAT cannot rename over a file
            os.remove(path)
            os.rename(new, path)
    except OSError:
        pass


def _send_audit(bms, seq, start, end):
    (first,) = codec_rare.decode_get_audit(bms.link.frame, start, end)
    _close_run(bms)
    total = oldest = 0
    page = b""
    if bms.key_path is not None:
        path = bms.key_path[:-7] + "audit.bin"
        total, _ = _tail(path, bms.unique_id)
        try:
            with open(path, "rb") as f:
                head = f.read(4)
                if len(head) == 4:
                    oldest = unpack_from("<L", head, 0)[0]
                at = max(first, oldest)
                if at < total:
                    f.seek((at - oldest) * _RECORD)
                    page = f.read(min(total - at, _PAGE) * _RECORD)
        except OSError:
            pass
    link = bms.link
    end = codec_rare.encode_audit(link.payload_buffer(), PAYLOAD_AT, total, oldest, page)
    link.send(_MSG_AUDIT, seq, end)


def _write(bms, seq, start, end):
    """The request in link.frame[start:end]: a write (alone on an open board, or
    checked inside AUTH), GET_NONCE or SET_KEY. ValueError: its payload is bad."""
    frame = bms.link.frame
    msg = frame[1]
    if msg == _MSG_SET_CONFIG:
        key, value, pin = codec_rare.decode_set_config(frame, start, end)
        if bms.config_pin and pin != bms.config_pin:
            bms._nak(seq, msg, _NAK_ERROR_NOT_AUTHORISED, 0)
            return
        if key < _CONFIG_TELEMETRY_PERIOD_MS and _absent(bms, seq, msg):
            return
        cfg = bms.config
        error, limit = cfg.check(key, value)
        if error:
            bms._nak(seq, msg, error, limit)
            return
        if cfg.get(key) != value:
            cfg.set(key, value)
            bms._log(_EVENT_CONFIG, key, value)
            bms.lifetime.config_changed()
        bms._send_config_value(seq, key)
    elif msg == _MSG_TIME_SYNC:
        bms._on_time_sync(seq, start, end)
    elif msg == _MSG_SET_KEY:
        key_id, key = codec_rare.decode_set_key(frame, start, end)
        if not bms.key_id and bms.hal.presence() < 0:  # no button: it could not be unlocked
            bms._nak(seq, msg, _NAK_ERROR_PRESENCE_REQUIRED, -1)
        elif key_id or not _absent(bms, seq, msg):  # unlocking needs the button
            _set_key(bms, seq, key_id, key)
    elif msg == _MSG_CLEAR_FAULTS:
        codec.decode_empty(frame, start, end)
        bms._ack(seq, msg)
        bms.clear_faults()
    elif msg == _MSG_COMMISSION or msg == _MSG_SECOND_LIFE:
        from . import life_admin

        life_admin.request(bms, seq, start, end)
    else:  # RESET, ENTER_REPL: no payload
        codec.decode_empty(frame, start, end)
        if msg == _MSG_RESET:
            bms._log(_EVENT_RESET, 0, 0)
            bms.events.flush()  # nothing pending may be lost to the reset
            bms._ack(seq, msg)
            bms.reset_requested = True  # the main loop resets once the ACK is out
        elif msg != _MSG_ENTER_REPL:  # no other request comes here (app._on_frame)
            raise ValueError
        elif not _absent(bms, seq, msg):  # ENTER_REPL: the REPL can change anything
            bms._ack(seq, msg)
            # Nothing protects the cells from the REPL: open the output first.
            bms.contactor.step(0, False, 0)
            bms.events.flush()
            bms.repl_requested = True  # the main loop hands the port back


def _absent(bms, seq, msg):
    """On a locked board, a change that lowers protection (a protection's limit,
    severity or delay; open mode; the REPL) needs the presence button held as well
    as the key: if it is not, NAK (``limit``: 0 not held, -1 no button) and True."""
    if not bms.key_id:
        return False
    held = bms.hal.presence()
    if held == 1:
        return False
    bms._nak(seq, msg, _NAK_ERROR_PRESENCE_REQUIRED, held)
    return True


def _ms_until(then, now):
    """Board ms from ``now`` to ``then`` (Bms.clock's u32, which wraps every 49
    days), negative once it has passed."""
    d = (then - now) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d


def _state(bms):
    if bms.auth is None:
        bms.auth = [None, 0, 0, 0, 0, None, 0, 0, 0]
    return bms.auth


def _give_nonce(bms, seq):
    st = _state(bms)
    st[_GIVEN] += 1
    # Unique: the boot count and a count of this boot's nonces; not guessable ahead
    # from outside: the board's clock and its random source.
    seed = pack("<LLLL", bms.lifetime.w[_BOOTS], st[_GIVEN], bms.clock(), getrandbits(30))
    st[_NONCE] = sha256(bms.unique_id + seed).digest()[:_NONCE_BYTES]
    st[_EXPIRES] = (bms.clock() + _NONCE_VALID_MS) & 0xFFFFFFFF
    link = bms.link
    end = codec_rare.encode_nonce(link.payload_buffer(), PAYLOAD_AT, st[_NONCE],
                                  _NONCE_VALID_MS, bms.key_id)
    link.send(_MSG_NONCE, seq, end)


def _refuse(bms, seq, msg, key_id, error, limit):
    """A refused AUTH: counted (the waits), logged, answered."""
    st = _state(bms)
    st[_FAILURES] += 1
    extra = st[_FAILURES] - _FREE_FAILURES
    if extra >= 0:
        st[_QUIET_UNTIL] = (bms.clock() + min(1000 << min(extra, 9), _LONGEST_WAIT_MS)) \
            & 0xFFFFFFFF
    bms._log(_EVENT_AUTH_REFUSED, msg, error)
    bms._nak(seq, msg, error, limit)
    _log_write(bms, msg, key_id, error, 0, 0, 0)


def _check(bms, seq, start, end):
    frame = bms.link.frame
    key_id, nonce, got, inner, payload = codec_rare.decode_auth(frame, start, end)
    st = _state(bms)
    now = bms.clock()
    wait = _ms_until(st[_QUIET_UNTIL], now)
    if st[_FAILURES] >= _FREE_FAILURES and wait > 0:
        bms._nak(seq, inner, _NAK_ERROR_RATE_LIMITED, wait)
        _log_write(bms, inner, key_id, _NAK_ERROR_RATE_LIMITED, 0, 0, 0)
        return
    given = st[_NONCE]
    st[_NONCE] = None  # single use, whatever comes of it
    if not bms.key_id:  # open mode: nothing to check a MAC with
        bms._nak(seq, inner, _NAK_ERROR_WRONG_KEY, 0)
        _log_write(bms, inner, key_id, _NAK_ERROR_WRONG_KEY, 0, 0, 0)
        return
    if key_id != bms.key_id:
        _refuse(bms, seq, inner, key_id, _NAK_ERROR_WRONG_KEY, bms.key_id)
        return
    if given is None or _ms_until(st[_EXPIRES], now) <= 0 or not same(nonce, given):
        _refuse(bms, seq, inner, key_id, _NAK_ERROR_STALE_NONCE, 0)
        return
    key = _load(bms.key_path)
    if key is None or not same(got, mac(key[1:], bms.unique_id, nonce, inner, payload)):
        _refuse(bms, seq, inner, key_id, _NAK_ERROR_BAD_MAC, 0)
        return
    st[_FAILURES] = 0
    begin = end - len(payload)
    frame[1] = inner  # the frame is now the write itself: its handler reads its type
    try:
        if inner not in _WRITES:  # not a write: nothing to authenticate
            raise ValueError
        _logged(bms, seq, key_id, begin, end)
    except ValueError:  # a payload the codec could not parse
        bms._nak(seq, inner, _NAK_ERROR_BAD_PAYLOAD, 0)


def _set_key(bms, seq, key_id, key):
    if bms.key_path is None:  # a board without flash cannot keep a key
        bms._nak(seq, _MSG_SET_KEY, _NAK_ERROR_NOT_AUTHORISED, 0)
        return
    try:
        _store(bms.key_path, key_id, key)
    except OSError:
        bms._nak(seq, _MSG_SET_KEY, _NAK_ERROR_NOT_AUTHORISED, 0)
        return
    bms.key_id = key_id
    if bms.auth is not None:
        bms.auth[_NONCE] = None
    bms._log(_EVENT_KEY_CHANGED, key_id, 0)
    bms.events.flush()
    bms._ack(seq, _MSG_SET_KEY)


def release():
    """Forget this module (see life_admin.release)."""
    if sys.implementation.name != "micropython":
        return
    package = sys.modules.get("cellguard_fw")
    for name in ("admin", "codec_rare"):
        sys.modules.pop("cellguard_fw." + name, None)
        if package is not None and hasattr(package, name):
            delattr(package, name)
