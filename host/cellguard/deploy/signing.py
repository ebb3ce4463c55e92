"""Signed builds: an Ed25519 signature over a build's ``manifest.json`` (docs/security.md,
"Signed builds").

``cellguard build`` signs the manifest it writes with this host's **signing key** and puts
the signature beside it as ``manifest.sig``; ``cellguard deploy`` checks that signature
against the **trusted keys** and every file against the manifest before anything reaches
a board. The manifest lists each file's size and SHA-256, so the one signature covers
every byte that goes onto the flash.

Where the keys live (as the board keys of :mod:`cellguard.link.auth`, under the user's
config folder unless an environment variable names another place):

- the signing key: ``$CELLGUARD_SIGNING_KEY`` (a file), else
  ``$XDG_CONFIG_HOME/cellguard/signing/release.key`` (``~/.config``): an Ed25519 private
  key, PEM (PKCS#8, as ``openssl genpkey -algorithm ed25519`` writes it), mode 0600, in
  a folder of mode 0700;
- the trusted keys: ``$CELLGUARD_TRUSTED_KEYS`` (a folder), else
  ``.../cellguard/signing/trusted/``: one public key a file (``*.pem``,
  SubjectPublicKeyInfo PEM), plus this host's own signing key's public key.

``manifest.sig`` is a small JSON object (sorted keys, one line a key)::

    {"algorithm": "ed25519", "format": 1, "key_id": "<16 hex>",
     "signature": "<128 hex: the 64-byte Ed25519 signature>", "signed_file": "manifest.json"}

The signature is over the exact bytes of ``manifest.json``. A key's id is the first
16 hex digits of the SHA-256 of its 32-byte raw public key. Ed25519 signatures are
deterministic: the same manifest signed with the same key gives the same file.

Every piece of cryptography here is the ``cryptography`` package's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..errors import CellguardError

SIGNING_KEY_ENV = "CELLGUARD_SIGNING_KEY"
"""Environment variable naming the signing key's file (else the user's config folder)."""
TRUSTED_KEYS_ENV = "CELLGUARD_TRUSTED_KEYS"
"""Environment variable naming the folder of trusted public keys."""

SIGNATURE = "manifest.sig"
SIGNED_FILE = "manifest.json"
SIGNATURE_FORMAT = 1
ALGORITHM = "ed25519"
OWN_KEY = "this host's signing key"
KEY_ID_HEX = 16

_PEM_PUBLIC = re.compile(rb"-----BEGIN PUBLIC KEY-----\s+[A-Za-z0-9+/=\s]+?"
                         rb"-----END PUBLIC KEY-----")
_HEX = re.compile(r"^[0-9a-f]+$")


class SigningError(CellguardError):
    """A signing key or a trusted key that cannot be made, read or used."""


def _config_folder() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "cellguard" / "signing"


def default_key_path() -> Path:
    """``$CELLGUARD_SIGNING_KEY``, else ``$XDG_CONFIG_HOME/cellguard/signing/release.key``."""
    if os.environ.get(SIGNING_KEY_ENV):
        return Path(os.environ[SIGNING_KEY_ENV])
    return _config_folder() / "release.key"


def default_trusted_folder() -> Path:
    """``$CELLGUARD_TRUSTED_KEYS``, else ``$XDG_CONFIG_HOME/cellguard/signing/trusted``."""
    if os.environ.get(TRUSTED_KEYS_ENV):
        return Path(os.environ[TRUSTED_KEYS_ENV])
    return _config_folder() / "trusted"


def key_id(public: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the SHA-256 of the raw 32-byte public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@dataclass(frozen=True)
class SigningKey:
    """This host's Ed25519 private key and the file it came from."""

    private: Ed25519PrivateKey
    path: Path

    def __repr__(self) -> str:  # never print the secret
        return f"SigningKey(key_id={self.key_id!r}, path={str(self.path)!r})"

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def public_pem(self) -> str:
        return public_pem(self.public)

    def sign_manifest(self, manifest: bytes) -> bytes:
        """The ``manifest.sig`` file for these exact manifest bytes."""
        return signature_file(self.key_id, self.private.sign(manifest))


@dataclass(frozen=True)
class TrustedKey:
    """A public key whose signatures ``cellguard deploy`` accepts, and where it came from."""

    public: Ed25519PublicKey
    source: str  # OWN_KEY, or the file in the trusted folder

    @property
    def key_id(self) -> str:
        return key_id(self.public)


def signature_file(kid: str, signature: bytes) -> bytes:
    data = {"algorithm": ALGORITHM, "format": SIGNATURE_FORMAT, "key_id": kid,
            "signature": signature.hex(), "signed_file": SIGNED_FILE}
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


