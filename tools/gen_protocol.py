"""Generate the firmware codec and the protocol document from the Construct definitions.

    python tools/gen_protocol.py          # rewrite both files
    python tools/gen_protocol.py --check  # exit 1 if either is stale

The firmware cannot import Construct, so ``firmware/cellguard_fw/codec.py`` is
plain ``struct`` code written from ``protocol/messages.py``. Only the Construct
shapes used by the protocol are understood (integers, Enum, FlagsEnum,
PascalString, PrefixedArray, Bytes of a fixed length, and GreedyBytes as the last
field); anything else stops generation with a clear error,
so the protocol cannot grow a field the firmware silently ignores.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from construct import (
    Array,
    Bytes,
    Construct,
    Enum,
    FlagsEnum,
    FocusedSeq,
    FormatField,
    GreedyBytes,
    Prefixed,
    Rebuild,
    Renamed,
    StringEncoded,
    Struct,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from protocol import messages  # noqa: E402

CODEC_PATH = ROOT / "firmware" / "cellguard_fw" / "codec.py"
MIRROR_PATH = ROOT / "firmware" / "cellguard_fw" / "codec_mirror.py"
RARE_PATH = ROOT / "firmware" / "cellguard_fw" / "codec_rare.py"
DOC_PATH = ROOT / "protocol" / "README.md"

_SIZES = {"B": 1, "b": 1, "H": 2, "h": 2, "L": 4, "l": 4}
_TYPE_NAMES = {"B": "u8", "b": "i8", "H": "u16", "h": "i16", "L": "u32", "l": "i32"}


class UnsupportedField(TypeError):
    pass


@dataclass
class Field:
    name: str
    kind: str  # "int", "str", "array", "bytes" (fixed length) or "rest" (GreedyBytes)
    fmt: str  # struct char of the value, the length prefix or the array item ("" for bytes)
    count_fmt: str = ""  # struct char of an array's count prefix
    doc: str = ""
    values: str = ""  # enum members or flag bits, for the document
    length: int = 0  # a "bytes" field's length


def _fmt_char(con: Construct) -> str:
    ok = isinstance(con, FormatField) and len(con.fmtstr) == 2 and con.fmtstr[1] in _SIZES
    # Byte order does not matter for one-byte fields (Construct's Int8ul is big-endian).
    if not ok or (con.fmtstr[0] != "<" and _SIZES[con.fmtstr[1]] > 1):
        raise UnsupportedField(f"only little-endian integer fields are supported, not {con!r}")
    return con.fmtstr[1]


def describe(struct: Struct) -> list[Field]:
    """Flatten a message's Struct into a list of fields the generator understands."""
    fields = []
    for sub in struct.subcons:
        if not isinstance(sub, Renamed) or not sub.name:
            raise UnsupportedField(f"every field must be named: {sub!r}")
        con, doc = sub.subcon, sub.docs or ""
        while isinstance(con, Renamed):  # `"name" / X * "doc"` nests two Renamed
            con, doc = con.subcon, doc or con.docs or ""
        if isinstance(con, Enum):
            members = ", ".join(f"{k}={v}" for k, v in con.encmapping.items())
            fields.append(Field(sub.name, "int", _fmt_char(con.subcon), doc=doc, values=members))
        elif isinstance(con, FlagsEnum):
            bits = ", ".join(f"{k}=0x{v:x}" for k, v in con.flags.items())
            fields.append(Field(sub.name, "int", _fmt_char(con.subcon), doc=doc, values=bits))
        elif isinstance(con, FormatField):
            fields.append(Field(sub.name, "int", _fmt_char(con), doc=doc))
        elif isinstance(con, StringEncoded) and isinstance(con.subcon, Prefixed):
            fields.append(Field(sub.name, "str", _fmt_char(con.subcon.lengthfield), doc=doc))
        elif isinstance(con, FocusedSeq) and _is_prefixed_array(con):
            count = con.subcons[0].subcon.subcon
            item = con.subcons[1].subcon.subcon
            fields.append(
                Field(sub.name, "array", _fmt_char(item), count_fmt=_fmt_char(count), doc=doc)
            )
        elif isinstance(con, Bytes) and isinstance(con.length, int):
            fields.append(Field(sub.name, "bytes", "", doc=doc, length=con.length))
        elif con is GreedyBytes:
            if sub is not struct.subcons[-1]:
                raise UnsupportedField(f"field {sub.name!r}: GreedyBytes only as the last field")
            fields.append(Field(sub.name, "rest", "", doc=doc))
        else:
            raise UnsupportedField(f"field {sub.name!r}: unsupported construct {con!r}")
    return fields


