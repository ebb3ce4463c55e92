"""Signed builds and keys at deploy (docs/security.md, "Signed builds"): the host's
Ed25519 signing key, ``manifest.sig`` beside a build's manifest, ``cellguard deploy``
refusing what no trusted key signed or what changed after signing, before anything reaches
the board; ``deploy --lock`` and deploys onto a locked board.

The deploys run against the virtual dev board (real MicroPython on a pty, through
mpremote), as tests/test_deploy.py's do; the suite's own signing key
(tests/conftest.py) signs every build unless a test says otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from test_deploy import install, snapshot

from cellguard import cli
from cellguard.deploy import build as b
from cellguard.deploy import signing
from cellguard.deploy.deploy import BuildRefused, DeployError, check_build
from cellguard.deploy.deploy import deploy as run_deploy
from cellguard.link.auth import KEYS_ENV, KeyStore
from cellguard.link.client import BoardClient, Info
from cellguard.link.locking import lock
from cellguard.sim.virtual import VirtualBoard

# The firmware's own data: it changes whenever the firmware boots, and is its business.
BOARD_DATA = {"events.bin", "latches.bin", "health.bin", "life.0", "life.1", "life.2",
              "life.3", "key.bin", "audit.bin"}


def session_key() -> signing.SigningKey:
    key = signing.load_key()
    assert key is not None, "tests/conftest.py makes the suite a signing key"
    return key


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, b.Build]:
    """pico-4s as it is (on the board first), and another build of it to deploy: the
    firmware with one module changed, signed by the suite's key."""
    from test_deploy import _firmware_copy

    tmp = tmp_path_factory.mktemp("signed")
    changed = _firmware_copy(tmp / "fw", {"soc.py": "# signed\n"})
    return {"old": b.build("pico-4s", tmp / "old"),
            "new": b.build("pico-4s", tmp / "new", firmware=changed)}


def bundle_copy(build: b.Build, where: Path) -> Path:
    shutil.copytree(build.out, where)
    return where


