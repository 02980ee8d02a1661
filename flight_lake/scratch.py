"""Scratch space: the files and folders a live ingest keeps in the spool folder.

Each is ``flock``-ed by its ingest while it lives, so start-up collection, in any server
process on this machine, removes only what crashed ingests left. A new one is created
under a hidden name (``.`` + its name), locked, and only then renamed to the name
collection looks for: collection can never take one in the moment between its creation
and its lock. A hidden one a crash left in that moment is removed once it is a minute old.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import tempfile
import time

_HIDDEN_KEPT_SECONDS = 60.0


def claim_file(directory: str | None, prefix: str, suffix: str) -> tuple[int, str]:
    """A new locked file ``<prefix>…<suffix>``: its descriptor and its path."""
    descriptor, hidden = tempfile.mkstemp(prefix=f".{prefix}", suffix=suffix, dir=directory)
    return descriptor, _locked_and_named(descriptor, hidden)


def claim_folder(directory: str | None, prefix: str) -> tuple[int, str]:
    """A new locked folder ``<prefix>…``: a descriptor holding its lock, and its path."""
    hidden = tempfile.mkdtemp(prefix=f".{prefix}", dir=directory)
    descriptor = os.open(hidden, os.O_RDONLY)
    return descriptor, _locked_and_named(descriptor, hidden)


def _locked_and_named(descriptor: int, hidden: str) -> str:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        head, name = os.path.split(hidden)
        path = os.path.join(head, name[1:])
        os.rename(hidden, path)
    except BaseException:
        os.close(descriptor)
        _remove(hidden)
        raise
    return path


def collect(directory: str | None, pattern: str) -> list[str]:
    """Remove what matches ``pattern`` in ``directory`` (default: the system's temporary
    folder) and is not locked by a live ingest; the paths removed."""
    directory = directory or tempfile.gettempdir()
    removed: list[str] = []
    old = time.time() - _HIDDEN_KEPT_SECONDS
    hidden = [path for path in glob.glob(os.path.join(directory, f".{pattern}"))
              if _modified(path) < old]
    for path in [*glob.glob(os.path.join(directory, pattern)), *hidden]:
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _remove(path)
            removed.append(path)
        except OSError:
            continue  # locked: a live ingest's
        finally:
            os.close(descriptor)
    return removed


def _modified(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return time.time()


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
