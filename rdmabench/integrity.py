"""Every byte verified: digests of files and directories, atomic destinations, free space.

The hash is xxHash's XXH3-128 (PyPI ``xxhash``): ~24 GB/s on one core of the development
host, against ~150 MB/s for hashlib's blake2b there, so hashing never limits a transfer we
measure. It is a check against corruption and truncation, not against an adversary.

A file's digest is XXH3-128 of its bytes (hex). A directory's digest covers its top-level
regular files only (what Lotus's cache tar carries), sorted by name: XXH3-128 over
``name NUL size NUL file-digest`` for each, so a receiver that hashed each file as it
arrived can compose the directory digest without reading anything again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import xxhash

from .errors import RdmabenchError
from .units import format_size

BLOCK = 1 << 20


class IntegrityError(RdmabenchError):
    """What arrived is not what was sent (digest or size mismatch, short transfer)."""


class DirectIORefused(RdmabenchError):
    """O_DIRECT was asked for on a file system that has no direct I/O."""


class InsufficientSpace(RdmabenchError):
    """The destination file system cannot hold what is about to be written."""


def new_hasher():
    return xxhash.xxh3_128()


def digest_file(path: Path | str, bufsize: int = BLOCK) -> str:
    """XXH3-128 hex digest of a file's content, read ``bufsize`` bytes at a time."""
    h = xxhash.xxh3_128()
    buf = bytearray(bufsize)
    mv = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(mv[:n])
    return h.hexdigest()


def combine(entries: list[tuple[str, int, str]]) -> str:
    """Directory digest from (name, size, file digest) of its top-level files, in any order."""
    h = xxhash.xxh3_128()
    for name, size, file_digest in sorted(entries):
        h.update(name.encode() + b"\0" + str(size).encode() + b"\0" + bytes.fromhex(file_digest))
    return h.hexdigest()


def dir_entries(path: Path | str) -> list[tuple[str, int]]:
    """The top-level regular files of a directory (name, size), sorted by name."""
    out = []
    with os.scandir(path) as it:
        for e in it:
            if e.is_file(follow_symlinks=False):
                out.append((e.name, e.stat(follow_symlinks=False).st_size))
    return sorted(out)


def digest_dir(path: Path | str) -> str:
    return combine([(name, size, digest_file(Path(path) / name)) for name, size in dir_entries(path)])


def digest(path: Path | str) -> str:
    """Digest of a file or a directory."""
    return digest_dir(path) if os.path.isdir(path) else digest_file(path)


def size_of(path: Path | str) -> int:
    """Bytes a digest covers: a file's size, or the sum of a directory's top-level files."""
    if os.path.isdir(path):
        return sum(size for _, size in dir_entries(path))
    return os.stat(path).st_size


def open_file(path: Path | str, write: bool, direct: bool = False) -> int:
    """A file descriptor for moving a file: read-only, or created (never through a symlink) for writing;
    O_DIRECT if asked, and DirectIORefused naming the folder where the file system refuses it."""
    flags = (os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW) if write else os.O_RDONLY
    try:
        return os.open(path, flags | (os.O_DIRECT if direct else 0), 0o644)
    except OSError as exc:
        if direct and exc.errno == errno.EINVAL:
            raise DirectIORefused(f"the file system holding {Path(path).parent} refuses O_DIRECT "
                                  "(ramfs, and tmpfs before Linux 6.6, do)") from None
        raise


_SHARED_LOCK = threading.Lock()
_SHARED_USERS: dict[Path, int] = {}


@contextlib.contextmanager
def shared_temp_dir(path: Path | str) -> Iterator[Path]:
    """A folder that several transfers of this process land in at once (Lotus's ``<type>/fetching/``): made
    on entry, removed on exit once empty and no other transfer of this process is in it. Removing it
    as soon as one fetch ended raced with another fetch creating its temporary inside it (two workers
    pushing into one storage host: FileExistsError from mkdir, the folder gone between its two checks)."""
    path = Path(path)
    with _SHARED_LOCK:
        _SHARED_USERS[path] = _SHARED_USERS.get(path, 0) + 1
        path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    finally:
        with _SHARED_LOCK:
            _SHARED_USERS[path] -= 1
            if not _SHARED_USERS[path]:
                del _SHARED_USERS[path]
                try:
                    path.rmdir()  # Lotus leaves it; we tidy it when empty
                except OSError:
                    pass


def drop_cached_pages(path: Path | str) -> None:
    """Flush a file (or a directory's top-level files) and drop its pages from the page cache, so the next
    read comes from the disk: what a sector sealed hours ago looks like to the host that sends it."""
    p = Path(path)
    for f in ([p / name for name, _ in dir_entries(p)] if p.is_dir() else [p]):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def verify(path: Path | str, expected: str) -> str:
    """Digest ``path``; IntegrityError naming the path and both digests unless it is ``expected``."""
    got = digest(path)
    if got != expected:
        raise IntegrityError(f"{path}: digest {got} does not match the expected {expected}")
    return got


@dataclass
class Destination:
    """What ``atomic_destination`` yields: write to ``path``; set ``digest`` if you hashed as you wrote."""

    path: Path
    final: Path
    expected: str | None = None
    digest: str | None = None
    verified: bool = False


def _remove(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_destination(final_path: Path | str, *, expected: str | None = None,
                       temp: Path | str | None = None) -> Iterator[Destination]:
    """Write under a temporary name, verify, then move into place; nothing at ``final_path`` otherwise.

    The temporary name is ``.<name>.part-<random>`` in the same directory unless ``temp`` is given
    (it must be on the same file system: Lotus uses ``<typedir>/fetching/<id>``). On leaving the
    block normally the digest (``dest.digest`` if the writer set it, else computed now) is checked
    against ``expected`` when there is one, and the temporary is renamed over ``final_path`` (an
    existing directory there is replaced). On any exception, KeyboardInterrupt included, or a
    mismatch, the temporary is removed and ``final_path`` is left as it was. Sources are never touched.
    """
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(temp) if temp is not None else final.with_name(f".{final.name}.part-{uuid.uuid4().hex[:8]}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    _remove(tmp)  # a leftover from an earlier, interrupted run
    dest = Destination(path=tmp, final=final, expected=expected)
    try:
        yield dest
        if not os.path.lexists(tmp):
            raise IntegrityError(f"{final}: nothing was written")
        if dest.digest is None:
            dest.digest = digest(tmp)
        if expected is not None:
            if dest.digest != expected:
                raise IntegrityError(f"{final}: received data has digest {dest.digest}, expected {expected}; "
                                     "nothing was put in place")
            dest.verified = True
        if os.path.isdir(tmp) and os.path.lexists(final):
            aside = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(final, aside)
            os.rename(tmp, final)
            _remove(aside)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def free_bytes(path: Path | str) -> tuple[int, Path]:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    usage = shutil.disk_usage(p)
    if usage.total == 0:  # ramfs and the like report no size: they hold what memory holds, never checked here
        return 1 << 62, p
    return usage.free, p


def check_free_space(path: Path | str, need: int, margin: int = 0) -> None:
    """InsufficientSpace("need X, Y free on /path") unless ``need + margin`` bytes fit under ``path``."""
    free, where = free_bytes(path)
    if need + margin > free:
        raise InsufficientSpace(f"not enough space for the transfer: need {_human(need + margin)}, "
                                f"{_human(free)} free on {where}")


def _human(n: int) -> str:
    exact = format_size(n)
    if not exact.endswith(" B") or n < 1024:
        return exact
    for unit, mult in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= mult:
            return f"{n / mult:.1f} {unit}"
    return exact
