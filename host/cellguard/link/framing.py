"""Host side of the serial link: split the byte stream into frames at 0x00.

Noise is counted, never raised: a frame that fails COBS, CRC or length checks
is dropped and the reader resynchronises at the next delimiter.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.codec import Frame, FrameError, decode_frame
from ..protocol.messages import MAX_WIRE_FRAME


@dataclass
class LinkStats:
    frames: int = 0
    bad_frames: int = 0
    crc_errors: int = 0
    oversize: int = 0
    joined_mid_frame: int = 0  # the port opened inside a frame: its tail, not an error


class FrameReader:
    """Frames from a byte stream. A board streams whether or not a host has its port
    open, so a host that opens it may come in halfway through a frame (a real rp2
    even keeps the last bytes it could not send for the next host): the first part
    after the start (or :meth:`reset`) that does not decode is that frame's tail,
    counted in ``joined_mid_frame``, not as a CRC error or a bad frame."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False  # inside an oversize frame: skip to its delimiter
        self._joined = False  # a first whole part seen since the start or reset()
        self.stats = LinkStats()

    def reset(self) -> None:
        self._buf.clear()
        self._discarding = False
        self._joined = False

    def feed(self, data: bytes) -> list[Frame]:
        """Decode every frame that ``data`` completes; keep the rest for the next call."""
        parts = bytes(data).split(b"\x00")
        tail = parts.pop()  # after the last delimiter: the start of a frame to come
        frames: list[Frame] = []
        if parts and (self._buf or self._discarding):
            # The first part ends the frame begun by earlier chunks.
            self._append(parts[0])
            parts[0] = b"" if self._discarding else bytes(self._buf)
            if self._discarding:
                self.stats.oversize += 1
            self._buf.clear()
            self._discarding = False
        stats = self.stats
        for part in parts:
            if not part:
                continue
            if len(part) > MAX_WIRE_FRAME:
                stats.oversize += 1
                continue
            first, self._joined = not self._joined, True
            try:
                frames.append(decode_frame(part))
            except FrameError as exc:
                if first:
                    stats.joined_mid_frame += 1
                elif "CRC" in str(exc):
                    stats.crc_errors += 1
                else:
                    stats.bad_frames += 1
                continue
            stats.frames += 1
        self._append(tail)
        return frames

    def _append(self, part: bytes) -> None:
        if self._discarding or not part:
            return
        if len(self._buf) + len(part) > MAX_WIRE_FRAME:
            self._buf.clear()
            self._discarding = True
        else:
            self._buf += part
