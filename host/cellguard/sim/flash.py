"""A flash filesystem model: LittleFS-like costs, power loss on demand.

``FlashModel`` is a filesystem object with the MicroPython VFS methods
(``mount``, ``open``, ``remove``, ``rename``, ``stat``, ``ilistdir``, ...): under
the real MicroPython runtime it is mounted with ``vfs.mount(FlashModel(), "/flash")``
(the WebAssembly port has no VfsLfs2); under CPython a firmware module's ``open``
and ``os`` are pointed at it (the model answers ``os.remove``/``rename``/``stat``
itself; ``mount_point`` is the prefix it strips from such paths). Plain Python only: the
same file runs in both interpreters (no f-strings, no typing at run time).

What it models (the assumptions, see docs/firmware.md "Flash budget"):

- One directory = one metadata pair of two blocks. Every *commit* appends
  ``prog_size``-rounded bytes to the pair's active block: creating a file (at
  open), a close after writes (the file's new size and inline data or block
  pointer), a remove, a rename (a rename over an existing file is one atomic
  commit, as on LittleFS). When the active block has no room, the pair is
  compacted: the other block is erased (one erase) and the live entries are
  programmed into it.
- LittleFS's wear levelling of metadata (``block_cycles``, 100 in MicroPython's
  VFS): when a compaction finds the block it erases has been erased another
  ``block_cycles`` times, the pair moves that half to a fresh block.
- Files up to ``inline_max`` bytes live inline in the metadata (no data block;
  MicroPython's cache of 4 program units makes LittleFS's limit 512 B here).
  Larger files take data blocks: a close after writes erases and programs a
  fresh block for every block touched since open (copy-on-write, as LittleFS
  does: an append to a partly filled last block copies it to a new block).
- Blocks are taken round-robin from the free ones (LittleFS's allocator scans
  forward), so erases spread over the device; ``erases[b]`` counts per block.
- Stall time: each erase costs ``erase_ms``, each programmed ``prog_size`` unit
  ``prog_ms`` (NOR flash datasheet typicals; on the RP2040 both run with
  interrupts off).
- Power loss: ``fail_after = N`` lets N operations (open, write, close,
  remove, rename) complete and raises :class:`PowerLost` at the next one. What
  was committed survives (LittleFS commits are atomic); data written but not
  yet committed by a close is gone. :meth:`reboot` drops the open files and
  clears the failure, as a power cycle would.
- ``log`` records ``(kind, path)`` of every operation in order, for tests that
  check what happens before what (a callable ``on_op`` sees each as well).
"""

_ENOENT = 2
_EEXIST = 17
_EISDIR = 21
_S_IFDIR = 0x4000
_S_IFREG = 0x8000


class PowerLost(Exception):
    """The modelled supply failed: nothing after this point happened."""


