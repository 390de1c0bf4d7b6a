"""Start-up and running checks of the watcher's folders: a problem is an error, never silence.

Results, archive and quarantine folders are proved writable (a file created, synced and
removed) before the first input is read, and their file systems are named for the log. The
inbox is proved readable and its device recorded: later, a vanished, unreadable or
unmounted inbox (an NFS share that dropped shows its empty mount point, on another device)
is reported as such instead of looking like a quiet scanner.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from edgecxr.core.errors import EdgecxrError


def check_folders(inbox: Path, writable: dict[str, Path | None], log: Callable[[str], None]) -> InboxCheck:
    """The inbox readable, every output folder (by its option name) writable and not the inbox."""
    check = InboxCheck(inbox)
    for option, folder in writable.items():
        if folder is not None and folder.resolve() == inbox.resolve():
            raise EdgecxrError(f"{option} cannot be the inbox itself", path=folder, fix=f"give {option} its own folder")
    log(f"inbox {inbox} ({check.file_system})")
    for option, folder in writable.items():
        if folder is not None:
            log(f"{option} {folder} ({check_writable(folder, option)})")
    return check


def check_writable(folder: Path, option: str) -> str:
    """Create `folder` if needed and prove a file can be written there; returns its file system."""
    probe = folder / f".edgecxr-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise EdgecxrError(f"the {option} folder is not writable ({exc.strerror or exc})", path=folder,
                           fix=f"give the watcher's user write access to it, remount it read-write, "
                               f"or choose another {option}") from exc
    return file_system(folder)


def file_system(path: Path) -> str:
    """'<type> at <mount point>' for the mount that holds `path` (from /proc/self/mountinfo)."""
    target = str(Path(path).resolve())
    best, kind = "", ""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return f"device {os.stat(path).st_dev}"
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount = fields[4].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, line.split(" - ", 1)[1].split()[0]
    return f"{kind} at {best}" if best else f"device {os.stat(path).st_dev}"


class InboxCheck:
    """The inbox as found at start (readable, on this device), and what has gone wrong with it since."""

    def __init__(self, inbox: Path):
        self.inbox = inbox
        if inbox.exists() and not inbox.is_dir():
            raise EdgecxrError("the inbox is a file, not a folder", path=inbox,
                               fix="give the folder the scanner writes to (use `edgecxr classify` for single files)")
        problem = self._read_problem()
        if problem is not None:
            raise EdgecxrError(f"the inbox folder {problem}", path=inbox,
                               fix="create or mount the scanner's output folder, and let the watcher's user read it")
        self.device = os.stat(inbox).st_dev
        self.file_system = file_system(inbox)

    def problem(self) -> str | None:
        """None while the inbox is readable on its original device, else what is wrong."""
        problem = self._read_problem()
        if problem is not None:
            return f"the inbox {problem}"
        device = os.stat(self.inbox).st_dev
        if device != self.device:
            return (f"the inbox is now on another file system (device {device}, was {self.device}, "
                    f"{self.file_system}): is its share unmounted?")
        return None

    def _read_problem(self) -> str | None:
        try:
            st = os.stat(self.inbox)
            if not stat.S_ISDIR(st.st_mode):
                return "is no longer a folder"
            with os.scandir(self.inbox) as entries:
                next(entries, None)
        except FileNotFoundError:
            return "does not exist (deleted, renamed or not mounted)"
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
        return None