# -- the private key ---------------------------------------------------------------------
def _write_new(path: Path, data: bytes, mode: int, replace: bool = False) -> Path | None:
    """Write ``data`` to ``path`` under a temporary name beside it, then link it into place:
    never over an existing file. With ``replace`` the existing file is first renamed to
    ``<name>.replaced-<n>`` (returned), never written over or deleted."""
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    moved: Path | None = None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace and path.exists():
            n = 1
            while path.with_name(f"{path.name}.replaced-{n}").exists():
                n += 1
            moved = path.with_name(f"{path.name}.replaced-{n}")
            os.rename(path, moved)
        try:
            os.link(tmp, path)  # fails if the name exists: no overwrite, even in a race
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: look, then rename
            if path.exists():
                raise FileExistsError(path) from None
            os.rename(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return moved


def _private_folder(folder: Path, ours: bool) -> None:
    """Make ``folder`` (mode 0700); the default folder is ours and is kept at 0700 too
    (a folder named by the environment may be a shared one: left as it is)."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if created or ours:
        folder.chmod(0o700)


def new_key(path: Path | None = None, force: bool = False) -> tuple[SigningKey, Path | None]:
    """Make a signing key at ``path`` (default :func:`default_key_path`): mode 0600, in a
    folder of mode 0700. An existing key is never written over: refused, or with
    ``force`` moved aside to ``<name>.replaced-<n>`` (returned) first."""
    path = Path(path) if path is not None else default_key_path()
    if path.exists() and not force:
        raise SigningError(f"a signing key exists already at {path} (key "
                           f"{_describe_existing(path)}); --force moves it aside and makes "
                           "a new one (builds signed with it then need its public key in the "
                           "trusted folder)")
    if path.exists() and not path.is_file():
        raise SigningError(f"{path} is not a file; name a file for the signing key")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    try:
        _private_folder(path.parent, ours=path.parent == _config_folder())
        moved = _write_new(path, pem, stat.S_IRUSR | stat.S_IWUSR, replace=force)
    except FileExistsError:
        raise SigningError(f"a signing key appeared at {path} meanwhile; nothing was "
                           "written over it") from None
    except OSError as exc:
        raise SigningError(f"cannot write the signing key {path}: {exc.strerror}") from None
    return SigningKey(private, path), moved


def _describe_existing(path: Path) -> str:
    try:
        key = load_key(path)
    except SigningError:
        return "unreadable"
    return key.key_id if key is not None else "unreadable"


def load_key(path: Path | None = None) -> SigningKey | None:
    """This host's signing key, or None when there is no file at ``path`` (default
    :func:`default_key_path`). A damaged key, or one others may read, is an error."""
    path = Path(path) if path is not None else default_key_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SigningError(f"cannot read the signing key {path}: {exc.strerror}") from None
    if os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SigningError(f"the signing key {path} can be read by others (mode "
                               f"{mode:04o}): `chmod 600 {path}`")
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningError(f"the signing key {path} is not a PEM private key without a "
                           f"passphrase ({exc})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningError(f"the signing key {path} is not an Ed25519 key")
    return SigningKey(private, path)


# -- the trusted keys ---------------------------------------------------------------------
def read_public_key(data: bytes, where: str) -> Ed25519PublicKey:
    """The Ed25519 public key in ``data``: a PEM public key block (text around it, as
    ``cellguard signing-key show`` prints it, is ignored)."""
    found = _PEM_PUBLIC.search(data)
    if found is None:
        raise SigningError(f"{where} holds no PEM public key (-----BEGIN PUBLIC KEY-----); "
                           "`cellguard signing-key show` prints one")
    try:
        public = serialization.load_pem_public_key(found.group(0))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningError(f"{where}: not a readable public key ({exc})") from None
    if not isinstance(public, Ed25519PublicKey):
        raise SigningError(f"{where}: not an Ed25519 public key")
    return public


def trusted_keys(folder: Path | None = None, own: Path | None = None,
                 include_own: bool = True) -> dict[str, TrustedKey]:
    """The keys ``cellguard deploy`` accepts, by key id: this host's signing key (at
    ``own``, default :func:`default_key_path`) and every ``*.pem`` in ``folder`` (default
    :func:`default_trusted_folder`). A file there that is not an Ed25519 public key is an
    error naming it."""
    folder = Path(folder) if folder is not None else default_trusted_folder()
    found: dict[str, TrustedKey] = {}
    if include_own:
        key = load_key(own)
        if key is not None:
            found[key.key_id] = TrustedKey(key.public, OWN_KEY)
    try:
        files = sorted(folder.glob("*.pem")) if folder.is_dir() else []
    except OSError as exc:
        raise SigningError(f"cannot read the trusted keys in {folder}: {exc.strerror}") from None
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SigningError(f"cannot read the trusted key {path}: {exc.strerror}") from None
        public = read_public_key(data, f"the trusted key {path}")
        found.setdefault(key_id(public), TrustedKey(public, str(path)))
    return found


def trust(source: Path, folder: Path | None = None) -> tuple[TrustedKey, bool]:
    """Add the public key in the file ``source`` to the trusted folder as
    ``<key id>.pem``; returns the key and whether it was new there."""
    folder = Path(folder) if folder is not None else default_trusted_folder()
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read {source}: {exc.strerror}") from None
    public = read_public_key(data, str(source))
    kid = key_id(public)
    path = folder / f"{kid}.pem"
    if path.exists():
        read_public_key(path.read_bytes(), f"the trusted key {path}")  # whole, or an error
        return TrustedKey(public, str(path)), False
    try:
        _private_folder(folder, ours=folder == _config_folder() / "trusted")
        _write_new(path, public_pem(public).encode(), 0o644)
    except FileExistsError:
        return TrustedKey(public, str(path)), False
    except OSError as exc:
        raise SigningError(f"cannot write {path}: {exc.strerror}") from None
    return TrustedKey(public, str(path)), True


# -- checking a build --------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """What the signature of a build says."""

    signed_by: str | None  # the trusted key's id whose signature verified; None: none did
    trusted_as: str  # where that key came from ("" when none)
    problem: str  # why the signature does not count ("" when it does): one line

    @property
    def verified(self) -> bool:
        return self.signed_by is not None


def _parse_signature(sig: bytes) -> tuple[str, bytes]:
    try:
        data: Any = json.loads(sig)
        kid, hex_sig = data["key_id"], data["signature"]
        if data.get("algorithm") != ALGORITHM or data.get("format") != SIGNATURE_FORMAT:
            raise ValueError(f"algorithm {data.get('algorithm')!r}, format "
                             f"{data.get('format')!r}: this host knows {ALGORITHM} format "
                             f"{SIGNATURE_FORMAT}")
        if not (isinstance(kid, str) and _HEX.match(kid) and isinstance(hex_sig, str)
                and _HEX.match(hex_sig) and len(hex_sig) == 128):
            raise ValueError("key_id and signature must be lowercase hex, 64 bytes signed")
        return kid, bytes.fromhex(hex_sig)
    except (ValueError, KeyError, TypeError) as exc:
        raise SigningError(f"{SIGNATURE} is damaged ({exc})") from None


def verify_signature(manifest: bytes, signature: bytes | None,
                     trusted: dict[str, TrustedKey], where: str = "the build") -> Verdict:
    """Whether ``signature`` (``manifest.sig``'s bytes, None: absent) is a trusted key's
    signature over exactly ``manifest``. Never raises for a bad signature: the verdict's
    ``problem`` says, in one line, what is wrong."""
    if signature is None:
        return Verdict(None, "", f"{where} is unsigned (no {SIGNATURE})")
    try:
        kid, raw = _parse_signature(signature)
    except SigningError as exc:
        return Verdict(None, "", f"{where}: {exc}")
    key = trusted.get(kid)
    if key is None:
        known = ", ".join(f"{k} ({t.source})" for k, t in sorted(trusted.items())) or "none"
        return Verdict(None, "", f"{where} is signed by key {kid}, which this host does not "
                                 f"trust (trusted: {known})")
    try:
        key.public.verify(raw, manifest)
    except InvalidSignature:
        return Verdict(None, "", f"{where}: {SIGNED_FILE} does not match its signature by key "
                                 f"{kid}: the manifest was changed after it was signed")
    return Verdict(kid, key.source, "")


# -- the command --------------------------------------------------------------------------
def command(args: Any) -> int:
    """``cellguard signing-key new|show|trust|list``."""
    import sys

    if args.action != "trust" and args.file is not None:
        raise SigningError(f"`signing-key {args.action}` takes no FILE (only `trust` does)")
    if args.action == "new":
        key, moved = new_key(force=args.force)
        if moved is not None:
            print(f"the old signing key was moved aside to {moved}", file=sys.stderr)
        print(f"made signing key {key.key_id} (Ed25519) in {key.path}; `cellguard build` "
              "signs with it from now on and this host trusts it. Public key (for another "
              "host: `cellguard signing-key trust FILE` there):")
        print(key.public_pem(), end="")
    elif args.action == "show":
        key = load_key()
        if key is None:
            raise SigningError(f"no signing key at {default_key_path()}: `cellguard "
                               "signing-key new` makes one")
        print(f"signing key {key.key_id} (Ed25519) in {key.path}")
        print(key.public_pem(), end="")
    elif args.action == "trust":
        if args.file is None:
            raise SigningError("`signing-key trust FILE`: name the file that holds the "
                               "public key (`cellguard signing-key show` prints it)")
        trusted, new = trust(Path(args.file))
        print(f"{'now trusting' if new else 'already trusted:'} key {trusted.key_id} "
              f"({trusted.source}): `cellguard deploy` accepts builds it signed")
    else:  # list
        keys = trusted_keys()
        folder = default_trusted_folder()
        if not keys:
            print(f"no trusted keys: no signing key at {default_key_path()} and no *.pem in "
                  f"{folder}; `cellguard deploy` refuses every build without --allow-unsigned")
        for kid, t in sorted(keys.items(), key=lambda kv: kv[1].source != OWN_KEY):
            print(f"{kid}  {t.source}")
    return 0
