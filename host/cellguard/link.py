"""Host side of the serial link: split the byte stream into frames at 0x00.

Noise is counted, never raised: a frame that fails COBS, CRC or length checks
is dropped and the reader resynchronises at the next delimiter.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol.codec import Frame, FrameError, decode_frame
from .protocol.messages import MAX_WIRE_FRAME


@dataclass
class LinkStats:
    frames: int = 0
    bad_frames: int = 0
    crc_errors: int = 0
    oversize: int = 0


class FrameReader:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False  # inside an oversize frame: skip to its delimiter
        self.stats = LinkStats()

    def reset(self) -> None:
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        start = 0
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                self._append(data[start:])
                return frames
            self._append(data[start:end])
            if self._discarding:
                self.stats.oversize += 1
            elif self._buf:
                self._decode(bytes(self._buf), frames)
            self._buf.clear()
            self._discarding = False
            start = end + 1

    def _append(self, part: bytes) -> None:
        if self._discarding or not part:
            return
        if len(self._buf) + len(part) > MAX_WIRE_FRAME:
            self._buf.clear()
            self._discarding = True
        else:
            self._buf += part

    def _decode(self, raw: bytes, out: list[Frame]) -> None:
        try:
            out.append(decode_frame(raw))
        except FrameError as exc:
            if "CRC" in str(exc):
                self.stats.crc_errors += 1
            else:
                self.stats.bad_frames += 1
            return
        self.stats.frames += 1
