"""Host decode-and-store throughput for 16-cell, 16-sensor TELEMETRY frames.

Run from the repository root::

    .venv/bin/python benchmarks/protocol_throughput.py [--frames N] [--repeat R]

Three figures, all in frames per second of one CPU core, best of ``--repeat``
runs over the same ``--frames`` frames, fed in ``--chunk``-byte reads as a
serial port delivers them:

baseline
    Hand-written ``struct`` decoding of the same byte stream: split at 0x00,
    ``cobs.decode``, CRC-32 check, ``struct.unpack_from`` of header and payload
    with the same checks (length field, no trailing bytes), then the same
    ``Telemetry.from_wire`` as the real path. What the real path would cost
    without Construct.
decode
    The host's real path: ``FrameReader.feed`` (COBS, CRC, header) ->
    ``parse_payload`` (Construct) -> ``Telemetry.from_wire``.
decode+store
    The same, then ``LogWriter.add`` into a real SQLite file in a temporary
    folder (WAL mode, committed at least once a second), up to the last commit.

Ratios are to the baseline measured in the same process. The frames are
realistic (a slowly drifting pack with noise, occasional faults, now and then a
lost frame) from a seeded RNG, encoded by the host's ``encode_frame``; a sample
is checked byte for byte against the firmware's ``Link.send``, and every decoded
sample of the check set is compared between the three paths before timing.

This is a benchmark, not a test: it asserts correctness but never timing; the
goal line says PASS or FAIL and the exit status is 0 either way.
"""

from __future__ import annotations

import argparse
import binascii
import cProfile
import gc
import os
import platform
import pstats
import random
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import construct
from cobs import cobs

from cellguard.link.client import Info, Telemetry
from cellguard.link.framing import FrameReader
from cellguard.protocol import codec, messages
from cellguard.store import LogReader, LogWriter
from cellguard_fw import codec as fw_codec
from cellguard_fw.link import PAYLOAD_AT, Link

CELLS = 16
TEMPS = 16
GOAL_FPS = 50_000.0
SPEC = messages.BY_NAME["telemetry"]
FIELDS = [sc.name for sc in SPEC.payload.subcons]
STATES = {int(v): str(k) for k, v in messages.BmsState.encmapping.items()}
ACTIVE = next(v for v, k in STATES.items() if k == "active")

INFO = Info(protocol=f"{messages.PROTOCOL_MAJOR}.{messages.PROTOCOL_MINOR}",
            firmware_version="bench", board="bench-16s", unique_id="be9c4", chemistry="nmc",
            cell_count=CELLS, temp_count=TEMPS, capacity_ah=100.0, control_period_s=0.01,
            telemetry_period_s=0.1, cell_ov_v=4.25, cell_uv_v=2.8, temp_max_c=60.0,
            temp_min_c=-20.0, charge_current_max_a=100.0, discharge_current_max_a=200.0)


# -- the frames ---------------------------------------------------------------------


