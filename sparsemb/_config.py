"""The one place for Numba flags, thread control and where compiled code is cached.

Every kernel in :mod:`sparsemb.kernels` is compiled through :func:`jit` so that caching, fastmath and
parallelism are decided here and nowhere else.

Compiled code is cached per user, outside the installed package (:func:`cache_dir`), so that
uninstalling or reinstalling sparsemb never leaves cache files where Python would take them for
the package: ``$NUMBA_CACHE_DIR`` when it is set (as Numba itself does), else
``$XDG_CACHE_HOME/sparsemb/<version>/numba-<numba version>-py<python version>`` (``~/.cache`` when
``XDG_CACHE_HOME`` is unset; ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows), else, if
that cannot be written, a private directory in the system's temporary directory; with none of them
writable kernels are compiled on every run. Below the root, each source directory has its own
folder named after a hash of its path (Numba's layout), so two checkouts never share entries, and
an entry is used only while the source file's content hash matches (Numba's check), so an edited
checkout recompiles what changed.
"""
from __future__ import annotations

import contextlib
import functools
import os
import stat
import sys
import tempfile
import warnings

import numba
from numba.core import caching
from numba.core.dispatcher import Dispatcher
from numba.core.runtime.nrt import rtsys

#: Flags shared by every kernel. ``nogil`` lets Python threads run kernels concurrently.
#: ``no_cfunc_wrapper``: no C-callable entry point, which only a kernel passed as a first-class function
#: value would use (none is; Python calls through the CPython wrapper, kernels call each other
#: directly), and which cost 3% of a first run's compiling. Every kernel is also cached on disk (see
#: :func:`cache_dir`), through :class:`_KernelCache`, not Numba's ``cache=True``, which would write
#: next to the installed sources.
FLAGS = {"nogil": True, "no_cfunc_wrapper": True}

#: Extra flags for kernels whose inner loops may be reassociated (dot products, updates). Kernels whose
#: results are compared bit for bit (coalesce, optimizers) do not use it.
FAST = {"fastmath": True}


#: For reductions that may be reassociated (so that they vectorise) but must keep IEEE semantics
#: otherwise. The order is then fixed by the compiled code, not by the thread count.
REASSOC = {"fastmath": {"reassoc"}}


def _version() -> str:
    try:
        from . import __version__
    except ImportError:  # sparsemb/__init__.py not (yet) importable, e.g. a vendored kernels folder
        return "unknown"
    return __version__


def _user_cache_home() -> str:
    """The platform's per-user cache directory (XDG's on Linux and other Unixes)."""
    if sys.platform == "win32":
        return os.environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    if sys.platform == "darwin":
        return os.path.join(os.path.expanduser("~"), "Library", "Caches")
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec: a relative path is invalid and must be ignored.
    return xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")


def _versioned(root: str) -> str:
    """``root/sparsemb/<version>/numba-<version>-py<X.Y>``: a new release, Numba or Python starts a
    new folder, and deleting ``root/sparsemb`` clears every cache sparsemb ever made there."""
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return os.path.join(root, "sparsemb", _version(), f"numba-{numba.__version__}-py{py}")


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except (OSError, ValueError):
        return False
    return True


def _private_temp_root() -> str | None:
    """A folder of the temporary directory that only this user can write, or None.

    Cache files are pickles, loaded as code: a folder that another user could have made, or could
    write to, is never used.
    """
    tmp = tempfile.gettempdir()
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = os.path.join(tmp, f"sparsemb-{uid if uid is not None else os.environ.get('USERNAME', 'user')}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    if uid is not None and (st.st_uid != uid or st.st_mode & 0o022):
        return None
    return path


@functools.lru_cache(maxsize=None)
def _choose_cache_dir(numba_cache_dir: str) -> str | None:
    if numba_cache_dir:
        # Honoured as Numba honours it, with Numba's layout below it (CI points it at a fresh folder).
        if _writable(numba_cache_dir):
            return numba_cache_dir
    user = _versioned(_user_cache_home())
    if _writable(user):
        return user
    temp = _private_temp_root()
    if temp is not None:
        temp = _versioned(temp)
        if _writable(temp):
            return temp
    return None


def cache_dir() -> str | None:
    """The folder compiled kernels are cached in by this process, or None if no folder is writable
    (then kernels are compiled on every run).

    ``$NUMBA_CACHE_DIR`` (``numba.config.CACHE_DIR``) when set and writable, else
    ``<user cache>/sparsemb/<version>/numba-<numba version>-py<python version>`` with ``<user cache>``
    ``$XDG_CACHE_HOME`` or ``~/.cache`` (``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on
    Windows), else the same below a private folder of the temporary directory. Kernels of one source
    folder are in a sub-folder named after that folder and a hash of its path. Deleting the folder
    is always safe: the kernels are compiled again on their next use.
    """
    return _choose_cache_dir(numba.config.CACHE_DIR or "")


@functools.lru_cache(maxsize=None)
def _sources_hash(files: tuple) -> str:
    import hashlib

    h = hashlib.sha256()
    for path, _mtime, _size in files:
        h.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def _kernel_sources_stamp(py_file: str) -> str:
    """A hash of every module beside ``py_file`` and of this one: a kernel inlines helpers from its
    neighbours (prefetch, the Adagrad row update), and Numba's own stamp (the kernel's file only)
    would keep code compiled from an older neighbour."""
    folder = os.path.dirname(os.path.abspath(py_file))
    paths = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".py"))
    paths.append(os.path.abspath(__file__))
    files = []
    for path in paths:
        st = os.stat(path)
        files.append((path, st.st_mtime_ns, st.st_size))
    return _sources_hash(tuple(files))


