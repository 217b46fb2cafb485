"""File helpers: atomic writes (a crash at any moment leaves the old file or the new one, never a torn
file) and digests of a file's bytes."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

Hasher = TypeVar("Hasher")  # a hashlib object: anything with update(bytes)
DIGEST_CHUNK_BYTES = 1 << 20


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(f)` on a temporary file beside `path`, fsync it, rename it over `path`, fsync the folder.

    The temporary file is removed if `write` fails. Parent folders are created. The file gets the
    mode that `open()` gives under the umask (0644 under the usual 022), not mkstemp's 0600, so that
    colleagues on a shared machine can read checkpoints and detections.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    file = open(tmp, "xb")  # "x": never an existing file
    try:
        with file as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def update_with_file(hasher: Hasher, path: str | Path) -> Hasher:
    """Feed the bytes of `path` to `hasher` (e.g. `hashlib.sha256()`) in 1 MiB chunks; return it."""
    with open(path, "rb") as f:
        while chunk := f.read(DIGEST_CHUNK_BYTES):
            hasher.update(chunk)
    return hasher