def telemetry_values(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """``n`` telemetry payloads of a drifting 16S pack; wire units, state as an int."""
    rng = random.Random(seed)
    offsets = [rng.randint(-15, 15) for _ in range(CELLS)]
    sensor_bias = [rng.randint(-20, 20) for _ in range(TEMPS)]
    base_mv = 3700.0
    current_ma = 20_000.0
    temp_dc = 250.0
    soc = 5000.0
    board_ms = rng.randint(0, 10_000_000)
    seq = rng.randint(0, 1000)
    for _ in range(n):
        current_ma = max(-150_000.0, min(80_000.0, current_ma + rng.gauss(0.0, 800.0)))
        base_mv = max(2900.0, min(4200.0, base_mv + current_ma * 1e-6 + rng.gauss(0.0, 0.2)))
        temp_dc = max(-100.0, min(550.0, temp_dc + rng.gauss(0.0, 0.5)))
        soc = max(0.0, min(10_000.0, soc + current_ma * 1e-5))
        cells = [int(base_mv + o + rng.gauss(0.0, 2.0)) for o in offsets]
        roll = rng.random()
        faults = 0 if roll < 0.98 else rng.choice([1, 2, 4, 8, 16, 32, 0x400])
        state = (ACTIVE if faults == 0 else rng.choice(list(STATES))) if roll > 0.001 else 0
        alarms = 0 if roll < 0.995 else rng.choice([0x80, 0x100])  # charging too hot / cold
        yield {
            "telemetry_seq": seq & 0xFFFF_FFFF,
            "board_time_ms": board_ms & 0xFFFF_FFFF,
            "state": state,
            "faults": faults,
            "warnings": 0 if roll < 0.99 else 0x1000,
            "alarms": alarms,
            "allowed": 0 if faults else (2 if alarms else 3),  # bit 0 charge, bit 1 discharge
            "pack_mv": sum(cells),
            "current_ma": int(current_ma),
            "soc_cpct": int(soc),
            "cells_mv": cells,
            "temps_dc": [int(temp_dc + b + rng.gauss(0.0, 3.0)) for b in sensor_bias],
        }
        seq += 1 if rng.random() > 0.001 else rng.randint(2, 5)  # now and then a lost frame
        board_ms += 100 + rng.randint(-2, 2)


def check_fields(values: dict[str, Any]) -> None:
    """Stop with a clear message when TELEMETRY has grown (or lost) a field."""
    if set(values) != set(FIELDS):
        missing = sorted(set(FIELDS) - set(values))
        extra = sorted(set(values) - set(FIELDS))
        raise SystemExit(f"TELEMETRY's fields changed (missing {missing}, unknown {extra}): "
                         "update telemetry_values() in this benchmark")


def host_frame(frame_seq: int, values: dict[str, Any]) -> bytes:
    return codec.encode_frame(SPEC.msg_id, frame_seq, codec.build_payload(SPEC.name, values))


class _Port:
    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, buf: bytes | bytearray | memoryview) -> int:
        self.out += buf
        return len(buf)

    def readinto(self, buf: bytearray) -> int | None:
        return None


def firmware_frame(link: Link, port: _Port, frame_seq: int, values: dict[str, Any]) -> bytes:
    """The wire bytes the firmware sends for the same sample."""
    encode = getattr(fw_codec, f"encode_{SPEC.name}")
    end = encode(link.payload_buffer(), PAYLOAD_AT, *(values[f] for f in FIELDS))
    port.out.clear()
    link.send(SPEC.msg_id, frame_seq, end)
    return bytes(port.out)


def make_stream(n: int, seed: int, check: int) -> tuple[list[bytes], list[dict[str, Any]]]:
    """The wire bytes of ``n`` frames and the values of the first ``check`` of them."""
    parts: list[bytes] = []
    sample: list[dict[str, Any]] = []
    port = _Port()
    link = Link(port)
    for i, values in enumerate(telemetry_values(n, seed)):
        if i == 0:
            check_fields(values)
        frame = host_frame(i, values)
        parts.append(frame)
        if i < check:
            sample.append(values)
            fw = firmware_frame(link, port, i, values)
            if fw != frame:
                raise SystemExit(f"frame {i}: host encode_frame and firmware Link.send differ:\n"
                                 f"  host     {frame.hex()}\n  firmware {fw.hex()}")
    return parts, sample