def _is_prefixed_array(con: FocusedSeq) -> bool:
    subs = con.subcons
    return (
        len(subs) == 2
        and isinstance(subs[0].subcon, Rebuild)
        and isinstance(subs[1].subcon, Array)
    )


def _runs(fields: list[Field]) -> list[list[Field]]:
    """Group consecutive fixed-size integer fields so each group is one pack_into."""
    runs: list[list[Field]] = []
    for f in fields:
        if f.kind == "int" and runs and runs[-1][0].kind == "int":
            runs[-1].append(f)
        else:
            runs.append([f])
    return runs


def _encoder(spec: messages.MessageSpec, fields: list[Field]) -> list[str]:
    # Parameters are v0, v1, ... in field order: one set of names shared by every
    # encoder, because on a board each distinct parameter name is an interned
    # string held in RAM (about a hundred field names otherwise).
    var = {f.name: f"v{i}" for i, f in enumerate(fields)}
    args = ", ".join(["buf", "off", *var.values()])
    out = [
        f"def encode_{spec.name}({args}):",
        f'    """Write a {spec.name.upper()} payload at buf[off:]; return the end offset.',
        f"    Fields v0...: {', '.join(f.name for f in fields) or 'none'}." + '"""',
    ]
    for run in _runs(fields):
        f = run[0]
        if f.kind == "int":
            fmt = "<" + "".join(x.fmt for x in run)
            size = sum(_SIZES[x.fmt] for x in run)
            names = ", ".join(var[x.name] for x in run)
            out.append(f'    pack_into("{fmt}", buf, off, {names})')
            out.append(f"    off += {size}")
        elif f.kind == "str":
            out.append(f"    n = len({var[f.name]})")
            out.append(f'    pack_into("<{f.fmt}", buf, off, n)')
            out.append(f"    off += {_SIZES[f.fmt]}")
            out.append(f"    buf[off : off + n] = {var[f.name]}")
            out.append("    off += n")
        elif f.kind == "bytes":
            out.append(f"    if len({var[f.name]}) != {f.length}:")
            out.append('        raise ValueError("bytes field length")')  # one text for all
            out.append(f"    buf[off : off + {f.length}] = {var[f.name]}")
            out.append(f"    off += {f.length}")
        elif f.kind == "rest":
            out.append(f"    n = len({var[f.name]})")
            out.append(f"    buf[off : off + n] = {var[f.name]}")
            out.append("    off += n")
        else:
            size = _SIZES[f.fmt]
            out.append(f"    n = len({var[f.name]})")
            out.append(f'    pack_into("<{f.count_fmt}", buf, off, n)')
            out.append(f"    off += {_SIZES[f.count_fmt]}")
            out.append("    for i in range(n):")
            out.append(f'        pack_into("<{f.fmt}", buf, off, {var[f.name]}[i])')
            out.append(f"        off += {size}")
    out.append("    return off")
    return out


def decoder_name(spec: messages.MessageSpec) -> str:
    """The codec function that decodes ``spec``'s payload: on the board, every message
    without a payload shares ``decode_empty``."""
    if spec.direction != messages.B2H and not describe(spec.payload):
        return "decode_empty"
    return f"decode_{spec.name}"


