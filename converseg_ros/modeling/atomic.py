"""Crash-safe writes: a file or directory appears complete under its final name, or not at all.

A write goes to a hidden temporary next to its target, ``.<name>.<owner>.<random>.part`` (``<owner>`` is a
hash of the host name and the writer's process id), and is renamed into place once fsynced. A full disk
(ENOSPC, EDQUOT) raises :class:`DiskFullError` naming the folder, with the temporary removed and the previous
version untouched. Temporaries a killed writer left behind are removed by :func:`sweep_stale` (those of a
live process on this host never are).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from converseg_ros.errors import DiskFullError

log = logging.getLogger(__name__)
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# what libraries that do their own I/O (safetensors in Rust) put in their messages
_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded", "os error 28)", "os error 122)")
_TAGGED = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.(?:[A-Za-z0-9_]+\.part|old)$")
_LEGACY = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]+\.part$")  # written before owners were tagged


def _host() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _owner() -> str:
    return f"{_host()}-{os.getpid()}"


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_no_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a full disk or an exceeded quota."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return True
        if any(text in str(exc) for text in _NO_SPACE_TEXT):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


@contextlib.contextmanager
def named_no_space(folder: Path) -> Iterator[None]:
    """Turn a full-disk error raised inside into DiskFullError naming ``folder`` (others pass unchanged)."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if is_no_space(exc):
            raise DiskFullError(Path(folder)) from exc
        raise


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary file path next to ``final``; on success fsync it and rename it into place."""
    final = Path(final)
    with named_no_space(final.parent):
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.{_owner()}.", suffix=".part", dir=final.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        finally:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary directory next to ``final``; on success replace ``final`` with it."""
    final = Path(final)
    with named_no_space(final.parent):
        final.parent.mkdir(parents=True, exist_ok=True)
        owner = _owner()
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{owner}.", suffix=".part", dir=final.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        try:
            yield tmp
            for path in tmp.rglob("*"):
                if path.is_file():
                    with open(path, "rb+") as handle:
                        os.fsync(handle.fileno())
            if final.exists():
                old = final.with_name(f".{final.name}.{owner}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)  # a kill from here to the next line: sweep_stale restores ``old``
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
            _fsync_dir(final.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def temporary_dir(folder: Path, name: str) -> Path:
    """A new hidden directory in ``folder`` tagged with this writer (``.<name>.<owner>.<random>.part``): the
    caller moves out what it keeps and removes it; :func:`sweep_stale` removes it once the writer is gone."""
    folder = Path(folder)
    with named_no_space(folder):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.{_owner()}.", suffix=".part", dir=folder))
        os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def atomic_write_bytes(final: Path, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


class _Recorder(io.RawIOBase):
    """A binary file that remembers the OSError of a failed write (torch.save reports only 'unexpected pos')."""

    def __init__(self, handle: Any) -> None:
        super().__init__()
        self.handle, self.error = handle, None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)``, raising the file system's own error when a write fails (ENOSPC ...)."""
    import torch

    with open(path, "wb") as handle:
        recorder = _Recorder(handle)
        try:
            torch.save(obj, recorder)
        except RuntimeError as exc:
            if recorder.error is not None:
                raise recorder.error from exc
            raise


def _owner_alive(host: str, pid: int) -> bool | None:
    """True/False for a writer on this host; None when it ran elsewhere (cannot be seen from here)."""
    if host != _host():
        return None
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(folder: Path, names: Iterable[str] | None = None, exclusive: bool = False) -> list[Path]:
    """Remove the temporaries killed writers left in ``folder`` (not recursive); returns what was removed.

    A ``.<name>.*.old`` left between the two renames of :func:`atomic_dir` is put back as ``<name>`` when
    that is missing (the previous complete version), else removed. Entries of a live process on this host
    are always kept; entries written on another host are kept unless ``exclusive`` (a folder that only one
    writer uses at a time, e.g. a training run). ``names`` limits the sweep to temporaries of those targets.
    """
    folder = Path(folder)
    wanted = set(names) if names is not None else None
    removed: list[Path] = []
    try:
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
    except OSError as exc:
        log.warning("cannot list %s to remove stale temporary files: %s", folder, exc)
        return removed
    for entry in entries:
        tagged = _TAGGED.match(entry.name)
        match = tagged or _LEGACY.match(entry.name)
        if match is None or (wanted is not None and match["name"] not in wanted):
            continue
        if tagged is not None:
            alive = _owner_alive(tagged["host"], int(tagged["pid"]))
            if alive or (alive is None and not exclusive):
                continue
        try:
            if entry.name.endswith(".old") and entry.is_dir() and not (folder / match["name"]).exists():
                os.replace(entry, folder / match["name"])
                log.warning("restored %s from %s (a kill interrupted its replacement)", match["name"], entry)
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError as exc:
            log.warning("cannot remove stale temporary %s: %s", entry, exc)
    if removed:
        log.info("removed %d stale temporary file(s) in %s", len(removed), folder)
    return removed
