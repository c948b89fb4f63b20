"""Writing files so that a reader (or a crash) never sees half of one."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write beside the target, then rename over it; permissions follow the umask like any new file."""
    target = Path(path)
    if target.is_dir():  # else the rename below would name the hidden partial file in its error
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


# What to do about the environment errors a command can meet while reading or writing its files.
_FULL = "free some space and rerun (files already written are whole; a run resumes where it stopped)"
_OS_ERROR_HINTS = {
    errno.ENOSPC: _FULL,
    errno.EDQUOT: _FULL,
    errno.EEXIST: "a file is in the way of a folder; pick another path or move the file",
    errno.ENOTDIR: "a file stands where a folder is needed; pick another path",
    errno.EISDIR: "that is a folder; give a file path",
    errno.EACCES: "no permission; pick a path you can write to",
    errno.EPERM: "not permitted; pick a path you can write to",
    errno.EROFS: "the file system is read-only; pick another path",
}


def describe_os_error(error: OSError) -> str:
    """One line for an OSError that reached the command line: the file, what happened, what to do."""
    where = error.filename if error.filename is not None else ""
    what = error.strerror or str(error)
    hint = _OS_ERROR_HINTS.get(error.errno or -1)
    return f"{where}{': ' if where else ''}{what}" + (f"; {hint}" if hint else "")
