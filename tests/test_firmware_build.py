"""The firmware builds: it compiles for MicroPython, its generated files are fresh, and it
type-checks against the MicroPython stubs of each supported port.

Each check is paired with a test proving it can fail, so a check that silently
stopped checking (wrong paths, wrong config) would be noticed.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
GENERATOR = ROOT / "tools" / "gen_protocol.py"
PYRIGHT = ROOT / "node_modules" / ".bin" / "pyright"
PYRIGHT_CONFIGS = sorted((ROOT / "tools" / "pyright").glob("*.json"))

FIRMWARE_FILES = sorted(p for p in FIRMWARE.rglob("*.py") if "__pycache__" not in p.parts)


def run(args: list[str | Path], cwd: Path = ROOT, timeout: float = 900) -> tuple[int, str]:
    """Run a command; return its exit status and its stdout and stderr together. The
    timeout only catches a hang: pyright took over 120 s on this 2-core machine
    under a load of 15."""
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    return proc.returncode, proc.stdout + proc.stderr


# -- (a) mpy-cross -------------------------------------------------------------------


def load_tool(name: str) -> ModuleType:
    """Import tools/<name>.py from the repository (tools/ is not a package)."""
    key = f"cellguard_tools_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


build_mpy = load_tool("build_mpy")


def load_generator() -> ModuleType:
    """Import tools/gen_protocol.py from the repository (it is not a package)."""
    return load_tool("gen_protocol")


def mpy_compile(source: Path, out: Path) -> tuple[int, str]:
    """Compile ``source`` as the project builds firmware (tools/build_mpy.py): from the
    firmware folder, or for a file elsewhere from the folder holding it."""
    try:
        build_mpy.compile_module(source.parent if not source.is_relative_to(FIRMWARE)
                                 else FIRMWARE, source, out)
    except build_mpy.BuildError as e:
        return 1, str(e)
    return 0, ""


def test_firmware_files_found() -> None:
    names = {p.relative_to(FIRMWARE).as_posix() for p in FIRMWARE_FILES}
    assert {"main.py", "cellguard_fw/codec.py", "cellguard_fw/link.py"} <= names


@pytest.mark.parametrize(
    "source", FIRMWARE_FILES, ids=[p.relative_to(FIRMWARE).as_posix() for p in FIRMWARE_FILES]
)
def test_compiles_with_mpy_cross(source: Path, tmp_path: Path) -> None:
    out = tmp_path / (source.stem + ".mpy")
    status, output = mpy_compile(source, out)
    assert status == 0, f"mpy-cross failed on {source.relative_to(ROOT)}:\n{output}"
    data = out.read_bytes()
    assert data[:1] == b"M" and len(data) > 8, "not a .mpy file"


@pytest.mark.parametrize(
    "source",
    [
        "def f(:\n    pass\n",  # a syntax error anywhere
        "x = 1\nmatch x:\n    case 1:\n        pass\n",  # CPython 3.11 only: no `match`
    ],
    ids=["syntax-error", "cpython-only-syntax"],
)
def test_mpy_cross_rejects_bad_source(source: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(source)
    status, output = mpy_compile(bad, tmp_path / "bad.mpy")
    assert status != 0
    assert "SyntaxError" in output


def long_path(base: Path, at_least: int = 160) -> Path:
    """A folder under ``base`` whose absolute path is at least ``at_least`` characters."""
    path = base
    while len(str(path)) < at_least:
        path = path / ("deeply-nested-checkout-" + "x" * 40)
    return path


def firmware_copy(where: Path) -> Path:
    copy = where / "firmware"
    shutil.copytree(FIRMWARE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_mpy_output_does_not_depend_on_where_the_firmware_sits(tmp_path: Path) -> None:
    """A .mpy records its source name, and the board interns it: compiled from a
    150+-character path and from a short one, the firmware is the same bytes."""
    long_fw = firmware_copy(long_path(tmp_path / "l"))
    short_fw = firmware_copy(tmp_path / "s")
    assert len(str(long_fw)) >= 150
    long_built = build_mpy.build_package(long_fw, tmp_path / "out-long")
    short_built = build_mpy.build_package(short_fw, tmp_path / "out-short")
    assert set(long_built) == {f"cellguard_fw/{p.stem}.mpy"
                               for p in build_mpy.deployed_sources(FIRMWARE)}
    assert "cellguard_fw/app.mpy" in long_built
    assert long_built == short_built
    for name, data in long_built.items():
        assert str(tmp_path).encode() not in data, name
        assert f"cellguard_fw/{Path(name).stem}.py".encode() in data, name


def test_build_tool_cli_writes_the_deployable_tree(tmp_path: Path) -> None:
    status, output = run([sys.executable, ROOT / "tools" / "build_mpy.py", "--out",
                          tmp_path / "mpy"])
    assert status == 0, output
    names = sorted(p.name for p in (tmp_path / "mpy" / "cellguard_fw").iterdir())
    assert names == sorted(f"{p.stem}.mpy" for p in build_mpy.deployed_sources(FIRMWARE))
    assert "codec_mirror.mpy" not in names and "_cpython_compat.mpy" not in names
    assert (tmp_path / "mpy" / "main.py").read_text() == (FIRMWARE / "main.py").read_text()
    status, output = run([sys.executable, ROOT / "tools" / "build_mpy.py", "--firmware",
                          tmp_path / "nowhere", "--out", tmp_path / "x"])
    assert status == 2 and "no cellguard_fw/ package" in output
    assert "Traceback" not in output


# -- (b) generated files are fresh ---------------------------------------------------


def test_gen_protocol_check_passes() -> None:
    status, output = run([sys.executable, GENERATOR, "--check"])
    assert status == 0, f"generated files are stale; run tools/gen_protocol.py\n{output}"


def test_generated_files_equal_generator_output() -> None:
    gen = load_generator()
    assert gen.CODEC_PATH == FIRMWARE / "cellguard_fw" / "codec.py"
    assert gen.generate_codec() == gen.CODEC_PATH.read_text()
    assert gen.generate_doc() == gen.DOC_PATH.read_text()


def test_generator_output_follows_the_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing the Construct definitions changes the output, so --check would see it."""
    from construct import Int16ul, Struct

    gen = load_generator()
    m = gen.messages
    codec_before, doc_before = gen.generate_codec(), gen.generate_doc()
    hello = m.BY_NAME["hello"]
    grown = m.MessageSpec(
        hello.msg_id,
        hello.name,
        Struct(*hello.payload.subcons, "host_flags" / Int16ul * "new field"),
        hello.direction,
        hello.doc,
    )
    monkeypatch.setattr(m, "MESSAGES", tuple(grown if s is hello else s for s in m.MESSAGES))
    codec_after, doc_after = gen.generate_codec(), gen.generate_doc()
    assert codec_after != gen.CODEC_PATH.read_text()
    # HELLO goes host -> board: the board's codec decodes it, the mirror encodes it
    assert 'host_major, host_minor, host_flags = unpack_from("<BBH", buf, off)' in codec_after
    mirror_after = gen.generate_mirror()
    assert "def encode_hello(buf, off, v0, v1, v2):" in mirror_after
    assert "Fields v0...: host_major, host_minor, host_flags." in mirror_after
    assert 'pack_into("<BBH", buf, off, v0, v1, v2)' in mirror_after
    assert doc_after != gen.DOC_PATH.read_text()
    assert "`host_flags`" in doc_after
    monkeypatch.undo()
    assert (gen.generate_codec(), gen.generate_doc()) == (codec_before, doc_before)


