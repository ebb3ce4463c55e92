"""Serial link: COBS framing, CRC-32 and frame reassembly, in preallocated buffers.

Bytes arrive in any chunking; ``feed`` collects them until a 0x00 delimiter,
decodes the frame in place and hands ``(msg_type, seq, start, end)`` to the
handler, the payload being ``self.frame[start:end]``. Bad frames are counted,
never raised: a serial line carries noise.
"""

from binascii import crc32
from struct import pack_into, unpack_from

from micropython import const

from .codec import HEADER_FMT

# The protocol numbers used here, as folded copies of codec.py's: the board
# interns no name for them (tests/test_firmware_build.py holds them equal).
_CRC_SIZE = const(4)
_HEADER_SIZE = const(5)
_MAX_FRAME = const(264)
_MAX_WIRE_FRAME = const(267)
_PROTOCOL_MAJOR = const(1)

PAYLOAD_AT = _HEADER_SIZE
"""Offset of the payload in the outgoing body buffer: encoders write there."""


def cobs_encode(src, n, dst):
    """COBS-encode src[:n] into dst; return the encoded length (no delimiter)."""
    code_at = 0
    code = 1
    out = 1
    for i in range(n):
        b = src[i]
        if b == 0:
            dst[code_at] = code
            code_at = out
            out += 1
            code = 1
        else:
            dst[out] = b
            out += 1
            code += 1
            if code == 0xFF and i + 1 < n:  # no empty block after a final 0xFF one
                dst[code_at] = code
                code_at = out
                out += 1
                code = 1
    dst[code_at] = code
    return out


def cobs_decode(buf, n):
    """Decode COBS bytes buf[:n] in place; return the decoded length or -1 if invalid."""
    read = 0
    write = 0
    while read < n:
        code = buf[read]
        if code == 0:
            return -1
        read += 1
        block_end = read + code - 1
        if block_end > n:
            return -1
        # A block moves back by a fixed distance: one index per byte, not two.
        back = read - write
        for i in range(read, block_end):
            buf[i - back] = buf[i]
        write = block_end - back
        read = block_end
        if code != 0xFF and read < n:
            buf[write] = 0
            write += 1
    return write


class Link:
    """One serial link: frame reassembly on receive, frame building on send."""

    def __init__(self, port):
        self.port = port  # has readinto(buf) -> int or None, and write(buf) -> 0 if dropped
        self.rx = bytearray(64)  # raw chunk from the port
        self.frame = bytearray(_MAX_WIRE_FRAME)  # bytes of the frame being received
        self.frame_len = 0
        self.overflow = False  # current frame is too long: drop it at its delimiter
        self.body = bytearray(_MAX_FRAME)  # outgoing header + payload + CRC
        self.tx = bytearray(_MAX_WIRE_FRAME + 1)
        self.tx_seq = 0
        # Link statistics, reported in STATS later.
        self.frames_ok = 0
        self.frames_bad = 0
        self.crc_errors = 0
        self.oversize = 0
        self.tx_frames = 0
        self.tx_dropped = 0  # whole frames the port could not take (the host not reading)

    # -- receive ---------------------------------------------------------
    def poll(self, handler):
        """Read one chunk of what the port has (64 bytes at most; the rest at the next
        call) and dispatch its complete frames to ``handler``; return True when the
        chunk was full (more may wait). A host that never stops sending, or sends
        requests that are slow to answer, holds the control step back by one chunk's
        handling at most: the loop looks at the clock between chunks."""
        rx = self.rx
        n = self.port.readinto(rx)
        if n:
            self.feed(rx, n, handler)
        return n == len(rx)

    def feed(self, data, n, handler):
        frame = self.frame
        length = self.frame_len  # a local while the bytes stream in: the attribute at a delimiter
        for i in range(n):
            b = data[i]
            if b:
                if length < _MAX_WIRE_FRAME:
                    frame[length] = b
                    length += 1
                else:
                    self.overflow = True
                continue
            if self.overflow:
                self.oversize += 1
                self.overflow = False
            elif length:
                self.frame_len = length
                self._dispatch(handler)
            length = 0
            self.frame_len = 0
        self.frame_len = length

    def _dispatch(self, handler):
        frame = self.frame
        n = cobs_decode(frame, self.frame_len)
        if n < _HEADER_SIZE + _CRC_SIZE or n > _MAX_FRAME:
            self.frames_bad += 1
            return
        end = n - _CRC_SIZE
        if crc32(memoryview(frame)[:end]) != unpack_from("<L", frame, end)[0]:
            self.crc_errors += 1
            return
        version, msg_type, seq, length = unpack_from(HEADER_FMT, frame, 0)
        if length != end - _HEADER_SIZE:
            self.frames_bad += 1
            return
        self.frames_ok += 1
        handler(version, msg_type, seq, _HEADER_SIZE, end)

    # -- send -------------------------------------------------------------
    def payload_buffer(self):
        """The buffer a codec encoder writes the payload into, at offset PAYLOAD_AT."""
        return self.body

    def send(self, msg_type, seq, payload_end):
        """Frame the payload already in ``body[PAYLOAD_AT:payload_end]`` and write it."""
        length = payload_end - PAYLOAD_AT
        if length < 0 or length > _MAX_FRAME - _HEADER_SIZE - _CRC_SIZE:
            raise ValueError("payload too large")
        body = self.body
        pack_into(HEADER_FMT, body, 0, _PROTOCOL_MAJOR, msg_type, seq & 0xFFFF, length)
        pack_into("<L", body, payload_end, crc32(memoryview(body)[:payload_end]))
        n = cobs_encode(body, payload_end + _CRC_SIZE, self.tx)
        self.tx[n] = 0
        # A port takes a frame whole or not at all (0): never a partial frame.
        if self.port.write(memoryview(self.tx)[: n + 1]) == 0:
            self.tx_dropped += 1
        else:
            self.tx_frames += 1

    def next_seq(self):
        self.tx_seq = (self.tx_seq + 1) & 0xFFFF
        return self.tx_seq

