"""One run per results folder: a run claims its folder before it writes there, and never writes beside another run.

:func:`claim_run_folder` takes the folder's lock, :data:`LOCK_FILE`, which holds the pid, host, start time and
command of the run that has it. A second run that wants the folder while the first is alive is refused, naming the
folder and the other run; a lock whose run is gone (killed, crashed) is taken over. Where the operating system has
advisory file locks (``fcntl.flock``), the lock is held by the open file and the system drops it when the process
ends, however it ends; elsewhere a lock counts as held while its pid runs on this host.

A folder that already holds a run's files (:data:`RUN_FILES`) is refused too, unless this run resumes the run state
saved there: results of two runs never lie side by side, and a new run never leaves an older run's
``edits.safetensors`` or ``run_state.pt`` beside its own results. Nothing in the folder is deleted.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from lit_edit.errors import UserError

LOCK_FILE = "lit-edit.lock"
RUN_FILES = ("run.json", "metrics.json", "steps.csv", "requests.csv", "run_state.pt", "edits.safetensors",
             "gate_max_z.json", "downstream.json")

try:
    import fcntl
except ImportError:     # Windows: no advisory locks; the pid alone decides
    fcntl = None


class RunFolderError(UserError):
    """A results folder that another run is using, or that holds another run's files; the message names both."""


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), to tell it from a later process that
    reuses the pid; None where ``/proc`` is not available."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(holder: dict) -> bool:
    """Whether the run that wrote ``holder`` (a lock's content) still runs. Another host's run counts as alive."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass    # another user's process
    return holder.get("process_start") in (None, _process_start(pid))


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
            f"{holder.get('command')}")


class RunFolderLock:
    """The lock of one results folder, held by this process from :meth:`acquire` to :meth:`release`."""

    def __init__(self, folder: Path | str, option: str):
        self.folder = Path(folder)
        self.option = option
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def _busy(self, holder: dict) -> RunFolderError:
        return RunFolderError(f"{self.option}={self.folder} is in use by another run ({_describe(holder)}); two runs "
                              f"would mix their files there. Wait for it to end, or give this run another folder "
                              f"(a lock whose run has ended is taken over; {self.path} names the holder)")

    def _read(self, fd: int) -> dict:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            holder = json.loads(os.read(fd, 1 << 16).decode("utf-8") or "{}")
        except (ValueError, UnicodeDecodeError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def acquire(self) -> RunFolderLock:
        """Take the lock (a lock whose run is gone is taken over).

        Raises:
            RunFolderError: another living run holds it.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        raise self._busy(self._read(fd)) from None
                    if not self.path.exists() or os.stat(self.path).st_ino != os.fstat(fd).st_ino:
                        os.close(fd)     # the holder removed the file as we opened it: lock the new one
                        continue
                else:
                    holder = self._read(fd)
                    if holder and _alive(holder):
                        raise self._busy(holder)
            except BaseException:
                if fd is not None:
                    os.close(fd)
                raise
            break
        me = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode("utf-8"))
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the folder back (remove the lock file, then drop the lock); a no-op when not held."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


def previous_run_files(folder: Path) -> list[str]:
    """The files of a run that :data:`RUN_FILES` finds in ``folder``."""
    return [name for name in RUN_FILES if (folder / name).exists()]


def claim_run_folder(folder: Path | str, option: str, resumes: Path | str | None = None) -> RunFolderLock:
    """Lock ``folder`` for this run and check that it holds no other run's files.

    Args:
        folder: the results folder.
        option: what named it (``model.results_dir``, or the logger's folder), for messages.
        resumes: the run state this run continues; the run that saved it may have left its files in ``folder``.
    Raises:
        RunFolderError: another run holds the folder, or its files are there (nothing is changed in the folder).
    """
    folder = Path(folder)
    lock = RunFolderLock(folder, option).acquire()
    found = previous_run_files(folder)
    if found and (resumes is None or Path(resumes).resolve().parent != folder.resolve()):
        lock.release()
        resume = (f", or continue that run with --trainer.resume_from {folder}" if "run_state.pt" in found and
                  resumes is None else "")
        raise RunFolderError(f"{option}={folder} already holds the files of another run ({', '.join(found)}); a new "
                             "run does not write beside them. Give this run a new folder (or leave model.results_dir "
                             f"unset: each run then gets its own){resume}")
    return lock