def _decoder(spec: messages.MessageSpec, fields: list[Field], board: bool) -> list[str]:
    # On the board every distinct error text is a string object held in RAM for good
    # (about 20 of them): its decoders share two. The request that failed is known to
    # the caller, which answers BAD_PAYLOAD; the mirror (tests only) names it.
    short = "short payload" if board else f"short {spec.name}"
    trailing = "trailing bytes" if board else f"trailing bytes in {spec.name}"
    out = [
        f"def decode_{spec.name}(buf, off, end):",
        f'    """Parse a {spec.name.upper()} payload in buf[off:end]; return its fields."""',
    ]
    names = []
    for run in _runs(fields):
        f = run[0]
        if f.kind == "int":
            fmt = "<" + "".join(x.fmt for x in run)
            size = sum(_SIZES[x.fmt] for x in run)
            out.append(f"    if off + {size} > end:")
            out.append(f'        raise ValueError("{short}")')
            lhs = ", ".join(x.name for x in run) + ("," if len(run) == 1 else "")
            out.append(f'    {lhs} = unpack_from("{fmt}", buf, off)')
            out.append(f"    off += {size}")
        elif f.kind == "str":
            size = _SIZES[f.fmt]
            out.append(f"    if off + {size} > end:")
            out.append(f'        raise ValueError("{short}")')
            out.append(f'    n = unpack_from("<{f.fmt}", buf, off)[0]')
            out.append(f"    off += {size}")
            out.append("    if off + n > end:")
            out.append(f'        raise ValueError("{short}")')
            out.append(f"    {f.name} = bytes(buf[off : off + n]).decode()")
            out.append("    off += n")
        elif f.kind == "bytes":
            out.append(f"    if off + {f.length} > end:")
            out.append(f'        raise ValueError("{short}")')
            out.append(f"    {f.name} = bytes(buf[off : off + {f.length}])")
            out.append(f"    off += {f.length}")
        elif f.kind == "rest":  # in place: a view of buf[off:end], not a copy
            out.append(f"    {f.name} = memoryview(buf)[off:end]")
            out.append("    off = end")
        else:
            csize, size = _SIZES[f.count_fmt], _SIZES[f.fmt]
            out.append(f"    if off + {csize} > end:")
            out.append(f'        raise ValueError("{short}")')
            out.append(f'    n = unpack_from("<{f.count_fmt}", buf, off)[0]')
            out.append(f"    off += {csize}")
            out.append(f"    if off + n * {size} > end:")
            out.append(f'        raise ValueError("{short}")')
            out.append(f"    {f.name} = []")
            out.append("    for i in range(n):")
            out.append(f'        {f.name}.append(unpack_from("<{f.fmt}", buf, off)[0])')
            out.append(f"        off += {size}")
        names.extend(x.name for x in run)
    out.append("    if off != end:")
    out.append(f'        raise ValueError("{trailing}")')
    ret = ", ".join(names) + ("," if len(names) == 1 else "")
    out.append(f"    return ({ret})")
    return out


def _const_name(*parts: str) -> str:
    return "_".join(p.upper() for p in parts)


