"""Board keys on the host, and the MAC an authenticated write carries (docs/security.md).

A locked board takes a write only inside AUTH: the write, a nonce the board gave out
for it (GET_NONCE) and ``HMAC-SHA256(key, AUTH_DOMAIN | unique id | nonce | type |
payload)``. The key is made here (the RP2040's random source is not fit for keys) and
kept in a :class:`KeyStore`, one file per board, keyed by the board's unique id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import CellguardError
from ..protocol.messages import AUTH_DOMAIN, KEY_BYTES

KEYS_ENV = "CELLGUARD_KEYS"
"""Environment variable naming the key store's folder (else the user's config folder)."""

_UNIQUE_ID = re.compile(r"^[0-9a-f]{2,64}$")


class KeyStoreError(CellguardError):
    """The key store cannot be read or written, or holds a damaged key."""


@dataclass(frozen=True)
class BoardKey:
    """A board's key: its id (1-255, what INFO and NONCE name) and 32 secret bytes."""

    key_id: int
    key: bytes

    def __post_init__(self) -> None:
        if not 1 <= self.key_id <= 255 or len(self.key) != KEY_BYTES:
            raise KeyStoreError(f"a board key has an id 1-255 and {KEY_BYTES} bytes")

    def __repr__(self) -> str:  # never print the secret
        return f"BoardKey(key_id={self.key_id})"

    def mac(self, unique_id: str, nonce: bytes, msg_type: int, payload: bytes) -> bytes:
        """The MAC of one write (the board's ``auth.mac``)."""
        return mac(self.key, unique_id, nonce, msg_type, payload)


def mac(key: bytes, unique_id: str, nonce: bytes, msg_type: int, payload: bytes) -> bytes:
    """HMAC-SHA256 under ``key`` over AUTH_DOMAIN, the board's unique id (INFO's hex
    text), the nonce, the write's message type and its payload."""
    message = AUTH_DOMAIN + unique_id.encode() + nonce + bytes((msg_type,)) + payload
    return hmac.new(key, message, hashlib.sha256).digest()


def default_folder() -> Path:
    """``$CELLGUARD_KEYS``, else ``$XDG_CONFIG_HOME/cellguard/keys`` (``~/.config``)."""
    if os.environ.get(KEYS_ENV):
        return Path(os.environ[KEYS_ENV])
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "cellguard" / "keys"


class KeyStore:
    """Board keys in a folder only its owner may enter (0700), a file per board
    (``<unique id>.key``, 0600) written beside and renamed into place. During a key
    change the new key waits in ``<unique id>.next`` until the board has taken it, so
    a change cut short leaves the host holding both keys, never neither."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_folder()

    def _path(self, unique_id: str, suffix: str = ".key") -> Path:
        if not _UNIQUE_ID.match(unique_id):
            raise KeyStoreError(f"not a board's unique id: {unique_id!r}")
        return self.folder / f"{unique_id}{suffix}"

    def get(self, unique_id: str) -> BoardKey | None:
        """The board's key, or None when the store has none for it."""
        return self._read(self._path(unique_id))

    def pending(self, unique_id: str) -> BoardKey | None:
        """A key a change began to give the board and did not see taken, or None."""
        return self._read(self._path(unique_id, ".next"))

    def _read(self, path: Path) -> BoardKey | None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyStoreError(f"cannot read the key {path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
            return BoardKey(int(data["key_id"]), bytes.fromhex(data["key"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"the key file {path} is damaged ({exc})") from None

    def propose(self, unique_id: str, current: BoardKey | None = None) -> BoardKey:
        """A new key for the board (its id one past ``current``'s), kept as pending
        until :meth:`commit`."""
        key_id = current.key_id % 255 + 1 if current is not None else 1
        key = BoardKey(key_id, secrets.token_bytes(KEY_BYTES))
        self._write(self._path(unique_id, ".next"), key)
        return key

    def commit(self, unique_id: str) -> BoardKey:
        """The board took the pending key: it becomes the board's key."""
        pending = self._path(unique_id, ".next")
        key = self._read(pending)
        if key is None:
            raise KeyStoreError(f"no key change is pending for board {unique_id}")
        os.replace(pending, self._path(unique_id))
        return key

    def forget(self, unique_id: str) -> None:
        """The board is open again: drop its key (and any pending one)."""
        for suffix in (".key", ".next"):
            self._path(unique_id, suffix).unlink(missing_ok=True)

    def _write(self, path: Path, key: BoardKey) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.folder.chmod(0o700)
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
            with os.fdopen(fd, "w") as f:
                json.dump({"key_id": key.key_id, "key": key.key.hex()}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise KeyStoreError(f"cannot write the key {path}: {exc.strerror}") from None