class _File:
    def __init__(self, fs, path, data, writable, created):
        self.fs = fs
        self.path = path
        self.data = data
        self.pos = len(data) if writable == 2 else 0
        self.writable = writable  # 0 read, 1 write, 2 append
        self.dirty = created  # a created file is committed at open; more at close
        self.wrote = False
        self.start = len(data) if writable == 2 else 0  # first byte changed
        self.closed = False

    def read(self, n=-1):
        data = self.data
        end = len(data) if n is None or n < 0 else min(len(data), self.pos + n)
        out = bytes(data[self.pos:end])
        self.pos = end
        return out

    def readinto(self, buf):
        chunk = self.read(len(buf))
        buf[:len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset, whence=0):
        base = (0, self.pos, len(self.data))[whence]
        if base + offset < 0:
            raise OSError(22)  # EINVAL
        self.pos = base + offset
        return self.pos

    def write(self, buf):
        if not self.writable:
            raise OSError(9)  # EBADF
        self.fs._op("write", self.path)
        buf = buf.encode() if isinstance(buf, str) else bytes(buf)  # text mode: UTF-8
        n = len(buf)
        if self.pos < self.start:
            self.start = self.pos
        self.data[self.pos:self.pos + n] = buf
        self.pos += n
        self.wrote = True
        return n

    def close(self):
        if self.closed:
            return
        self.closed = True
        fs = self.fs
        if fs.files_open:
            fs.files_open -= 1
        if self.wrote:
            fs._op("close", self.path)
            fs._write_back(self.path, self.data, self.start)
        fs.handles.remove(self)

    def flush(self):
        pass

    def ioctl(self, req, arg):
        if req == 4:
            self.close()
        return 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class FlashModel:
    """A flash filesystem with a LittleFS-like cost model (module docstring)."""

    def __init__(self, block_size=4096, block_count=212, prog_size=256, inline_max=512,
                 erase_ms=45.0, prog_ms=0.7, block_cycles=100, mount_point=""):
        self.block_size = block_size
        self.block_count = block_count
        self.prog_size = prog_size
        self.inline_max = inline_max
        self.block_cycles = block_cycles
        self.erase_ms = erase_ms
        self.prog_ms = prog_ms
        self.mount_point = mount_point  # a prefix the CPython shims strip
        self.files = {}  # path -> committed bytes
        self.blocks_of = {}  # path -> data blocks of its committed content
        self.erases = [0] * block_count
        self.programs = [0] * block_count  # prog_size units programmed
        self.meta = [0, 1]  # the root directory's metadata pair
        self.meta_used = 0  # bytes used in the pair's active block
        self.meta_active = 0
        self.next_block = 2
        self.ops = 0
        self.fail_after = -1  # < 0: never
        self.log = []
        self.on_op = None
        self.handles = []
        self.files_open = 0
        self.commits = 0
        self.compactions = 0
        self.erase(0)
        self.erase(1)
        self.reset_counts()

    # -- counters --------------------------------------------------------------
    def reset_counts(self):
        """Zero the counters (after formatting, or between phases of a test)."""
        for b in range(self.block_count):
            self.erases[b] = 0
            self.programs[b] = 0
        self.commits = 0
        self.compactions = 0
        self.log = []

    @property
    def erase_count(self):
        return sum(self.erases)

    @property
    def program_count(self):
        return sum(self.programs)

    @property
    def stall_ms(self):
        """Modelled time the flash held the CPU (erases plus programs), ms."""
        return self.erase_count * self.erase_ms + self.program_count * self.prog_ms

    @property
    def max_block_erases(self):
        return max(self.erases)

    # -- the physical layer ----------------------------------------------------
    def erase(self, block):
        self.erases[block] += 1

    def program(self, block, nbytes):
        units = (nbytes + self.prog_size - 1) // self.prog_size
        self.programs[block] += units
        return units * self.prog_size

    def _alloc(self):
        # LittleFS's allocator scans forward from where it left off.
        used = {b for blocks in self.blocks_of.values() for b in blocks}
        used.add(self.meta[0])
        used.add(self.meta[1])
        for _ in range(self.block_count):
            b = self.next_block
            self.next_block = b + 1 if b + 1 < self.block_count else 2
            if b not in used:
                self.erase(b)
                return b
        raise OSError(28)  # ENOSPC

    def _commit(self, payload):
        """One metadata commit of ``payload`` bytes (tags, name, inline data, CRC)."""
        self.commits += 1
        size = payload + 8  # commit tag and CRC
        size = (size + self.prog_size - 1) // self.prog_size * self.prog_size
        if self.meta_used + size > self.block_size:
            self._compact()
        self.meta_used += self.program(self.meta[self.meta_active], size)

    def _compact(self):
        self.compactions += 1
        self.meta_active ^= 1
        block = self.meta[self.meta_active]
        if self.block_cycles > 0 and (self.erases[block] + 1) % self.block_cycles == 0:
            block = self.meta[self.meta_active] = self._alloc()  # worn: move (erased)
        else:
            self.erase(block)
        live = 8
        for path in self.files:
            data = self.files[path]
            live += 12 + len(path) + (len(data) if len(data) <= self.inline_max else 8)
        self.meta_used = self.program(block, live)

    # -- operations and power loss -------------------------------------------
    def _op(self, kind, path):
        if 0 <= self.fail_after <= self.ops:
            raise PowerLost("power lost before " + kind + " " + path)
        self.ops += 1
        self.log.append((kind, path))
        if self.on_op is not None:
            self.on_op(kind, path)

    def reboot(self):
        """A power cycle: open files vanish with what they had not committed."""
        self.handles = []
        self.files_open = 0
        self.fail_after = -1

    def _write_back(self, path, data, start):
        data = bytes(data)
        old = self.blocks_of.get(path, [])
        if len(data) <= self.inline_max:
            new = []
        else:
            bs = self.block_size
            first = min(start, len(data)) // bs
            new = list(old[:first]) if len(old) >= first else []
            for k in range(len(new), (len(data) + bs - 1) // bs):
                b = self._alloc()
                self.program(b, min(bs, len(data) - k * bs))
                new.append(b)
        self.blocks_of[path] = new
        self.files[path] = data
        self._commit(12 + len(path) + (len(data) if not new else 8))

    # -- the VFS protocol --------------------------------------------------------
    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def _path(self, path):
        mp = self.mount_point
        if mp and path.startswith(mp + "/"):
            path = path[len(mp):]
        return path if path.startswith("/") else "/" + path

    def open(self, path, mode="r"):
        path = self._path(path)
        if path in ("", "/"):
            raise OSError(_EISDIR)
        if "w" in mode or "a" in mode or "x" in mode:
            self._op("open", path)
            exists = path in self.files
            if "x" in mode and exists:
                raise OSError(_EEXIST)
            if not exists:  # LittleFS commits the new entry at open
                self.files[path] = b""
                self.blocks_of[path] = []
                self._commit(12 + len(path))
            data = bytearray(self.files[path]) if "a" in mode else bytearray()
            f = _File(self, path, data, 2 if "a" in mode else 1, not exists)
            if "w" in mode and exists and self.files[path]:
                f.wrote = True  # truncation is committed at close
        else:
            if path not in self.files:
                raise OSError(_ENOENT)
            if "+" in mode:  # "r+": change in place, from the start; nothing truncated
                self._op("open", path)
                f = _File(self, path, bytearray(self.files[path]), 1, False)
                f.start = len(f.data)
            else:
                f = _File(self, path, bytearray(self.files[path]), 0, False)
        self.handles.append(f)
        self.files_open += 1
        return f

    def remove(self, path):
        path = self._path(path)
        if path not in self.files:
            raise OSError(_ENOENT)
        self._op("remove", path)
        del self.files[path]
        del self.blocks_of[path]
        self._commit(12)

    def rename(self, old, new):
        old = self._path(old)
        new = self._path(new)
        if old not in self.files:
            raise OSError(_ENOENT)
        self._op("rename", old)
        data = self.files.pop(old)
        blocks = self.blocks_of.pop(old)
        self.files[new] = data  # over an existing file: replaced in the same commit
        self.blocks_of[new] = blocks
        self._commit(24 + len(new))

    def stat(self, path):
        path = self._path(path)
        if path in ("", "/"):
            return (_S_IFDIR, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        if path not in self.files:
            raise OSError(_ENOENT)
        return (_S_IFREG, 0, 0, 0, 0, 0, len(self.files[path]), 0, 0, 0)

    def ilistdir(self, path="/"):
        # The entries of one folder: its files, and the folders its files' paths imply
        # (the model keeps whole paths; a folder is there while a file is in it).
        path = self._path(path).rstrip("/") + "/"
        out = []
        seen = set()
        for p in sorted(self.files):
            if not p.startswith(path):
                continue
            name, sep, _ = p[len(path):].partition("/")
            if name in seen:
                continue
            seen.add(name)
            out.append((name, _S_IFDIR, 0, 0) if sep else
                       (name, _S_IFREG, 0, len(self.files[p])))
        if not out and path != "/":
            raise OSError(_ENOENT)
        return iter(out)

    def listdir(self, path="/"):
        return [e[0] for e in self.ilistdir(path)]

    def mkdir(self, path):
        raise OSError(_EEXIST)

    def rmdir(self, path):
        raise OSError(_ENOENT)

    def chdir(self, path):
        pass

    def getcwd(self):
        return "/"

    def statvfs(self, path):
        n = self.block_count
        return (self.block_size, self.block_size, n, n, n, 0, 0, 0, 0, 255)