def generate_codec() -> str:
    m = messages
    lines = [
        f'"""cellguard protocol {m.PROTOCOL_MAJOR}.{m.PROTOCOL_MINOR} codec for the firmware.',
        "",
        "GENERATED by tools/gen_protocol.py from protocol/messages.py: do not edit.",
        "Payload encoders write into a preallocated buffer and return the end offset;",
        "decoders return a tuple of the fields in protocol order and raise ValueError",
        "for a payload that is too short or too long.",
        '"""',
        "",
        "from struct import pack_into, unpack_from",
        "",
        "from micropython import const",
        "",
        "# The protocol's numbers are private constants: mpy-cross folds them, so the",
        "# board interns no name for them. Each firmware module keeps its own folded",
        "# copies of those it uses (tests/test_firmware_build.py holds them equal);",
        "# CPython reads them as codec.NAME through __getattr__ below.",
        f"_PROTOCOL_MAJOR = const({m.PROTOCOL_MAJOR})",
        f"_PROTOCOL_MINOR = const({m.PROTOCOL_MINOR})",
        f"_MAX_PAYLOAD = const({m.MAX_PAYLOAD})",
        f"_MAX_FRAME = const({m.MAX_FRAME})",
        f"_MAX_WIRE_FRAME = const({m.MAX_WIRE_FRAME})",
        f'HEADER_FMT = "<{"".join(f.fmt for f in describe(m.FrameHeader))}"',
        f"_HEADER_SIZE = const({m.FrameHeader.sizeof()})",
        f"_CRC_SIZE = const({m.FrameCrc.sizeof()})",
        "",
    ]
    for spec in m.MESSAGES:
        lines.append(f"_MSG_{spec.name.upper()} = const(0x{spec.msg_id:02x})")
    lines.append("")
    # Protection keys are found by arithmetic on the board (4i+1.., the bases
    # below + i): a name each would cost RAM for nothing.
    protection_keys = set(m.protection_keys())
    for prefix, enum in m.ENUMS.items():
        for key, value in enum.encmapping.items():
            if prefix == "config" and key in protection_keys:
                continue
            lines.append(f"_{_const_name(prefix, key)} = const({value})")
    lines.append(f"_CONFIG_PROTECTION_COUNT = const({len(m.PROTECTION_STEMS)})")
    lines.append(f"_CONFIG_DEBOUNCE_BASE = const({m.DEBOUNCE_KEY_BASE})")
    lines.append(f"_CONFIG_SEVERITY_BASE = const({m.SEVERITY_KEY_BASE})")
    for prefix, flags in m.FLAGS.items():
        for key, value in flags.flags.items():
            lines.append(f"_{_const_name(prefix, key)} = const(0x{value:x})")
    # The board needs only its own direction: it encodes what it sends and
    # decodes what it receives. The other direction goes to codec_mirror.py.
    # Requests without a payload share one decoder (see decoder_name).
    empty = [s.name.upper() for s in m.MESSAGES if decoder_name(s) == "decode_empty"]
    for spec in m.MESSAGES:
        fields = describe(spec.payload)
        if spec.direction == m.B2H and not spec.on_demand:
            lines += ["", "", *_encoder(spec, fields)]
        elif spec.direction == m.B2H:
            continue
        elif decoder_name(spec) != "decode_empty" and not spec.on_demand:
            lines += ["", "", *_decoder(spec, fields, board=True)]
    if empty:
        lines += [
            "", "",
            "def decode_empty(buf, off, end):",
            f'    """Check a payload that must be empty ({", ".join(empty)}); return ()."""',
            "    if off != end:",
            '        raise ValueError("trailing bytes")',
            "    return ()",
        ]
    lines += [
        "", "",
        "def __getattr__(name):",
        '    """codec.NAME for the constant _NAME, under CPython (the host and the tests:',
        '    the board folds them away and its modules never ask)."""',
        "    try:",
        '        return globals()["_" + name]',
        "    except KeyError:",
        "        raise AttributeError(name) from None",
    ]
    return "\n".join(lines) + "\n"


def generate_rare() -> str:
    m = messages
    lines = [
        '"""The board\'s decoders of rare requests and encoders of rare answers',
        "(MessageSpec.on_demand).",
        "",
        "GENERATED by tools/gen_protocol.py from protocol/messages.py: do not edit.",
        "The firmware imports this module for such a request and releases it after",
        "(life_admin.release), so these decoders take no RAM the rest of the time.",
        '"""',
        "",
        "from struct import pack_into, unpack_from",
    ]
    for spec in m.MESSAGES:
        if spec.on_demand and spec.direction == m.H2B:
            lines += ["", "", *_decoder(spec, describe(spec.payload), board=True)]
        elif spec.on_demand:  # a rare answer: its encoder
            lines += ["", "", *_encoder(spec, describe(spec.payload))]
    return "\n".join(lines) + "\n"