def deploy_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    """``cellguard deploy ... --json``: exit status, the JSON (None when refused), stderr."""
    capsys.readouterr()
    code = cli.main(["deploy", *args, "--json"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, json.loads(out.out) if out.out.strip() else None, out.err


def hello(port: str, keys: KeyStore | None = None) -> Info:
    with BoardClient(port, keys=keys) as client:
        return client.hello(timeout_s=10)


def board_files(flash: Path) -> dict[str, bytes]:
    """The files a deploy writes: not the running firmware's own data, nor the temporary
    names it saves them under meanwhile (``.life.0.tmp~``, ``*.new``)."""
    return {k: v for k, v in snapshot(flash).items()
            if k not in BOARD_DATA and not Path(k).name.startswith(".")
            and not k.endswith(("~", ".new"))}


# -- the key and the signature, without a board --------------------------------------------
def test_signing_key_new_makes_a_private_key_only_its_owner_reads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(signing.SIGNING_KEY_ENV)
    monkeypatch.delenv(signing.TRUSTED_KEYS_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert cli.main(["signing-key", "show"]) == 1
    assert "no signing key" in capsys.readouterr().err
    assert cli.main(["signing-key", "new"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "config" / "cellguard" / "signing"
    path = folder / "release.key"
    assert signing.default_key_path() == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == ["release.key"]  # no temporary left
    key = signing.load_key()
    assert key is not None and key.key_id in out and key.public_pem() in out
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, as openssl
    assert key.key_id in repr(key) and "PRIVATE" not in repr(key)
    # `show` prints what another host trusts: the public key, never the private one.
    assert cli.main(["signing-key", "show"]) == 0
    shown = capsys.readouterr().out
    assert key.public_pem() in shown and "PRIVATE" not in shown
    # The own key is trusted, and nothing else yet.
    assert set(signing.trusted_keys()) == {key.key_id}
    # One the others may read is refused, naming the fix.
    path.chmod(0o644)
    with pytest.raises(signing.SigningError, match=r"can be read by others.*chmod 600"):
        signing.load_key()


def test_signing_key_new_never_writes_over_a_key(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys" / "release.key"
    first, _ = signing.new_key(path)
    before = path.read_bytes()
    with pytest.raises(signing.SigningError, match=f"exists already.*{first.key_id}.*--force"):
        signing.new_key(path)
    assert path.read_bytes() == before
    # The command says it in one line, and leaves the key as it was.
    env = {**os.environ, signing.SIGNING_KEY_ENV: str(path)}
    proc = subprocess.run([sys.executable, "-m", "cellguard.cli", "signing-key", "new"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1 and "exists already" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before
    # --force: a new key; the old one moved aside, never deleted.
    second, moved = signing.new_key(path, force=True)
    assert second.key_id != first.key_id and moved is not None
    assert moved.read_bytes() == before
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_build_is_signed_and_the_same_bytes_apart_from_the_signature(
        tmp_path: Path) -> None:
    other, _ = signing.new_key(tmp_path / "other.key")
    mine = session_key()
    signed = b.build("pico-4s", tmp_path / "mine")
    by_other = b.build("pico-4s", tmp_path / "other", key=other)
    unsigned = b.build("pico-4s", tmp_path / "none", sign=False)
    trees = [{p.relative_to(o).as_posix(): p.read_bytes() for p in o.rglob("*") if p.is_file()}
             for o in (signed.out, by_other.out, unsigned.out)]
    assert "manifest.sig" not in trees[2] and unsigned.signature is None
    assert trees[0].pop("manifest.sig") != trees[1].pop("manifest.sig")
    assert trees[0] == trees[1] == trees[2]  # every other byte the same
    sig = json.loads(signed.out.joinpath("manifest.sig").read_bytes())
    assert sig == {"algorithm": "ed25519", "format": 1, "key_id": mine.key_id,
                   "signature": sig["signature"], "signed_file": "manifest.json"}
    assert signed.signed_by == mine.key_id and by_other.signed_by == other.key_id
    # Over the manifest's exact bytes, checked here with the library alone.
    public = mine.public
    assert isinstance(public, Ed25519PublicKey)
    public.verify(bytes.fromhex(sig["signature"]), trees[0]["manifest.json"])
    # Deterministic: the same manifest and key sign the same bytes.
    again = b.build("pico-4s", tmp_path / "again")
    assert again.signature == signed.signature


def test_a_build_without_a_signing_key_says_it_is_unsigned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(signing.SIGNING_KEY_ENV, str(tmp_path / "none.key"))
    assert cli.main(["build", "--board", "pico-4s", "--out", str(tmp_path / "o"),
                     "--no-heap"]) == 0
    out = capsys.readouterr().out
    assert "UNSIGNED" in out and "cellguard signing-key new" in out
    assert not (tmp_path / "o" / "manifest.sig").exists()
    assert cli.main(["build", "--board", "pico-4s", "--out", str(tmp_path / "o"),
                     "--no-heap", "--json"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["signed_by"] is None and "UNSIGNED" in printed.err


def test_trusting_another_hosts_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(signing.TRUSTED_KEYS_ENV, str(tmp_path / "trusted"))
    other, _ = signing.new_key(tmp_path / "other.key")
    shown = tmp_path / "shown.txt"  # `signing-key show` of the other host, saved whole
    shown.write_text(f"signing key {other.key_id} (Ed25519) in ...\n{other.public_pem()}")
    assert other.key_id not in signing.trusted_keys()
    assert cli.main(["signing-key", "trust", str(shown)]) == 0
    assert f"now trusting key {other.key_id}" in capsys.readouterr().out
    assert (tmp_path / "trusted" / f"{other.key_id}.pem").read_text() == other.public_pem()
    assert signing.trusted_keys()[other.key_id].source.endswith(f"{other.key_id}.pem")
    assert cli.main(["signing-key", "trust", str(shown)]) == 0
    assert "already trusted" in capsys.readouterr().out
    assert cli.main(["signing-key", "list"]) == 0
    listed = capsys.readouterr().out
    assert other.key_id in listed and session_key().key_id in listed
    # Not a key: one clear line; a damaged file in the trusted folder names itself.
    assert cli.main(["signing-key", "trust", str(tmp_path / "other.key")]) == 1
    err = capsys.readouterr().err
    assert "holds no PEM public key" in err and "Traceback" not in err
    (tmp_path / "trusted" / "broken.pem").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n"
                                                     "-----END PUBLIC KEY-----\n")
    with pytest.raises(signing.SigningError, match=r"broken\.pem"):
        signing.trusted_keys()


def test_check_build_names_what_is_wrong(builds: dict[str, b.Build], tmp_path: Path) -> None:
    """Each way a build can be wrong, without a board: the one line the deploy refuses with."""
    new = builds["new"]
    assert check_build(new).signed_by == session_key().key_id

    def changed(**what: Any) -> b.Build:
        files = dict(new.files)
        files.update(what.get("files", {}))
        for gone in what.get("gone", ()):
            del files[gone]
        return b.Build(new.out, new.board, new.mcu, new.arch, new.manifest, files, [],
                       what.get("signature", new.signature))

    mpy = "cellguard_fw/soc.mpy"
    flipped = bytearray(new.files[mpy])
    flipped[len(flipped) // 2] ^= 1
    manifest = json.loads(new.files["manifest.json"])
    manifest["firmware_version"] = "9.9.9"
    edited = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    for build, words in (
            (changed(signature=None), "is unsigned"),
            (changed(files={mpy: bytes(flipped)}), f"{mpy} differs from manifest.json"),
            (changed(files={"cellguard_fw/extra.mpy": b"M"}), "extra.mpy is not listed"),
            (changed(gone=[mpy]), f"{mpy} is listed in manifest.json but missing"),
            (changed(files={"manifest.json": edited}),
             "manifest.json does not match its signature"),
            (changed(signature=b"{}"), "manifest.sig is damaged")):
        with pytest.raises(BuildRefused) as refused:
            check_build(build)
        text = str(refused.value)
        assert words in text and "nothing was deployed" in text and "\n" not in text, text
    # --allow-unsigned: no signature, or an untrusted one, only warns ...
    warned: list[str] = []
    assert not check_build(changed(signature=None), True, warn=warned.append).verified
    assert warned and "unsigned" in warned[0] and "--allow-unsigned" in warned[0]
    # ... but a file that does not match the manifest is refused all the same.
    with pytest.raises(BuildRefused, match="differs"):
        check_build(changed(signature=None, files={mpy: bytes(flipped)}), True)


# -- deploys -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def running(builds: dict[str, b.Build], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[VirtualBoard, Path]]:
    """A virtual Pico running the old build, confirmed: the refusals below leave it so."""
    flash = tmp_path_factory.mktemp("running-flash")
    install(flash, builds["old"])
    with VirtualBoard("pico-4s", flash=flash) as vb:
        assert hello(vb.port).manifest_sha256 == builds["old"].sha256
        yield vb, flash


def assert_refused(running: tuple[VirtualBoard, Path], capsys: pytest.CaptureFixture[str],
                   bundle: Path, *words: str) -> None:
    """``deploy --bundle`` is refused in one line naming the problem, before the board is
    touched: the firmware runs on, not even stopped, and its flash is as it was."""
    vb, flash = running
    before = board_files(flash)
    resets = list(vb.resets)
    code, out, err = deploy_cli(capsys, "--bundle", str(bundle), "--port", vb.port)
    assert code == 1 and out is None
    line = err.strip()
    assert line.startswith("cellguard: error: ") and "\n" not in line, err
    for word in (*words, "nothing was deployed"):
        assert word in line, (word, line)
    assert list(vb.resets) == resets  # no ENTER_REPL, no reset
    info = hello(vb.port)
    assert (info.boot, info.manifest_sha256) == ("confirmed", json.loads(
        (flash / "a" / "manifest.json").read_text())["sha256"])
    assert board_files(flash) == before


def test_a_bundle_with_one_byte_of_one_module_changed_is_refused(
        builds: dict[str, b.Build], running: tuple[VirtualBoard, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    bundle = bundle_copy(builds["new"], tmp_path / "bundle")
    module = bundle / "cellguard_fw" / "protection.mpy"
    data = bytearray(module.read_bytes())
    data[100] ^= 0x01
    module.write_bytes(bytes(data))
    assert_refused(running, capsys, bundle, "cellguard_fw/protection.mpy differs from "
                                            "manifest.json")


def test_a_bundle_whose_manifest_was_edited_is_refused(
        builds: dict[str, b.Build], running: tuple[VirtualBoard, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The whole attack: a module changed and the manifest made to match it (its hash and
    the set hash), the old signature left beside it."""
    bundle = bundle_copy(builds["new"], tmp_path / "bundle")
    module = bundle / "cellguard_fw" / "protection.mpy"
    module.write_bytes(module.read_bytes() + b"\x00")
    manifest = json.loads((bundle / "manifest.json").read_text())
    files = {f["path"]: (bundle / f["path"]).read_bytes() for f in manifest["files"]}
    manifest["files"] = [{"path": p, "size": len(d), "sha256": b.sha256(d)}
                         for p, d in sorted(files.items())]
    manifest["sha256"] = b.set_hash(files)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    assert b.check_files(b.read_build(bundle).files) == ""  # consistent: only the signature
    assert_refused(running, capsys, bundle, "manifest.json does not match its signature",
                   session_key().key_id)


def test_a_bundle_with_a_file_added_or_removed_is_refused(
        builds: dict[str, b.Build], running: tuple[VirtualBoard, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    added = bundle_copy(builds["new"], tmp_path / "added")
    (added / "cellguard_fw" / "backdoor.mpy").write_bytes(b"M\x06")
    assert_refused(running, capsys, added, "cellguard_fw/backdoor.mpy is not listed in "
                                           "manifest.json")
    removed = bundle_copy(builds["new"], tmp_path / "removed")
    (removed / "cellguard_fw" / "protection.mpy").unlink()
    assert_refused(running, capsys, removed, "cellguard_fw/protection.mpy is listed in "
                                             "manifest.json but missing")


def test_a_bundle_signed_by_a_key_this_host_does_not_trust_is_refused(
        builds: dict[str, b.Build], running: tuple[VirtualBoard, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    other, _ = signing.new_key(tmp_path / "other.key")
    bundle = bundle_copy(builds["new"], tmp_path / "bundle")
    (bundle / "manifest.sig").write_bytes(other.sign_manifest(
        (bundle / "manifest.json").read_bytes()))
    assert_refused(running, capsys, bundle, f"signed by key {other.key_id}, which this host "
                                            "does not trust", "signing-key trust")
    # A key that signs is not enough: it must be one this host trusts. Trusted, it goes
    # through the check (shown by a dry run, which writes nothing).
    monkeypatch.setenv(signing.TRUSTED_KEYS_ENV, str(tmp_path / "trusted"))
    other_pub = tmp_path / "other.pem"
    other_pub.write_text(other.public_pem())
    signing.trust(other_pub)
    vb, _ = running
    code, out, _ = deploy_cli(capsys, "--bundle", str(bundle), "--port", vb.port, "--dry-run")
    assert code == 0 and out["signed_by"] == other.key_id and out["result"] == "dry_run"


def test_an_unsigned_bundle_is_refused_and_goes_on_with_allow_unsigned(
        builds: dict[str, b.Build], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    bundle = bundle_copy(builds["new"], tmp_path / "bundle")
    (bundle / "manifest.sig").unlink()
    flash = tmp_path / "flash"
    install(flash, builds["old"])
    with VirtualBoard("pico-4s", flash=flash) as vb:
        assert_refused((vb, flash), capsys, bundle, "is unsigned (no manifest.sig)",
                       "cellguard signing-key new", "--allow-unsigned")
        # Built here by a host without a signing key: refused the same way.
        monkeypatch.setenv(signing.SIGNING_KEY_ENV, str(tmp_path / "no.key"))
        assert_refused((vb, flash), capsys, bundle, "is unsigned")
        code, out, err = deploy_cli(capsys, "--board", "pico-4s", "--port", vb.port)
        assert code == 1 and "is unsigned" in err and "nothing was deployed" in err
        assert f"this host has no signing key: {tmp_path / 'no.key'}" in err
        code, out, err = deploy_cli(capsys, "--bundle", str(bundle), "--port", vb.port,
                                    "--allow-unsigned")
        assert code == 0, err
        assert "warning:" in err and "unsigned" in err and "--allow-unsigned" in err
        assert (out["result"], out["boot"], out["signed_by"]) == ("deployed", "confirmed",
                                                                 None)
        assert hello(vb.port).manifest_sha256 == builds["new"].sha256


def test_a_signed_bundle_deploys(builds: dict[str, b.Build], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    flash = tmp_path / "flash"
    install(flash, builds["old"])
    with VirtualBoard("pico-4s", flash=flash) as vb:
        code, out, err = deploy_cli(capsys, "--bundle", str(builds["new"].out), "--port",
                                    vb.port)
        assert code == 0, err
        assert (out["result"], out["boot"], out["slot"]) == ("deployed", "confirmed", "b")
        assert out["signed_by"] == session_key().key_id and out["locked_with"] is None
        assert [c["path"] for c in out["changes"] if c["action"] == "send"] == [
            "/b/cellguard_fw/soc.mpy", "/b/manifest.json"]  # the signature stays on the host
        assert not (flash / "b" / "manifest.sig").exists()
        assert hello(vb.port).manifest_sha256 == builds["new"].sha256


# -- locked boards -------------------------------------------------------------------------
def test_a_deploy_onto_a_locked_board_needs_its_key_and_leaves_it_locked(
        builds: dict[str, b.Build], tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    flash = tmp_path / "flash"
    install(flash, builds["old"])
    with VirtualBoard("pico-4s", flash=flash) as vb:
        with BoardClient(vb.port, keys=keys) as client:
            key = lock(client)
        held: list[bool] = []

        def presence(on: bool) -> None:  # the person at the board, asked by the deploy
            held.append(on)
            vb.hold_presence(on)

        # A host without the key: refused at ENTER_REPL, naming the key store; nothing
        # was written and the firmware runs on.
        before = board_files(flash)
        elsewhere = KeyStore(tmp_path / "elsewhere")
        with pytest.raises(DeployError, match=r"locked with key 1.*elsewhere.*nothing was "
                                              "written"):
            run_deploy(None, vb.port, the_build=builds["new"], keys=elsewhere,
                       presence=presence)
        assert board_files(flash) == before and held == []
        info = hello(vb.port)
        assert (info.manifest_sha256, info.key_id) == (builds["old"].sha256, key.key_id)
        # The host that holds it: ENTER_REPL inside AUTH, with the button held.
        result = run_deploy(None, vb.port, the_build=builds["new"], keys=keys,
                            presence=presence)
        assert (result.result, result.boot, result.reached_by) == ("deployed", "confirmed",
                                                                   "enter_repl")
        assert held == [True, False]
        assert (flash / "key.bin").exists()
        with BoardClient(vb.port, keys=keys) as client:
            info = client.hello(timeout_s=10)
            assert info.manifest_sha256 == builds["new"].sha256
            assert info.locked and info.key_id == key.key_id  # still locked, the same key
            assert client.set_config("telemetry_period_ms", 700).value == 700  # it works
        with BoardClient(vb.port, keys=elsewhere) as client:
            client.hello(timeout_s=10)
            with pytest.raises(Exception, match="locked with key 1"):
                client.set_config("telemetry_period_ms", 800)  # and still takes no plain write


def test_deploy_lock_gives_the_board_a_key_once_its_build_runs(
        builds: dict[str, b.Build], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(KEYS_ENV, str(tmp_path / "keys"))
    with pytest.raises(SystemExit) as usage:
        cli.main(["deploy", "--bundle", str(builds["old"].out), "--port", "x", "--lock",
                  "--dry-run"])
    assert usage.value.code == 2
    capsys.readouterr()
    with VirtualBoard("pico-4s", flash=tmp_path / "flash") as vb:  # a board never deployed
        code, out, err = deploy_cli(capsys, "--bundle", str(builds["old"].out), "--port",
                                    vb.port, "--lock")
        assert code == 0, err
        assert (out["result"], out["boot"], out["locked_with"]) == ("deployed", "confirmed", 1)
        assert "locked board" in out["message"]
        keys = KeyStore(tmp_path / "keys")
        info = hello(vb.port)
        stored = keys.get(info.unique_id)
        assert info.locked and stored is not None and stored.key_id == info.key_id == 1
        # The next deploy, from this host: the key opens ENTER_REPL (the person at the
        # board holds its button); --lock again keeps the key the board has.
        vb.hold_presence(True)
        try:
            code, again, err = deploy_cli(capsys, "--bundle", str(builds["new"].out),
                                          "--port", vb.port, "--lock")
        finally:
            vb.hold_presence(False)
        assert code == 0, err
        assert (again["result"], again["reached_by"], again["locked_with"]) == (
            "deployed", "enter_repl", 1)
        assert "locked already" in again["message"]
        assert keys.get(info.unique_id) == stored
        info = hello(vb.port, keys)
        assert (info.manifest_sha256, info.key_id) == (builds["new"].sha256, 1)