def chunks_of(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


# -- the three paths ----------------------------------------------------------------

def fixed_head() -> tuple[list[str], struct.Struct]:
    """TELEMETRY's fields before the cell array, and one struct for all of them, read off
    the Construct definition (so a field added there is decoded here too)."""
    names: list[str] = []
    fmt = "<"
    for sub in SPEC.payload.subcons:
        con = sub.subcon
        while isinstance(con, construct.Subconstruct) and not isinstance(con,
                                                                         construct.FormatField):
            con = con.subcon
        if not isinstance(con, construct.FormatField):
            break
        names.append(sub.name)
        fmt += con.fmtstr[-1]
    return names, struct.Struct(fmt)


_HEADER = struct.Struct("<BBHB")
_CRC = struct.Struct("<L")
_FIXED_NAMES, _FIXED = fixed_head()  # telemetry up to the cell count
_MIN_BODY = _HEADER.size + _CRC.size


def baseline_decode(chunks: list[bytes]) -> Iterator[Telemetry]:
    """COBS + CRC + ``struct.unpack`` of the telemetry payload, by hand."""
    crc32 = binascii.crc32
    cobs_decode = cobs.decode
    unpack_header = _HEADER.unpack_from
    unpack_crc = _CRC.unpack_from
    unpack_fixed = _FIXED.unpack_from
    fixed_names = _FIXED_NAMES
    unpack_from = struct.unpack_from
    from_wire = Telemetry.from_wire
    fixed_end = _HEADER.size + _FIXED.size
    msg_telemetry = SPEC.msg_id
    states = STATES
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\x00")
        rest = parts.pop()
        for encoded in parts:
            if not encoded or len(encoded) > messages.MAX_WIRE_FRAME:
                continue
            try:
                body = cobs_decode(encoded)
            except cobs.DecodeError:
                continue
            n = len(body)
            if n < _MIN_BODY or n > messages.MAX_FRAME:
                continue
            end = n - _CRC.size
            if crc32(body[:end]) != unpack_crc(body, end)[0]:
                continue
            _version, msg_type, _seq, length = unpack_header(body)
            if length != end - _HEADER.size or msg_type != msg_telemetry:
                continue
            if fixed_end + 1 > end:
                continue
            values = dict(zip(fixed_names, unpack_fixed(body, 5), strict=True))
            values["state"] = states.get(values["state"], values["state"])
            ncells = body[fixed_end]
            off = fixed_end + 1
            if off + 2 * ncells + 1 > end:
                continue
            cells = list(unpack_from(f"<{ncells}H", body, off))
            off += 2 * ncells
            ntemps = body[off]
            off += 1
            if off + 2 * ntemps != end:
                continue
            temps = list(unpack_from(f"<{ntemps}h", body, off))
            values["cells_mv"] = cells
            values["temps_dc"] = temps
            yield from_wire(values)


def host_decode(chunks: list[bytes]) -> Iterator[Telemetry]:
    """The host's real path, as ``BoardClient`` and the logger run it."""
    reader = FrameReader()
    parse = codec.parse_payload
    from_wire = Telemetry.from_wire
    msg_telemetry = SPEC.msg_id
    for chunk in chunks:
        for frame in reader.feed(chunk):
            if frame.msg_type == msg_telemetry:
                yield from_wire(parse(frame.msg_type, frame.payload))


def run_baseline(chunks: list[bytes]) -> tuple[int, float]:
    """Frames decoded and seconds taken."""
    n = 0
    t0 = time.perf_counter()
    for _ in baseline_decode(chunks):
        n += 1
    return n, time.perf_counter() - t0


def run_decode(chunks: list[bytes]) -> tuple[int, float]:
    n = 0
    t0 = time.perf_counter()
    for _ in host_decode(chunks):
        n += 1
    return n, time.perf_counter() - t0


def run_decode_store(chunks: list[bytes]) -> tuple[int, float]:
    """Timed from the first read to the last commit; opening and closing the file
    (a WAL checkpoint) are not counted."""
    with tempfile.TemporaryDirectory(prefix="cellguard-bench-") as tmp:
        writer = LogWriter(Path(tmp) / "bench.sqlite")
        try:
            board = writer.add_board(INFO, "bench")
            add = writer.add
            n = 0
            t0 = time.perf_counter()
            for t in host_decode(chunks):
                add(board, t)
                n += 1
            writer.commit()
            elapsed = time.perf_counter() - t0
        finally:
            writer.close()
    return n, elapsed


# -- checks, timing, report ---------------------------------------------------------


def expected_payload(values: dict[str, Any]) -> dict[str, Any]:
    return {**values, "state": STATES[values["state"]]}


def check_paths(chunks: list[bytes], sample: list[dict[str, Any]]) -> None:
    """All three paths decode the check set to the same samples as were encoded."""
    want = [Telemetry.from_wire(expected_payload(v)) for v in sample]
    got_base = list(baseline_decode(chunks))
    got_host = list(host_decode(chunks))
    for name, got in (("baseline", got_base), ("decode", got_host)):
        if got != want or [t.raw for t in got] != [t.raw for t in want]:
            raise SystemExit(f"{name} path does not decode the frames it was given")
    with tempfile.TemporaryDirectory(prefix="cellguard-bench-") as tmp:
        path = Path(tmp) / "check.sqlite"
        writer = LogWriter(path)
        board = writer.add_board(INFO, "bench")
        for t in got_host:
            writer.add(board, t, host_time=0.0)
        writer.close()
        with LogReader(path) as reader:
            stored = [(s.seq, s.cells_v, s.temps_c, s.state) for s in reader.samples()]
    if stored != [(t.seq, t.cells_v, t.temps_c, t.state) for t in want]:
        raise SystemExit("decode+store path does not store what it decoded")


def best_of(fn: Callable[[list[bytes]], tuple[int, float]], chunks: list[bytes], frames: int,
            repeat: int) -> float:
    """Frames per second of the best of ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        got, elapsed = fn(chunks)
        if got != frames:
            raise SystemExit(f"{fn.__name__} decoded {got} of {frames} frames")
        best = min(best, elapsed)
    return frames / best


def profile(fn: Callable[[list[bytes]], tuple[int, float]], chunks: list[bytes], top: int) -> None:
    prof = cProfile.Profile()
    prof.runcall(fn, chunks)
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Host decode-and-store throughput for TELEMETRY.")
    ap.add_argument("--frames", type=int, default=100_000, help="frames per run (100000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; best counts (3)")
    ap.add_argument("--chunk", type=int, default=4096, help="bytes per serial read (4096)")
    ap.add_argument("--seed", type=int, default=0xCE11, help="RNG seed")
    ap.add_argument("--check", type=int, default=2000,
                    help="frames checked against the firmware encoder and across paths (2000)")
    ap.add_argument("--profile", choices=["baseline", "decode", "store"],
                    help="instead of timing, run one path under cProfile")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run in about a second: 2000 frames, 1 run, 200 checked "
                         "(the figures mean little)")
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.repeat, args.check = 2000, 1, 200
    if args.frames < 1 or args.repeat < 1 or args.chunk < 1:
        ap.error("--frames, --repeat and --chunk must be positive")

    t0 = time.perf_counter()
    frames, sample = make_stream(args.frames, args.seed, min(args.check, args.frames))
    stream = b"".join(frames)
    chunks = chunks_of(stream, args.chunk)
    check_paths(chunks_of(b"".join(frames[: len(sample)]), args.chunk), sample)
    sizes = [len(f) for f in frames]
    del frames
    setup_s = time.perf_counter() - t0

    if args.profile:
        fn = {"baseline": run_baseline, "decode": run_decode, "store": run_decode_store}
        profile(fn[args.profile], chunks, 25)
        return 0

    print(f"python {platform.python_version()} ({platform.python_implementation()}), "
          f"construct {construct.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}")
    print(f"{args.frames} TELEMETRY frames, {CELLS} cells, {TEMPS} temperatures: "
          f"payload {len(codec.build_payload(SPEC.name, sample[0]))} bytes, "
          f"wire {len(stream) / args.frames:.1f} bytes/frame on average "
          f"({min(sizes)}..{max(sizes)}, delimiter included)")
    print(f"{len(sample)} frames byte-identical to the firmware's Link.send and decoded alike "
          f"by all three paths (setup {setup_s:.1f} s); read size {args.chunk} bytes, "
          f"best of {args.repeat}")

    base = best_of(run_baseline, chunks, args.frames, args.repeat)
    dec = best_of(run_decode, chunks, args.frames, args.repeat)
    store = best_of(run_decode_store, chunks, args.frames, args.repeat)

    print()
    print(f"{'path':<14}{'frames/s':>12}{'us/frame':>10}{'vs baseline':>13}")
    for name, fps in (("baseline", base), ("decode", dec), ("decode+store", store)):
        print(f"{name:<14}{fps:>12,.0f}{1e6 / fps:>10.1f}{fps / base:>12.2f}x")
    print()
    verdict = "PASS" if dec >= GOAL_FPS else "FAIL"
    print(f"goal: decode >= {GOAL_FPS:,.0f} frames/s: {verdict} ({dec:,.0f} frames/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
