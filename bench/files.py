"""File helpers: content hashes, atomic writes, clean-up after killed writers, and a check that a folder is usable.

Every temporary file or folder bench writes is hidden and ends in ``.PID@HOST.tmp`` (see :func:`temp_suffix`), so
that a later process can tell a killed writer's leftovers from a live writer's work in progress.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

STALE_SECONDS = 600  # a temporary nothing wrote to for this long is abandoned, whoever created it
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_OWNER = re.compile(r"\.(\d+)@([A-Za-z0-9-]*)\.tmp$")


class NotWritableError(OSError):
    """A folder bench must write to cannot be created or written, or is nearly full; the message names it."""


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def temp_suffix() -> str:
    """``.PID@HOST.tmp``: the end of the name of every temporary file or folder this process writes."""
    return f".{os.getpid()}@{_HOST}.tmp"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=temp_suffix(), dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would keep published records and leaderboards from other users
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _last_change(entry: Path) -> float:
    """The newest modification time of ``entry`` and, for a folder, of what it holds (a file being written
    keeps changing)."""
    times = [entry.lstat().st_mtime]
    if entry.is_dir() and not entry.is_symlink():
        times += [child.lstat().st_mtime for child in entry.iterdir()]
    return max(times)


def _abandoned(entry: Path) -> bool:
    owner = _OWNER.search(entry.name)
    if owner and owner[2] == _HOST and not _alive(int(owner[1])):
        return True
    return time.time() - _last_change(entry) > STALE_SECONDS


def remove_abandoned(folder: Path) -> list[Path]:
    """Delete the temporary files and folders that killed writers left in ``folder``; return what was deleted.

    Temporaries are hidden entries with a second dot in their name (``.NAME.XXXX...``), except set-aside
    ``*.corrupt`` ones. One is abandoned when its name says a process of this host wrote it and that process is
    gone, or when nothing in it changed for ``STALE_SECONDS`` (a writer on another host, a reused pid, or a
    name from before writers were named). A live writer's temporary is left alone.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        name = entry.name
        if not name.startswith(".") or "." not in name[1:] or name.endswith(".corrupt"):
            continue
        try:
            if not _abandoned(entry):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:  # another process cleaned it up, or its writer renamed it into place
            continue
        except OSError as exc:
            log.warning("cannot remove %s, left by an interrupted run: %s", entry, exc)
            continue
        log.info("removed %s, left by an interrupted run", entry)
        removed.append(entry)
    return removed


def check_writable(folder: Path, min_free_mb: int = 200) -> None:
    """Raise :class:`NotWritableError` (one line, naming ``folder``) unless ``folder`` can be created and
    written and has at least ``min_free_mb`` MB free."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=temp_suffix(), dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise NotWritableError(
            f"cannot write to {folder} ({exc.strerror or exc}): fix its permissions or choose another folder"
        ) from None
    free_mb = shutil.disk_usage(folder).free / 2**20
    if free_mb < min_free_mb:
        raise NotWritableError(
            f"{folder} has {free_mb:.0f} MB free, less than the {min_free_mb} MB needed: free some space or "
            "choose another folder"
        )