class _KernelCacheLocator(caching.UserWideCacheLocator):
    """Numba's per-user locator (a folder per source directory, named after a hash of its path)
    rooted at :func:`cache_dir` instead of Numba's own user folder, with a stamp that changes when
    any module of the kernel's folder changes."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(cache_dir(), self.get_suitable_cache_subpath(py_file))

    def get_source_stamp(self):
        try:
            return _kernel_sources_stamp(self._py_file)
        except OSError:
            return super().get_source_stamp()

    @classmethod
    def from_function(cls, py_func, py_file):
        if cache_dir() is None:
            return None
        return super().from_function(py_func, py_file)


class _KernelCacheImpl(caching.CompileResultCacheImpl):
    # A zip-imported package keeps Numba's own handling; no in-tree __pycache__ locator, ever.
    _locator_classes = [_KernelCacheLocator, caching.ZipCacheLocator]


_CACHE_WARNED = []


def _cache_warning(message: str) -> None:
    if not _CACHE_WARNED:
        _CACHE_WARNED.append(message)
        warnings.warn(f"sparsemb: {message}; kernels are compiled again on every run", RuntimeWarning,
                      stacklevel=3)


class _KernelCache(caching.FunctionCache):
    """Numba's function cache in :func:`cache_dir`, where a cache that cannot be read or written
    costs a compilation, never an error: a truncated or foreign file is a miss, a full disk or a
    folder that became read-only skips the save (with one warning)."""

    _impl_class = _KernelCacheImpl

    def load_overload(self, sig, target_context):
        # Numba's load_overload first refreshes the target context: it imports every lowering module of
        # Numba (array maths, linear algebra, which imports scipy.linalg and its BLAS, typed containers,
        # ...), 0.3-0.5 s and ~28 MiB of a run that only loads cached kernels. Machine code from the cache
        # needs none of them: only the runtime (NRT) it calls into, which is what is set up here. A
        # compilation (a miss) refreshes the context itself before it types anything.
        try:
            rtsys.initialize(target_context)
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)
        except Exception:  # noqa: BLE001 - any unreadable entry (EOFError, UnpicklingError, OSError, ...)
            return None

    def save_overload(self, sig, data):
        try:
            with _locked(self._cache_path):
                try:
                    super().save_overload(sig, data)
                except OSError:
                    raise
                except Exception:  # noqa: BLE001 - an unreadable index (truncated, foreign): start afresh
                    with contextlib.suppress(OSError):
                        os.unlink(self._cache_file._index_path)
                    super().save_overload(sig, data)
        except Exception as err:  # noqa: BLE001 - a cache that cannot be written costs time, not the run
            _cache_warning(f"cannot write compiled code to {self._cache_path} ({err})")


@contextlib.contextmanager
def _locked(folder: str):
    """Hold an exclusive lock on ``folder/.lock`` (POSIX; elsewhere no lock).

    Numba's save reads a kernel's index, picks the first free data-file number and writes both: two
    processes saving two signatures of one kernel at once could both pick number 1, and one index
    would then name the other's code. Under the lock the second sees the first's entry.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _attach_cache(disp) -> None:
    try:
        disp._cache = _KernelCache(disp.py_func)
    except (RuntimeError, OSError) as err:  # no locator: nothing writable
        _cache_warning(f"no writable folder for compiled code ({err})")


def jit(*, parallel: bool = False, fastmath: bool = False, reassoc: bool = False, inline: str = "never"):
    """Return a ``numba.njit`` decorator with the project's flags; the kernel is cached on disk in
    :func:`cache_dir`."""
    flags = dict(FLAGS)
    if parallel:
        flags["parallel"] = True
    if fastmath:
        flags.update(FAST)
    elif reassoc:
        flags.update(REASSOC)
    if inline != "never":
        flags["inline"] = inline
    njit = numba.njit(**flags)

    def decorate(fn):
        disp = njit(fn)
        if isinstance(disp, Dispatcher):  # not under NUMBA_DISABLE_JIT, where njit returns ``fn``
            _attach_cache(disp)
        return disp

    return decorate


def cache_is_cold(*kernels) -> bool:
    """Whether calling any of ``kernels`` will compile it: no code for it in this process yet, and
    none in the on-disk cache for this source file, this CPU and this Numba.

    For a notice before a first run ("compiling kernels, first run only"): a few file reads, no
    compilation. A kernel under ``NUMBA_DISABLE_JIT`` (a plain function) is never cold.

    Parameters
    ----------
    *kernels : numba dispatchers
        Kernels the caller is about to run, e.g.
        ``sparsemb.kernels.word2vec.train_kernel(sg, shared, negative)``.
    """
    for k in kernels:
        if not isinstance(k, Dispatcher) or k.overloads:
            continue
        cache = getattr(k, "_cache", None)
        index_file = getattr(cache, "_cache_file", None)
        if index_file is None:  # no on-disk cache: compiled on every run
            return True
        try:
            index = index_file._load_index()
            magic = k.targetctx.codegen().magic_tuple()
        except Exception:  # noqa: BLE001 - an unreadable index is a cold one
            return True
        if not any(key[1] == magic for key in index):
            return True
    return False


@contextlib.contextmanager
def num_threads(n: int | None):
    """Run the body with ``n`` Numba threads, restoring the previous count afterwards.

    ``None`` leaves the count unchanged. ``n`` is clipped to Numba's configured maximum.
    """
    if n is None:
        yield numba.get_num_threads()
        return
    if int(n) < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    previous = numba.get_num_threads()
    numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
    try:
        yield numba.get_num_threads()
    finally:
        numba.set_num_threads(previous)


def max_threads() -> int:
    """The number of threads Numba was started with (all cores unless NUMBA_NUM_THREADS says otherwise)."""
    return numba.config.NUMBA_NUM_THREADS
