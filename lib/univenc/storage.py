"""Atomic file writes and provenance: nothing already written is ever left half-written."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import tempfile
from pathlib import Path

import torch

PACKAGE_DIR = Path(__file__).resolve().parent


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def save_torch(obj, path) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_json(obj, path) -> Path:
    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=1, default=str)
    return atomic_write(path, write)


def load_checkpoint(path, mmap: bool = False) -> dict:
    """``torch.load`` with a clear error for a corrupt or truncated file. ``mmap``: tensors are mapped, not read
    (to look at a large checkpoint's config)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"Checkpoint {path} is corrupt or not a univenc checkpoint ({type(err).__name__}: "
                         f"{err}). Delete it and rerun training to recreate it.") from err


def git_commit() -> str:
    """The package's git commit (with '+dirty' when the work tree has changes), or 'unknown'."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PACKAGE_DIR,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class LockUnavailable(OSError):
    """The file system refuses ``flock`` (some network file systems): nothing can be locked there."""


@contextlib.contextmanager
def file_lock(path):
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block, waiting for other holders.
    The OS releases it when its holder dies, even by kill -9. Raises :class:`LockUnavailable` where the file
    system has no working ``flock``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError as err:  # ENOLCK, EOPNOTSUPP, ...: a file system without flock
            raise LockUnavailable(err.errno, f"cannot lock {path}: {err.strerror}") from err
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def file_locks(paths, required: bool = True):
    """:func:`file_lock` on every path of ``paths``, taken in sorted order: processes that lock overlapping sets
    never deadlock. With ``required=False``, where the file system has no working ``flock`` the block runs
    unlocked (for locks that only save work: the block's writes are safe without them)."""
    with contextlib.ExitStack() as stack:
        try:
            for path in sorted({Path(p) for p in paths}):
                stack.enter_context(file_lock(path))
        except LockUnavailable:
            if required:
                raise
            stack.close()
        yield


@contextlib.contextmanager
def exclusive_lock(folder):
    """Hold ``folder/.lock`` (an exclusive, non-blocking flock) for the block; yields False when another process
    holds it. The OS releases it when its holder dies, even by kill -9. The holder writes its pid into the file
    (to find the process that trains a network)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        fh.seek(0), fh.truncate(), fh.write(str(os.getpid())), fh.flush()
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