def generate_mirror() -> str:
    m = messages
    lines = [
        '"""The other direction of the firmware codec: decoders of what the board sends',
        "and encoders of what it receives.",
        "",
        "GENERATED by tools/gen_protocol.py from protocol/messages.py: do not edit.",
        "The board never needs these, so they are not deployed; the tests use them to",
        "prove, message by message, that the firmware's struct code and Construct agree",
        "in both directions.",
        '"""',
        "",
        "from struct import pack_into, unpack_from",
    ]
    for spec in m.MESSAGES:
        fields = describe(spec.payload)
        if spec.direction == m.B2H:
            lines += ["", "", *_decoder(spec, fields, board=False)]
        else:
            lines += ["", "", *_encoder(spec, fields)]
    return "\n".join(lines) + "\n"


def generate_doc() -> str:
    m = messages
    out = [
        "# cellguard wire protocol",
        "",
        "GENERATED by `tools/gen_protocol.py` from `protocol/messages.py` (the Construct",
        "definitions): do not edit; change the definitions and regenerate.",
        "",
        f"Protocol version **{m.PROTOCOL_MAJOR}.{m.PROTOCOL_MINOR}**. All integers are",
        "little-endian. Units are in the field names: `_mv` millivolts, `_ma` milliamperes",
        "(positive = charging), `_dc` tenths of a degree Celsius, `_ms` milliseconds,",
        "`_cpct` hundredths of a percent.",
        "",
        "## Framing",
        "",
        "A frame on the wire is `COBS(header + payload + crc32)` followed by one `0x00`",
        "byte. `crc32` is `binascii.crc32(header + payload)` (CRC-32/ISO-HDLC) as u32.",
        f"The largest payload is {m.MAX_PAYLOAD} bytes, so the largest frame is",
        f"{m.MAX_FRAME} bytes before COBS and {m.MAX_WIRE_FRAME} bytes on the wire;",
        "both sides drop anything larger. A response carries its request's `seq`.",
        "",
        "| header field | type | meaning |",
        "|---|---|---|",
    ]
    for f in describe(m.FrameHeader):
        out.append(f"| `{f.name}` | {_TYPE_NAMES[f.fmt]} | {f.doc} |")
    for prefix, flags in m.FLAGS.items():
        out += ["", f"## {prefix.capitalize()} bits", "", "| bit | name |", "|---|---|"]
        for key, value in flags.flags.items():
            out.append(f"| 0x{value:08x} | `{key}` |")
    out += ["", "## Messages", "", "| id | message | direction | meaning |", "|---|---|---|---|"]
    for spec in m.MESSAGES:
        out.append(f"| 0x{spec.msg_id:02x} | {spec.name.upper()} | {spec.direction} | {spec.doc} |")
    for spec in m.MESSAGES:
        out += ["", f"### 0x{spec.msg_id:02x} {spec.name.upper()}", "", spec.doc + ".", ""]
        fields = describe(spec.payload)
        out += ["| field | type | meaning |", "|---|---|---|"]
        for f in fields:
            if f.kind == "int":
                typ = _TYPE_NAMES[f.fmt]
            elif f.kind == "str":
                typ = f"utf-8 string, {_TYPE_NAMES[f.fmt]} length prefix"
            elif f.kind == "bytes":
                typ = f"{f.length} bytes"
            elif f.kind == "rest":
                typ = "bytes, to the end of the payload"
            else:
                typ = f"{_TYPE_NAMES[f.fmt]}[] with {_TYPE_NAMES[f.count_fmt]} count prefix"
            doc = f.doc + (f" ({f.values})" if f.values else "")
            out.append(f"| `{f.name}` | {typ} | {doc} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    args = parser.parse_args(argv)
    stale = []
    outputs = ((CODEC_PATH, generate_codec()), (MIRROR_PATH, generate_mirror()),
               (RARE_PATH, generate_rare()), (DOC_PATH, generate_doc()))
    for path, text in outputs:
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        if args.check:
            stale.append(path.relative_to(ROOT))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        names = ", ".join(map(str, stale))
        print(f"stale generated files: {names}; run python tools/gen_protocol.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
