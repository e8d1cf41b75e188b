"""Every file sparsemb writes goes through here: output checks and atomic writes.

The promises: a user's file is never replaced by surprise (an output that *is* an input, a directory,
a FIFO or a device is refused before any work), a failed write leaves nothing behind (the temporary
file is removed however the write fails: an exception, a full disk at close, Ctrl-C, SIGTERM in the
command line), and a finished file looks as if ``open(path, "w")`` had made it: the umask's mode for a
new file, the old mode for a replaced one, and a symlink's target written rather than the link
replaced.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile

#: Prefix of the temporary files written next to an output (hidden on Unix).
TMP_PREFIX = ".tmp-"

# Longest file name most filesystems take (NAME_MAX); a temporary name is cut to fit.
_NAME_MAX = 255
_TMP_RANDOM = 8  # the random part tempfile adds


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (changing it races threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_output(path, inputs=()) -> str:
    """Check that ``path`` can be written as an output file, before any work is done.

    Parameters
    ----------
    path : str or os.PathLike
        The output. A symlink is followed: its target is what will be written.
    inputs : iterable of str or os.PathLike
        Files the run reads; the output may not be any of them (same file, hard link or symlink).

    Returns
    -------
    str
        The path that will be written (the symlink's target, if ``path`` is a link).

    Raises
    ------
    FileNotFoundError
        If the output's directory does not exist.
    IsADirectoryError
        If the output is a directory.
    ValueError
        If the output is one of ``inputs``, or exists and is not a regular file (FIFO, device, socket).
    PermissionError, OSError
        If a file cannot be created in the output's directory (read-only, no permission, name too
        long); the message names the path.
    """
    path = os.fspath(path)
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(f"output is a directory: {path}")
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"output is not a regular file (a FIFO, device or socket): {path}")
        for other in inputs:
            try:
                if _same_file(st, os.stat(other)):
                    raise ValueError(f"output {path} is the input {os.fspath(other)}: refusing to overwrite it")
            except FileNotFoundError:
                continue
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"output directory does not exist: {os.path.dirname(os.path.abspath(path))}")
    # Creating (and removing) the temporary file is the only sure test: permissions, read-only
    # mounts and name lengths all show up here rather than after a long run.
    fd, tmp = _mkstemp(target)
    os.close(fd)
    os.unlink(tmp)
    return target


def _mkstemp(target):
    directory, name = os.path.split(target)
    room = _NAME_MAX - len(TMP_PREFIX) - _TMP_RANDOM - 1
    if len(name.encode()) > _NAME_MAX:
        raise OSError(36, "File name too long", target)
    # The temporary name keeps as much of the output's name as fits, so a leftover is recognisable.
    short = name.encode()[:room].decode(errors="ignore")
    try:
        return tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX + short + ".")
    except OSError as err:
        raise OSError(err.errno, f"cannot write in {directory}: {err.strerror}", target) from None


class atomic_write(contextlib.AbstractContextManager):
    """Write a file under a temporary name next to it; rename it into place only if the block succeeds.

    ``with atomic_write(path) as f: f.write(...)`` gives a binary file object. Whatever ends the block
    early (an exception, Ctrl-C, a full disk when the data is flushed at close), the temporary file is
    removed and an ``OSError`` names ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The output, checked by :func:`check_output`.
    inputs : iterable, optional
        Passed to :func:`check_output`.
    """

    def __init__(self, path, inputs=()):
        self.path = os.fspath(path)
        self.inputs = tuple(inputs)

    def __enter__(self):
        self.target = check_output(self.path, self.inputs)
        try:
            self.mode = stat.S_IMODE(os.stat(self.target).st_mode)
        except FileNotFoundError:
            self.mode = 0o666 & ~_umask()
        fd, self.tmp = _mkstemp(self.target)
        try:
            self.file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self._discard()
            raise
        return self.file

    def __exit__(self, exc_type, exc, tb):
        try:
            self.file.close()
            if exc_type is None:
                os.chmod(self.tmp, self.mode)
                os.replace(self.tmp, self.target)
        except OSError as err:
            self._discard()
            raise OSError(err.errno, err.strerror, self.path) from None
        except BaseException:
            self._discard()
            raise
        if exc_type is not None:
            self._discard()
            if issubclass(exc_type, OSError) and isinstance(exc, OSError) and not exc.filename:
                raise OSError(exc.errno, exc.strerror, self.path) from None
        return False

    def _discard(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)
