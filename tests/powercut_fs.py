"""A FUSE file system in memory that keeps synced and unsynced state apart,
for the power-cut tests: run as ``python powercut_fs.py MOUNTPOINT STATE``.

What it keeps, as a disk without a write cache would after a power cut:
- a file's data as of its last fsync/fdatasync (writes and truncations
  change only the live data until then);
- a directory's entries (created, renamed, removed files) as of the last
  fsync of that directory; new directories are durable at once, as in the
  engine's simulated storage (the store syncs the parents of the
  directories it creates, which this does not model).

Unmounting is the power cut: the durable state is written to the file
STATE (a pickle) and the process ends; the next mount with the same STATE
starts from it. Each fsync of a ``*.log`` file also rewrites ``STATE.syncs``
with the number of such fsyncs so far, so a writer can wait for a
background sync to have happened.

Single-threaded on purpose: operations are applied in the order the kernel
sends them.
"""

from __future__ import annotations

import errno
import os
import pickle
import stat
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import mfusepy as fuse


@dataclass
class Inode:
    live: bytearray = field(default_factory=bytearray)
    durable: bytes = b""


@dataclass
class Directory:
    live: dict[str, int] = field(default_factory=dict)
    durable: dict[str, int] = field(default_factory=dict)
    subdirs: set[str] = field(default_factory=set)


def split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent or "/", name


class PowerCutFs(fuse.Operations):
    use_ns = True

    def __init__(self, state: str) -> None:
        self.state = state
        self.inodes: dict[int, Inode] = {}
        self.dirs: dict[str, Directory] = {"/": Directory()}
        self.next_inode = 1
        self.log_syncs = 0
        self.started = time.time_ns()
        if os.path.exists(state):
            with open(state, "rb") as f:
                dirs, data = pickle.load(f)
            for path, (entries, subdirs) in dirs.items():
                self.dirs[path] = Directory(dict(entries), dict(entries), set(subdirs))
            for number, durable in data.items():
                self.inodes[number] = Inode(bytearray(durable), durable)
            self.next_inode = max(self.inodes, default=0) + 1

    def save(self) -> None:
        """Writes what a power cut keeps: durable entries and their data."""
        reachable = {n for d in self.dirs.values() for n in d.durable.values()}
        dirs = {p: (dict(d.durable), set(d.subdirs)) for p, d in self.dirs.items()}
        data = {n: self.inodes[n].durable for n in reachable}
        with open(self.state + ".tmp", "wb") as f:
            pickle.dump((dirs, data), f)
        os.replace(self.state + ".tmp", self.state)

    # -- lookups ------------------------------------------------------------------

    def inode_of(self, path: str) -> int:
        parent, name = split(path)
        directory = self.dirs.get(parent)
        if directory is None or name not in directory.live:
            raise fuse.FuseOSError(errno.ENOENT)
        return directory.live[name]

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        now = self.started
        base = {"st_atime": now, "st_mtime": now, "st_ctime": now, "st_uid": 0, "st_gid": 0}
        if path in self.dirs:
            return {**base, "st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_size": 0}
        number = fh if fh is not None else self.inode_of(path)
        size = len(self.inodes[number].live)
        return {**base, "st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": size}

    def readdir(self, path: str, fh: int) -> list[str]:
        directory = self.dirs.get(path)
        if directory is None:
            raise fuse.FuseOSError(errno.ENOENT)
        return [".", "..", *sorted(directory.subdirs), *sorted(directory.live)]

    def statfs(self, path: str) -> dict[str, int]:
        return {
            "f_bsize": 4096,
            "f_frsize": 4096,
            "f_blocks": 1 << 20,
            "f_bfree": 1 << 19,
            "f_bavail": 1 << 19,
            "f_files": 1 << 16,
            "f_ffree": 1 << 15,
            "f_namemax": 255,
        }

    # -- directories --------------------------------------------------------------

    def mkdir(self, path: str, mode: int) -> int:
        parent, name = split(path)
        if parent not in self.dirs:
            raise fuse.FuseOSError(errno.ENOENT)
        if path in self.dirs or name in self.dirs[parent].live:
            raise fuse.FuseOSError(errno.EEXIST)
        self.dirs[parent].subdirs.add(name)
        self.dirs[path] = Directory()
        return 0

    def opendir(self, path: str) -> int:
        if path not in self.dirs:
            raise fuse.FuseOSError(errno.ENOENT)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        directory = self.dirs[path]
        directory.durable = dict(directory.live)
        return 0

    # -- files --------------------------------------------------------------------

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        parent, name = split(path)
        directory = self.dirs.get(parent)
        if directory is None:
            raise fuse.FuseOSError(errno.ENOENT)
        if name in directory.live:
            raise fuse.FuseOSError(errno.EEXIST)
        number = self.next_inode
        self.next_inode += 1
        self.inodes[number] = Inode()
        directory.live[name] = number
        return number

    def open(self, path: str, flags: int) -> int:
        return self.inode_of(path)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return bytes(self.inodes[fh].live[offset : offset + size])

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        live = self.inodes[fh].live
        if offset > len(live):
            live.extend(bytes(offset - len(live)))
        live[offset : offset + len(data)] = data
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        live = self.inodes[fh if fh is not None else self.inode_of(path)].live
        if length < len(live):
            del live[length:]
        else:
            live.extend(bytes(length - len(live)))
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        inode = self.inodes[fh]
        inode.durable = bytes(inode.live)
        if path.endswith(".log"):
            self.log_syncs += 1
            with open(self.state + ".syncs.tmp", "w") as f:
                f.write(str(self.log_syncs))
            os.replace(self.state + ".syncs.tmp", self.state + ".syncs")
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        return 0

    def rename(self, old: str, new: str) -> int:
        old_parent, old_name = split(old)
        new_parent, new_name = split(new)
        number = self.inode_of(old)
        del self.dirs[old_parent].live[old_name]
        self.dirs[new_parent].live[new_name] = number
        return 0

    def unlink(self, path: str) -> int:
        parent, name = split(path)
        self.inode_of(path)
        del self.dirs[parent].live[name]
        return 0

    def chmod(self, path: str, mode: int) -> int:
        return 0

    def utimens(self, path: str, times: Any = None) -> int:
        return 0


def main() -> None:
    mountpoint, state = sys.argv[1], sys.argv[2]
    fs = PowerCutFs(state)
    # No kernel caching of names or attributes: every call reaches us.
    fuse.FUSE(
        fs,
        mountpoint,
        foreground=True,
        nothreads=True,
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
    )
    fs.save()


if __name__ == "__main__":
    main()
