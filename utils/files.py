"""File helpers: atomic writes (a crash at any moment leaves the old file or the new one, never a torn
file), the removal of the temporary files a killed writer left, a check that a folder takes files before
long work starts, and digests of a file's bytes."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from utils.errors import UserError

Hasher = TypeVar("Hasher")  # a hashlib object: anything with update(bytes)
DIGEST_CHUNK_BYTES = 1 << 20
TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{16}\.tmp$")  # atomic_write's temporary files: .<name>.<16 hex>.tmp


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(f)` on a temporary file beside `path`, fsync it, rename it over `path`, fsync the folder.

    The temporary file is removed if `write` fails; an OSError (a full disk, a read-only folder) then names
    `path`, not the temporary file, also when `write` wrapped it in another exception (`os_error_in`).
    Parent folders are created. The file gets the mode that `open()` gives under the umask (0644 under the
    usual 022), not mkstemp's 0600, so that colleagues on a shared machine can read checkpoints and detections.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file = open(tmp, "xb")  # "x": never an existing file
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        with file as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, Exception) and (cause := os_error_in(exc)) is not None:
            raise OSError(cause.errno, cause.strerror, str(path)) from exc
        raise
    if os.name == "posix":  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError (with an errno) that `exc` is or that caused it, following __cause__ and __context__: torch.save
    reports a full disk as RuntimeError('... unexpected pos ...') with the OSError as its context. None if none."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def update_with_file(hasher: Hasher, path: str | Path) -> Hasher:
    """Feed the bytes of `path` to `hasher` (e.g. `hashlib.sha256()`) in 1 MiB chunks; return it."""
    with open(path, "rb") as f:
        while chunk := f.read(DIGEST_CHUNK_BYTES):
            hasher.update(chunk)
    return hasher


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files of `atomic_write` calls that never finished (a writer killed by SIGKILL or
    a power cut) from `folder`; returns them. Only names of that pattern are touched. Call it only while no
    other process writes into the folder (train.py does it under the run folder's lock)."""
    stale = [p for p in Path(folder).iterdir() if TEMP_FILE.match(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def os_reason(exc: OSError) -> str:
    """The OS's words for an OSError ('No space left on device', 'Permission denied'), without the path."""
    return exc.strerror or str(exc) or type(exc).__name__


def check_writable_folder(folder: str | Path, what: str) -> None:
    """Make sure files can be written into `folder` before long work starts, leaving nothing behind.

    Creates the missing folders, writes, fsyncs and removes a probe file, then removes the folders it
    created. A read-only place, a file where a folder should be, or a full disk raises a one-line
    UserError naming the path and the OS's reason. what: what goes there ('the run folder', '--out').
    """
    folder = Path(folder)
    chain = [folder, *folder.parents]
    blocker = next((p for p in chain if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"{folder}: cannot write {what} there: {blocker} is a file, not a folder")
    missing = [p for p in chain if not p.exists()]  # deepest first
    probe = folder / f".write-probe.{secrets.token_hex(8)}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "xb") as f:
            f.write(b"probe\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise UserError(f"{folder}: cannot write {what} there ({os_reason(exc)})") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        for created in missing:
            try:
                created.rmdir()
            except OSError:
                break  # not empty (another process uses it), or never made