def test_gen_protocol_check_fails_on_stale_files(tmp_path: Path) -> None:
    """End to end on a copy of the repository's generator inputs and outputs."""
    for rel in (
        "tools/gen_protocol.py",
        "protocol/__init__.py",
        "protocol/messages.py",
        "protocol/README.md",
        "firmware/cellguard_fw/codec.py",
        "firmware/cellguard_fw/codec_mirror.py",
        "firmware/cellguard_fw/codec_rare.py",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    gen_copy = tmp_path / "tools" / "gen_protocol.py"
    assert run([sys.executable, gen_copy, "--check"], cwd=tmp_path)[0] == 0

    messages = tmp_path / "protocol" / "messages.py"
    line = '    "host_minor" / Int8ul * "host\'s protocol minor version",\n'
    text = messages.read_text()
    assert text.count(line) == 1
    messages.write_text(text.replace(line, line + '    "host_flags" / Int8ul * "new",\n'))

    status, output = run([sys.executable, gen_copy, "--check"], cwd=tmp_path)
    assert status == 1, output
    assert "firmware/cellguard_fw/codec.py" in output and "protocol/README.md" in output
    assert "host_flags" not in (tmp_path / "firmware/cellguard_fw/codec.py").read_text()

    assert run([sys.executable, gen_copy], cwd=tmp_path)[0] == 0  # regenerate
    assert "host_flags" in (tmp_path / "firmware/cellguard_fw/codec.py").read_text()
    assert run([sys.executable, gen_copy, "--check"], cwd=tmp_path)[0] == 0


# -- (c) firmware type check ---------------------------------------------------------


def test_pyright_configs_found() -> None:
    assert [p.stem for p in PYRIGHT_CONFIGS] == ["esp32", "rp2"]
    for config in PYRIGHT_CONFIGS:
        stubs = (config.parent / json.loads(config.read_text())["stubPath"]).resolve()
        assert (stubs / "machine.pyi").exists(), f"{stubs} has no stubs: run make setup"


class PyrightJob:
    """A pyright run started in the background; pyright is slow to start, so all runs
    of this module start together and each test waits for its own."""

    def __init__(self, config: Path, cwd: Path) -> None:
        self.config = config
        self.proc = subprocess.Popen(
            [str(PYRIGHT), "-p", str(config)],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._result: tuple[int, str] | None = None

    def result(self) -> tuple[int, str]:
        if self._result is None:
            output, _ = self.proc.communicate(timeout=180)
            self._result = (self.proc.returncode, output)
        return self._result


_PATH_KEYS = {"include", "exclude", "typeshedPath", "stubPath", "venvPath", "extraPaths"}


def retarget(config: Path, firmware_copy: Path) -> dict[str, Any]:
    """The pyright config ``config``, checking ``firmware_copy`` instead of firmware/.

    Paths into firmware/ move to the copy; every other path (the stubs) becomes absolute,
    so the copy is checked against exactly the same stubs.
    """
    base = config.parent

    def move(path: str) -> str:
        target = (base / path).resolve()
        if target.is_relative_to(FIRMWARE):
            return str(firmware_copy / target.relative_to(FIRMWARE))
        return str(target)

    def move_env(env: dict[str, Any]) -> dict[str, Any]:
        moved = dict(env)
        if "root" in moved:
            moved["root"] = move(moved["root"])
        if "extraPaths" in moved:
            moved["extraPaths"] = [move(p) for p in moved["extraPaths"]]
        return moved

    settings: dict[str, Any] = json.loads(config.read_text())
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if key in _PATH_KEYS:
            out[key] = [move(v) for v in value] if isinstance(value, list) else move(value)
        elif key == "executionEnvironments":
            out[key] = [move_env(env) for env in value]
        else:
            assert "path" not in key.lower(), f"retarget() does not know the path key {key!r}"
            out[key] = value
    return out


BROKEN = "broken-rp2"


def broken_firmware_config(tmp: Path) -> Path:
    """A copy of firmware/ calling ``time.ticks_msx`` (no port has it), and a pyright
    config checking the copy against the rp2 stubs."""
    copy = tmp / "firmware"
    shutil.copytree(FIRMWARE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "cellguard_fw" / "soc.py").open("a") as f:
        f.write("\nimport time\ntime.ticks_msx()\n")
    settings = retarget(ROOT / "tools" / "pyright" / "rp2.json", copy)
    assert settings["stubPath"] == str(ROOT / ".stubs" / "rp2")
    config = tmp / "pyrightconfig.json"
    config.write_text(json.dumps(settings, indent=2))
    return config


@pytest.fixture(scope="module")
def pyright(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, PyrightJob]]:
    assert PYRIGHT.exists(), "pyright is missing: run `npm ci` (make setup)"
    jobs = {c.stem: PyrightJob(c.relative_to(ROOT), ROOT) for c in PYRIGHT_CONFIGS}
    tmp = tmp_path_factory.mktemp("pyright")
    jobs[BROKEN] = PyrightJob(broken_firmware_config(tmp), tmp)
    try:
        yield jobs
    finally:
        for job in jobs.values():
            if job.proc.poll() is None:
                job.proc.kill()
            job.proc.communicate()


@pytest.mark.parametrize("config", PYRIGHT_CONFIGS, ids=[p.stem for p in PYRIGHT_CONFIGS])
def test_firmware_type_checks(pyright: dict[str, PyrightJob], config: Path) -> None:
    status, output = pyright[config.stem].result()
    assert status == 0, f"pyright -p {config.relative_to(ROOT)} failed:\n{output}"
    assert "0 errors" in output


def test_type_check_catches_a_misspelt_micropython_call(pyright: dict[str, PyrightJob]) -> None:
    """``time.ticks_msx`` does not exist: checking the broken copy must fail on it."""
    status, output = pyright[BROKEN].result()
    assert status != 0, output
    assert "ticks_msx" in output and "soc.py" in output
    # Only the injected line is wrong: the copy is checked exactly like the original.
    assert "1 error," in output, output


def test_each_module_folds_the_protocol_numbers_it_uses() -> None:
    """The codec's constants are private (mpy-cross folds them: the board interns no
    name for them), so each firmware module keeps folded copies of those it uses. Each
    copy equals the codec's, and no module reads one as ``codec.NAME``, which the
    board does not have (CPython finds it through the codec's ``__getattr__``)."""
    import re

    from cellguard_fw import codec

    folded = re.compile(r"^_([A-Z][A-Z0-9_]*) = const\((0x[0-9a-f]+|\d+)\)", re.M)
    read = re.compile(r"\bcodec\.([A-Z][A-Z0-9_]*)\b|^from \.codec import (.*)$", re.M)
    checked = 0
    for path in sorted((FIRMWARE / "cellguard_fw").glob("*.py")):
        if path.name.startswith("codec"):
            continue
        text = path.read_text()
        for name, value in folded.findall(text):
            if hasattr(codec, name):
                assert int(value, 0) == getattr(codec, name), (path.name, name)
                checked += 1
        for dotted, imported in read.findall(text):
            names = [dotted] if dotted else [n.strip() for n in imported.split(",")]
            ints = [n for n in names if isinstance(getattr(codec, n, None), int)]
            assert not ints, (path.name, ints)
    assert checked >= 100, checked  # app, config, protection_setup, link, ... fold theirs
    # ... and the codec itself exports no constant but the header's struct format
    public = [n for n in vars(codec) if n.isupper() and not n.startswith("_")]
    assert public == ["HEADER_FMT"], public
