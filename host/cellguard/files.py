"""Writing the files the commands make, without ever losing one.

Every command that writes a file goes through :func:`atomic_output` (or
:func:`write_text`, built on it). Three rules, in this order (docs/files.md):

1. An output never names one of the command's inputs: not by the same path, nor
   by another path to the same file (``./x`` and ``x``, a symlink, a hard
   link). ``--force`` does not change that.
2. An output that already exists is replaced only with ``--force``; the
   refusal says what is there (a cellguard log, another file, a folder).
3. The file is written under a temporary name beside the target, flushed to
   disk and renamed into place, so a failure (an exception half-way, Ctrl-C,
   a full disk) never leaves half a file and never removes the old one.

A symlinked output is written to where the link points, as ``open()`` would.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import LogFileError, OutputError

StrPath = str | os.PathLike[str]


def same_file(a: StrPath, b: StrPath) -> bool:
    """True when ``a`` and ``b`` name one file: the same resolved path, or (both
    existing) the same inode, as a hard link is."""
    with contextlib.suppress(OSError, ValueError):
        if os.path.samefile(a, b):
            return True
    return os.path.realpath(a) == os.path.realpath(b)


def is_log(path: StrPath) -> bool:
    """True when ``path`` is a file a log backend recognises (a cellguard log)."""
    from .store import LogReader  # numpy and the backends: only when a file is there

    p = Path(path)
    if not p.is_file():
        return False
    return any(backend.recognises(p) for backend in LogReader.BACKENDS.values())


def describe(path: StrPath) -> str:
    """What is at ``path``, for a refusal: a cellguard log, a folder, a file."""
    p = Path(path)
    if p.is_dir():
        return "a folder"
    if p.is_symlink() and not p.exists():
        return "a dangling symlink"
    if is_log(p):
        return "a cellguard log"
    return "an empty file" if p.is_file() and p.stat().st_size == 0 else "a file"


def check_output(path: StrPath, *, inputs: Iterable[StrPath | None] = (),
                 force: bool = False) -> Path:
    """Refuse ``path`` as an output (:class:`OutputError`, or :class:`LogFileError`
    when it cannot be written) before any work is done; return it as a Path."""
    text = os.fspath(path)
    if not text:
        raise OutputError("an output file name is empty")
    p = Path(text)
    for source in inputs:
        if source is not None and same_file(p, source):
            shown = "" if os.fspath(source) == text else f" ({os.fspath(source)})"
            raise OutputError(f"{text} is this command's input{shown}: write the output to "
                              "another file (--force never replaces an input)")
    if p.is_dir():
        raise LogFileError(f"cannot write {text}: it is a folder")
    target = Path(os.path.realpath(p))
    folder = target.parent
    if not folder.is_dir():
        shown = p.parent if str(p.parent) else Path(".")
        raise LogFileError(f"cannot write {text}: folder {shown} does not exist")
    if os.path.lexists(p) and not force:
        raise OutputError(f"{text} exists ({describe(p)}); give --force to replace it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LogFileError(f"cannot write {text}: permission denied (folder {folder})")
    return p


def check_distinct(*paths: StrPath | None) -> None:
    """Refuse two outputs of one command that name the same file."""
    given = [p for p in paths if p is not None]
    for k, a in enumerate(given):
        for b in given[k + 1:]:
            if same_file(a, b):
                names = (f"{os.fspath(a)} is named twice" if os.fspath(a) == os.fspath(b) else
                         f"{os.fspath(a)} and {os.fspath(b)} are the same file")
                raise OutputError(f"{names}: give each output its own name")


def check_outputs(outputs: Iterable[StrPath | None], *, inputs: Iterable[StrPath | None] = (),
                  force: bool = False) -> None:
    """:func:`check_distinct` and :func:`check_output` for each of a command's outputs."""
    outputs, inputs = list(outputs), list(inputs)
    check_distinct(*outputs)
    for out in outputs:
        if out is not None:
            check_output(out, inputs=inputs, force=force)


def check_stdout(inputs: Iterable[StrPath | None]) -> None:
    """Refuse to print into one of the inputs (``export log >> log``)."""
    try:
        out = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return  # not a file descriptor (a capture in tests, a closed stream)
    if not stat.S_ISREG(out.st_mode):
        return
    for source in inputs:
        if source is None:
            continue
        try:
            st = os.stat(source)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino):
            raise OutputError(f"standard output is {os.fspath(source)}, this command's input: "
                              "redirect it to another file")


def _temp_beside(target: Path) -> Path:
    """A new, empty file beside ``target`` (created, so no one else has it; the
    mode a new file gets under the umask)."""
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(path: StrPath, *, inputs: Iterable[StrPath | None] = (),
                  force: bool = False) -> Iterator[Path]:
    """Check ``path`` (:func:`check_output`) and yield a temporary path beside it to
    write; on a normal exit the temporary is flushed and renamed over ``path``.

    On any exception (or Ctrl-C) the temporary is removed and whatever was at
    ``path`` stays as it was; an OSError becomes one clear :class:`LogFileError`.
    """
    inputs = list(inputs)
    p = check_output(path, inputs=inputs, force=force)
    target = Path(os.path.realpath(p))  # through a symlink, as open() would
    try:
        tmp = _temp_beside(target)
    except OSError as exc:
        raise LogFileError(f"cannot write {os.fspath(path)}: {exc.strerror or exc}") from None
    try:
        yield tmp
        _fsync(tmp)
        if target.exists():  # replacing (--force): keep its permissions
            shutil.copymode(target, tmp)
        check_output(path, inputs=inputs, force=force)  # nothing appeared meanwhile
        os.replace(tmp, target)
        _fsync_folder(target.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise LogFileError(f"cannot write {os.fspath(path)}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def write_text(out: StrPath, text: str, *, inputs: Iterable[StrPath | None] = (),
               force: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``out`` through :func:`atomic_output`."""
    with atomic_output(out, inputs=inputs, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")


def copy_file(source: StrPath, out: StrPath, *, force: bool = False) -> None:
    """Copy ``source`` to ``out`` through :func:`atomic_output`."""
    with atomic_output(out, inputs=[source], force=force) as tmp:
        shutil.copyfile(source, tmp)
