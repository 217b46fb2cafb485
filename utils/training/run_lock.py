"""One run per run folder: rank 0 of a training run holds an exclusive lock on `RUN/.lock` from before it
writes anything in the folder until it ends.

The lock is `flock(2)` on an open file, so the operating system releases it when the process ends in any
way, SIGKILL and power cut included: a crashed run never leaves the folder locked, and there is nothing to
clean up by hand. The file holds the holder's pid, which a refused second run names. Taking the lock
also removes the temporary files that a killed checkpoint write left (`utils.files.remove_stale_temp_files`):
with the lock held no other run can be writing them.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from utils.errors import UserError
from utils.files import os_reason, remove_stale_temp_files

LOCK_FILE = ".lock"


class RunFolderLock:
    """The held lock of one run folder (`lock_run_folder`); `release()` lets the next run in. A lock made
    with `fd=None` holds nothing: the other ranks of a torchrun job get one."""

    def __init__(self, run_dir: Path, fd: int | None = None) -> None:
        self.run_dir, self.fd = run_dir, fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor releases the flock
            self.fd = None

    def __enter__(self) -> RunFolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


IN_USE_ADVICE = ("wait for it to end or stop it (a resumable checkpoint is saved on SIGTERM), or give another "
                 "log.run_dir")


def lock_run_folder(run_dir: Path, advice: str = IN_USE_ADVICE) -> RunFolderLock:
    """Create `run_dir` if needed and lock it for this process, or raise a one-line UserError naming the
    folder, the pid of the run that holds it and `advice`. Removes stale temporary files once locked."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"{run_dir}: cannot make the run folder ({os_reason(exc)})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = read_holder(fd)
        os.close(fd)
        raise in_use_error(run_dir, holder, advice) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        remove_stale_temp_files(run_dir)
    except OSError as exc:
        os.close(fd)
        raise UserError(f"{run_dir}: cannot write in the run folder ({os_reason(exc)})") from None
    return RunFolderLock(run_dir, fd)


def check_not_in_use(run_dir: Path) -> None:
    """Raise `lock_run_folder`'s one-line UserError if a training run holds `run_dir`, taking no lock: a shared
    flock, released at once, fails only against a holder's exclusive one, so probes never block each other
    (all ranks of a torchrun job may probe at once)."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:  # no lock file: no run ever held the folder
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise in_use_error(run_dir, read_holder(fd), IN_USE_ADVICE) from None
    finally:
        os.close(fd)


def read_holder(fd: int) -> str:
    """The pid that the lock file's holder wrote into it ('unknown' if none)."""
    return os.read(fd, 32).decode(errors="replace").strip() or "unknown"


def in_use_error(run_dir: Path, holder: str, advice: str) -> UserError:
    return UserError(f"{run_dir}: another training run (pid {holder}) is using this run folder; {advice}")
