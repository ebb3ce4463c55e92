"""Locking and unlocking a board (``cellguard lock`` / ``unlock``), and asking the
person at a board for its presence button (docs/security.md)."""

from __future__ import annotations

import sys

from ..errors import CellguardError
from ..protocol.messages import KEY_BYTES
from .auth import BoardKey
from .client import BoardClient, RequestTimeout


def lock(client: BoardClient, rotate: bool = False) -> BoardKey:
    """Give the board a new key made here: lock an open board, or (``rotate``) replace
    a locked board's key, the change itself authenticated with the old key. The new
    key is kept as pending until the board has taken it, so an answer lost on the
    way leaves the host holding both keys."""
    info = client.hello()
    current = None
    if info.locked:
        if not rotate:
            raise CellguardError(f"board {info.unique_id} is already locked (key "
                                 f"{info.key_id}); --rotate gives it a new key")
        current = client.board_key()
    new = client.keys.propose(info.unique_id, current)
    try:
        client.request("set_key", {"key_id": new.key_id, "key": new.key})
    except RequestTimeout:
        if client.hello().key_id != new.key_id:
            raise
    client.keys.commit(info.unique_id)
    client.hello()
    return new


def unlock(client: BoardClient) -> None:
    """Put a locked board back in open mode (the write needs its key); the key store
    forgets its key."""
    info = client.hello()
    if not info.locked:
        raise CellguardError(f"board {info.unique_id} is in open mode already")
    try:
        client.request("set_key", {"key_id": 0, "key": bytes(KEY_BYTES)})
    except RequestTimeout:
        if client.hello().locked:
            raise
    client.keys.forget(info.unique_id)
    client.hello()


def ask_for_presence(client: BoardClient) -> None:
    """Have ``client`` ask the person at the board to hold its presence button when a
    write needs it (the command line's way; a test rig holds it itself)."""
    def ask(held: bool) -> None:
        if held:
            print(f"the board on {client.port_name} is locked: hold its presence button "
                  f"(pins.presence) until this is done (up to {client.presence_wait_s:g} s)",
                  file=sys.stderr, flush=True)

    client.presence = ask
