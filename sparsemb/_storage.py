"""Tables in files: memory-mapped ``.npy`` arrays for weights and optimizer state, and checkpoints.

A lazy sparse step touches only a batch's rows, so a table larger than memory can live in a file
mapped into memory: the OS page cache keeps the hot rows resident and pages the rest. This module
creates and reopens such files (:func:`open_array`), and writes and reads checkpoints
(:func:`checkpoint`, :func:`restore`) that stay consistent if the process or the machine dies.

A mapped file is written in place, page by page, as training runs: after a crash it may hold some
rows of a step and not others (and the kernel writes dirty pages back in any order), so it is not a
consistent snapshot. Only a checkpoint is.
"""
from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import platform
import re
import shutil
import stat
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO

import numpy as np

from ._io import TMP_PREFIX, atomic_write, check_output
from .kernels.embedding import aligned_empty
from .kernels.rowcache import assign, clear, new_map


class StorageMismatchError(ValueError):
    """An existing storage file holds another array than the one asked for (shape, dtype, layout),
    or is not a ``.npy`` file at all."""


class NotEnoughSpaceError(OSError):
    """The file system has less free space than a new storage file needs (``errno.ENOSPC``)."""


def _free_bytes(directory) -> int:
    """Bytes an unprivileged process may still allocate on ``directory``'s file system."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n:,} bytes)"
    return f"{n:,} bytes"


#: Files :func:`open_array` creates start their data at this offset (the ``.npy`` header padded
#: with spaces, as the format allows), so that rows of a power-of-two size never straddle two pages:
#: with numpy's 128-byte header every 16th 256-byte row (every 8th 512-byte interleaved record)
#: spanned two pages, and a miss on it read both. Files with numpy's own header still reopen.
DATA_OFFSET = 4096


def _header(shape, dtype) -> bytes:
    """The ``.npy`` header (format 1.0) of a C-ordered array of ``shape`` and ``dtype``, padded to
    :data:`DATA_OFFSET` bytes."""
    buf = BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(shape)})
    h = buf.getvalue()
    if len(h) < DATA_OFFSET:  # a long structured dtype's header stays as numpy wrote it
        # magic (6) + version (2) + little-endian uint16 length (2), then the text ending in "\n"
        h = h[:8] + (DATA_OFFSET - 10).to_bytes(2, "little") + h[10:-1] \
            + b" " * (DATA_OFFSET - len(h)) + b"\n"
    return h


def file_bytes(shape, dtype) -> int:
    """The size of the ``.npy`` file of a C-ordered array of ``shape`` and ``dtype``."""
    return len(_header(shape, dtype)) + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def check_space(files) -> None:
    """Check that the files in ``files`` that do not exist yet fit on their file systems, together.

    Parameters
    ----------
    files : iterable of (path, shape, dtype)

    Raises
    ------
    NotEnoughSpaceError
        Naming the space needed and the space free.
    """
    need: dict = {}
    for path, shape, dtype in files:
        path = os.fspath(path)
        if not os.path.exists(path):
            directory = os.path.dirname(os.path.realpath(path))
            dev = os.stat(directory).st_dev
            d = need.setdefault(dev, [directory, 0, []])
            d[1] += file_bytes(shape, dtype)
            d[2].append(path)
    for directory, n, paths in need.values():
        free = _free_bytes(directory)
        if n > free:
            what = paths[0] if len(paths) == 1 else f"{len(paths)} files ({', '.join(paths)})"
            raise NotEnoughSpaceError(
                errno.ENOSPC, f"not enough disk space for {what}: needs {_size(n)}, "
                f"{directory} has {_size(free)} free")


def mapped_file(array):
    """The file ``array`` maps as a whole (a memmap :func:`open_array` or ``np.load(mmap_mode=...)``
    returned, not a view of one), or None."""
    if isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.filename:
        return array.filename
    return None


def mapping(array):
    """The memmap that maps a file as a whole and of which ``array`` is (a view of) a part, or None.

    An interleaved table's weight and state (fields of one record array: see
    :func:`interleaved_dtype`) are views of such a memmap; flushing, advice and prefetching act on
    its mapping."""
    a = array
    while isinstance(a, np.ndarray):
        if mapped_file(a) is not None:
            return a
        a = a.base
    return None


def _position(array, whole) -> int:
    """The byte position of ``array``'s first element in ``whole``'s mmap (which starts at the file
    offset ``whole.offset`` rounded down to the allocation granularity, as ``np.memmap`` maps)."""
    return (array.__array_interface__["data"][0] - whole.__array_interface__["data"][0]
            + whole.offset % mmap.ALLOCATIONGRANULARITY)


def interleaved_dtype(dtype, embedding_dim, state) -> np.dtype:
    """The record of an interleaved table: a row's weight, then its optimizer state, side by side.

    Parameters
    ----------
    dtype : float32 or float64
    embedding_dim : int
    state : dict
        state field name -> the shape of one row's part (``(embedding_dim,)``, or ``()`` for one
        number a row), in order.

    Returns
    -------
    numpy.dtype
        Structured: ``("weight", dtype, (embedding_dim,))`` then each state field. A file of these
        records holds a row's weight and state on the same page, so a row missing from memory costs
        one page read instead of one per array.
    """
    dtype = np.dtype(dtype)
    return np.dtype([("weight", dtype, (int(embedding_dim),))]
                    + [(name, dtype, tuple(shape)) for name, shape in state.items()])


def open_array(path, shape, dtype, init=None, writable=True, access="random") -> np.memmap:
    """A ``.npy`` file mapped into memory: created if it does not exist, reopened if it does.

    The contract (what :class:`~sparsemb.Embedding`'s ``storage=``, the optimizers' state files and
    Word2Vec's tables rely on):

    - **Reopen.** An existing file is mapped with ``np.load(mmap_mode="r+")`` (``"r"`` when not
      ``writable``) after its header is checked: a C-ordered array of exactly ``shape`` and
      ``dtype`` (byte order included), as long as its header says. Its content is kept as it is;
      ``init`` is not called.
    - **Create.** A new file is written under a temporary name in the same directory, after checking
      that the file system has room for it; its blocks are allocated at once (``posix_fallocate``),
      so that a full disk shows up here rather than as a crash (SIGBUS) when a page is written
      later; ``init(array)`` then fills the mapped array in place (without ``init`` it reads as
      zeros); only then is the file renamed to ``path``. If anything fails, an exception, Ctrl-C,
      a full disk, nothing is left behind.
    - **Access advice.** The mapping is advised ``MADV_RANDOM`` by default (see :func:`advise`):
      lookups and lazy updates touch scattered rows, and the kernel's default read-ahead on a page
      fault (up to ``read_ahead_kb``, 8 MiB on some disks) then reads, and evicts, far more than
      the rows needed: measured, a table twice a 256 MiB limit did not finish 20 steps in 10
      minutes (448 GB read), where with ``MADV_RANDOM`` a step took 3.7 s.

    Parameters
    ----------
    path : str or os.PathLike
        The file (conventionally ending in ``.npy``; nothing is appended).
    shape : tuple of int
    dtype : numpy dtype
    init : callable, optional
        ``init(array)`` fills a newly created array (a writable memmap of ``shape`` and ``dtype``).
    writable : bool
        Map read-write (training) or read-only. A read-only file is refused when ``writable``; a
        missing file is refused when not.
    access : {"random", "normal", "sequential"} or None
        The ``madvise`` advice for the mapping; None leaves the kernel's default.

    Returns
    -------
    numpy.memmap
        C-contiguous, of ``shape`` and ``dtype``.

    Raises
    ------
    StorageMismatchError
        (a ValueError) The file holds another shape, dtype or layout, is truncated, or is not a
        ``.npy`` file.
    PermissionError
        ``writable`` and the file (or its directory, to create it) is not writable.
    NotEnoughSpaceError
        (an OSError, ``errno.ENOSPC``) Creating the file needs more space than is free.
    IsADirectoryError, FileNotFoundError, ValueError
        ``path`` is a directory; its directory does not exist (or, not ``writable``, the file does
        not); it is a FIFO, device or socket.
    """
    path = os.fspath(path)
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    if access not in _ADVICE:
        raise ValueError(f"access must be one of {sorted(k for k in _ADVICE if k)} or None, "
                         f"got {access!r}")
    if os.path.exists(path):
        a = _reopen(path, shape, dtype, writable)
        replay_logs(a)  # a cached table's rows left in logs by a process that died
    elif not writable:
        raise FileNotFoundError(f"storage file does not exist: {path} (it is opened read-only, "
                                "so it is not created)")
    else:
        a = _create(path, shape, dtype, init)
    advise(a, access)
    return a


def _reopen(path, shape, dtype, writable):
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"storage path is a directory: {path}")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"storage path is not a regular file (a FIFO, device or socket): {path}")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"unsupported .npy format version {version}")
            have_shape, fortran, have_dtype = read(f)
            offset = f.tell()
    except ValueError as err:
        raise StorageMismatchError(f"{path} is not a .npy array file ({err})") from None
    if have_shape != shape or have_dtype != dtype or (fortran and len(shape) > 1):
        layout = ", Fortran order" if fortran and len(shape) > 1 else ""
        raise StorageMismatchError(
            f"{path} holds an array of shape {have_shape} and dtype {have_dtype}{layout}; expected "
            f"shape {shape} and dtype {dtype} (C order)")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if st.st_size < expected:
        raise StorageMismatchError(f"{path} is truncated: {st.st_size:,} bytes, its header needs "
                                   f"{expected:,}")
    if writable and not os.access(path, os.W_OK):
        raise PermissionError(errno.EACCES, "storage file is read-only, but training needs to write "
                              "it (open it read-only for inference: "
                              "from_pretrained(np.load(path, mmap_mode='r'), copy=False))", path)
    return np.load(path, mmap_mode="r+" if writable else "r", allow_pickle=False)


def _create(path, shape, dtype, init):
    target = check_output(path)
    header = _header(shape, dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    check_space([(target, shape, dtype)])
    stale = log_dir(target)  # the logs of a file removed since: not this file's rows
    if os.path.isdir(stale):
        shutil.rmtree(stale)
    with atomic_write(target) as f:
        f.write(header)
        f.flush()
        total = len(header) + nbytes
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(f.fileno(), 0, total)
        else:
            f.truncate(total)
        if nbytes:
            a = np.memmap(f, dtype=dtype, mode="r+", offset=len(header), shape=shape)
            if init is not None:
                init(a)
            a.flush()
            del a
    return np.load(target, mmap_mode="r+", allow_pickle=False)


def flush(array) -> None:
    """Write the dirty pages of the file ``array`` maps (or is a view of a mapping of) to it
    (``msync``); a no-op for an array in RAM."""
    whole = mapping(array)
    if whole is not None:
        whole.flush()
    elif isinstance(array, np.memmap):
        array.flush()


_ADVICE = {None: None, "random": getattr(mmap, "MADV_RANDOM", None),
           "normal": getattr(mmap, "MADV_NORMAL", None),
           "sequential": getattr(mmap, "MADV_SEQUENTIAL", None)}


def advise(array, access) -> None:
    """``madvise`` the whole mapping of ``array`` (a memmap mapping a file as a whole) with ``access``
    ("random", "normal", "sequential"); nothing for other arrays, None, or where the OS lacks it."""
    whole = mapping(array)
    m = None if whole is None else whole.base
    advice = _ADVICE[access]
    if isinstance(m, mmap.mmap) and hasattr(m, "madvise") and advice is not None:
        m.madvise(advice)


def will_need(array, rows) -> int:
    """Ask the OS to start reading the pages of ``array[rows]`` now (``MADV_WILLNEED``), if ``array``
    maps a file; returns the number of ``madvise`` calls (one per run of consecutive pages).

    The reads are queued at once and proceed in parallel, where page faults would wait for each page
    in turn: for a table twice the memory limit this made steps 1.6-2.5x faster (see BENCHMARKS.md).
    For pages already resident it costs a few microseconds per run for nothing, so it is a call
    the caller makes (``opt.prefetch(layer, ids)``), not something every step does.
    """
    whole = mapping(array)
    m = None if whole is None else whole.base
    if not isinstance(m, mmap.mmap) or not hasattr(mmap, "MADV_WILLNEED"):
        return 0
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size == 0:
        return 0
    page = mmap.PAGESIZE
    # A row's bytes: from its first element to the end of its last (a view's rows may be strided).
    extent = array.itemsize + sum((n - 1) * abs(st) for n, st in zip(array.shape[1:], array.strides[1:]))
    start = _position(array, whole) + rows * array.strides[0]
    pages = np.unique(np.concatenate([start // page, (start + extent - 1) // page]))
    cut = np.flatnonzero(np.diff(pages) != 1) + 1
    first = pages[np.r_[0, cut]].tolist()
    last = pages[np.r_[cut - 1, pages.size - 1]].tolist()
    for a, b in zip(first, last):
        m.madvise(mmap.MADV_WILLNEED, a * page, (b + 1 - a) * page)
    return len(first)


_prefetcher = None
_prefetcher_lock = threading.Lock()


def will_need_later(arrays, rows):
    """:func:`will_need` for each of ``arrays`` on ``rows``, run on a background thread (one for the
    process, started on first use); returns its ``concurrent.futures.Future`` (of the number of
    ``madvise`` calls).

    Each ``madvise(MADV_WILLNEED)`` allocates the pages it asks for, and under a memory limit that
    means reclaiming others first, in the calling thread: on a table twice a 1 GiB limit that took
    60-80 ms a step. On a thread of its own, for the next batch, it overlaps this step's kernels
    (which release the GIL). ``rows`` is copied, so the caller may reuse its array.
    """
    global _prefetcher
    rows = np.array(rows, dtype=np.int64, copy=True).reshape(-1)
    with _prefetcher_lock:
        if _prefetcher is None:
            _prefetcher = ThreadPoolExecutor(1, thread_name_prefix="sparsemb-prefetch")
    return _prefetcher.submit(lambda: sum(will_need(a, rows) for a in arrays))


# -- checkpoints -----------------------------------------------------------------------------------

MANIFEST = "checkpoint.json"
_FORMAT = "sparsemb-checkpoint"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _kind(name, obj):
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"checkpoint names are letters, digits, '_', '.', '-' (a file name part), "
                         f"got {name!r}")
    if hasattr(obj, "param_groups") and hasattr(obj, "state"):
        return "optimizer"
    if hasattr(obj, "named_parameters"):
        return "module"
    raise TypeError(f"checkpoint {name!r}: expected a sparsemb layer/Module or optimizer, got "
                    f"{type(obj).__name__}")


def _read_manifest(directory):
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise ValueError(f"{path} is not a sparsemb checkpoint manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a sparsemb checkpoint manifest")
    return manifest


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_npy(path, array):
    """``array`` to ``path`` as ``.npy``, atomically and durably (fsync before the rename). A table
    mapped from a ``.npy`` file is copied from that file with ``read``, which sees the mapping's
    pages and reads ahead (a mapping advised "random" would fault page by page)."""
    source = mapped_file(array)
    with atomic_write(path) as f:
        if source is not None:
            with open(source, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
        else:
            np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _optimizer_parts(opt):
    """(param_groups as JSON-able dicts, [(step, {state key: array})] per parameter in order)."""
    params = [p for g in opt.param_groups for p in g["params"]]
    index = {id(p): i for i, p in enumerate(params)}
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"}
              | {"params": [index[id(p)] for p in g["params"]]} for g in opt.param_groups]
    states = []
    for p in params:
        cache = getattr(p.module, "cache", None)
        if cache is not None:  # a cached table's changed rows and state, to the file the state views
            cache.write_back()
        s = opt.state[p]
        states.append((int(s["step"]), {k: v for k, v in s.items() if isinstance(v, np.ndarray)}))
    return groups, states


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"cannot store {v!r} of type {type(v).__name__} in a checkpoint manifest")


def checkpoint(directory, **objects) -> str:
    """Save layers (or Modules) and optimizers to ``directory``, consistently even after a crash.

    ``sm.checkpoint("ckpt", model=emb, opt=opt)`` writes each table and state array as a ``.npy``
    file (streamed from a mapped table, never copied whole into memory), fsyncs them, then replaces
    the manifest ``checkpoint.json`` atomically (temporary name, fsync, rename, fsync of the
    directory); the files of the previous checkpoint are removed only after that. Whenever the
    process or the machine stops, ``directory`` holds either the previous checkpoint or the new one,
    complete. Restore with :func:`restore` and the same names.

    Parameters
    ----------
    directory : str or os.PathLike
        Created if missing (its parent must exist). Files in it other than the checkpoint's are left
        alone.
    **objects
        name -> Embedding / EmbeddingBag / Module, or optimizer. Names become parts of file names.

    Returns
    -------
    str
        The manifest's path.

    Raises
    ------
    ValueError, TypeError
        A name that cannot be part of a file name, an object that is neither; a directory holding
        something else as ``checkpoint.json``.
    NotEnoughSpaceError
        The new files do not fit beside the old ones; nothing is written.
    """
    if not objects:
        raise ValueError("checkpoint needs at least one name=layer_or_optimizer")
    kinds = {name: _kind(name, obj) for name, obj in objects.items()}
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(errno.ENOTDIR, "checkpoint path is not a directory", directory)
    os.makedirs(directory, exist_ok=True)
    old = _read_manifest(directory)
    gen = (old["generation"] + 1) if old else 0
    plan, entries = [], {}  # plan: (file name, array)
    for name, obj in objects.items():
        if kinds[name] == "module":
            files = {}
            for pname, p in obj.named_parameters():
                files[pname] = f"{name}.{pname}.{gen}.npy"
                plan.append((files[pname], p.data))
            entries[name] = {"kind": "module", "arrays": files}
        else:
            groups, states = _optimizer_parts(obj)
            state = []
            for i, (step, arrays) in enumerate(states):
                files = {k: f"{name}.state{i}.{k}.{gen}.npy" for k in arrays}
                plan += [(files[k], a) for k, a in arrays.items()]
                state.append({"step": step, "arrays": files})
            entries[name] = {"kind": "optimizer", "class": type(obj).__name__,
                             "param_groups": groups, "state": state}
    manifest = {"format": _FORMAT, "version": 1, "generation": gen, "objects": entries}
    text = json.dumps(manifest, indent=1, default=_json_default, allow_nan=True).encode()
    check_space([(os.path.join(directory, f), a.shape, a.dtype) for f, a in plan])
    written = []
    try:
        for fname, a in plan:
            _write_npy(os.path.join(directory, fname), a)
            written.append(fname)
        with atomic_write(os.path.join(directory, MANIFEST)) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        for fname in written:
            _remove(os.path.join(directory, fname))
        raise
    _fsync_dir(directory)
    keep = {f for f, _ in plan}
    for fname in _manifest_files(old) - keep:
        _remove(os.path.join(directory, fname))
    ours = tuple(TMP_PREFIX + n for n in [MANIFEST + "."] + [f"{name}." for name in objects])
    for fname in os.listdir(directory):  # temporary files of a checkpoint killed while writing
        if fname.startswith(ours):
            _remove(os.path.join(directory, fname))
    return os.path.join(directory, MANIFEST)


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _manifest_files(manifest) -> set:
    if not manifest:
        return set()
    out = set()
    for e in manifest.get("objects", {}).values():
        if e.get("kind") == "module":
            out |= set(e["arrays"].values())
        else:
            for s in e.get("state", []):
                out |= set(s["arrays"].values())
    return {f for f in out if isinstance(f, str) and os.path.basename(f) == f}


def restore(directory, **objects) -> None:
    """Load what :func:`checkpoint` saved under the same names into existing layers and optimizers.

    Tables are copied into the layers' weights (into the file of a mapped one) and optimizer state
    through ``load_state_dict`` (checked as it checks, all or nothing per optimizer); arrays are
    read from mapped files, never wholly into memory. Every name, kind, shape and dtype is checked
    before anything is copied.

    Raises
    ------
    FileNotFoundError
        No checkpoint in ``directory``.
    KeyError
        A name the checkpoint does not hold (the message lists those it does).
    ValueError, TypeError
        A layer or optimizer that does not match what was saved (kind, class, keys, shape, dtype).
    """
    directory = os.fspath(directory)
    manifest = _read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(errno.ENOENT, "no sparsemb checkpoint here (no checkpoint.json)",
                                directory)
    saved = manifest["objects"]

    def load(fname):
        if not isinstance(fname, str) or os.path.basename(fname) != fname:
            raise ValueError(f"{directory}: manifest names a file outside the checkpoint: {fname!r}")
        return np.load(os.path.join(directory, fname), mmap_mode="r", allow_pickle=False)

    actions = []
    for name, obj in objects.items():
        kind = _kind(name, obj)
        if name not in saved:
            raise KeyError(f"checkpoint {directory} holds no {name!r} (it holds {sorted(saved)})")
        entry = saved[name]
        if entry["kind"] != kind:
            raise ValueError(f"checkpoint {name!r} is a {entry['kind']}, got a {kind}")
        if kind == "module":
            own = dict(obj.named_parameters())
            if set(own) != set(entry["arrays"]):
                raise ValueError(f"checkpoint {name!r} holds {sorted(entry['arrays'])}, the module "
                                 f"has {sorted(own)}")
            arrays = {k: load(f) for k, f in entry["arrays"].items()}
            for k, a in arrays.items():
                if a.shape != own[k].shape or a.dtype != own[k].dtype:
                    raise ValueError(f"checkpoint {name!r}: {k!r} is {a.dtype} {a.shape}, the module's "
                                     f"{own[k].dtype} {own[k].shape}")
            actions.append((obj.load_state_dict, arrays))
        else:
            if entry["class"] != type(obj).__name__:
                raise ValueError(f"checkpoint {name!r} is a {entry['class']}, got a {type(obj).__name__}")
            state = {i: {"step": s["step"], **{k: load(f) for k, f in s["arrays"].items()}}
                     for i, s in enumerate(entry["state"])}
            actions.append((obj.load_state_dict, {"state": state, "param_groups": entry["param_groups"]}))
    for fn, arg in actions:
        fn(arg)


# -- row cache -------------------------------------------------------------------------------------

#: Threads reading a row cache's rows, and threads appending to its logs: each waits on the disk,
#: so many in flight keep it busy (512-byte O_DIRECT random reads here: 58k/s with 8 in flight,
#: 88k/s with 32). Writes have threads of their own, so that reads never queue behind them.
READ_THREADS = 32
WRITE_THREADS = 32

#: Rows of a cached table's file per log. The changed rows a cache evicts are not written in place
#: (one random write each: 31k/s here, against 88k/s random reads, so writes bounded a step) but
#: appended to the log of their range of rows, a few kilobytes per range a step; a range's log is
#: merged into the file (the range read, overlaid with the log, written back: sequential) once it
#: holds :data:`LOG_FRACTION` of the range's bytes. 16,384 rows: 8 MiB of 512-byte records, the
#: merge's buffer.
LOG_RANGE_ROWS = 1 << 14
#: A range's log is merged when it reaches this fraction of the range's size: the logs take at
#: most about this fraction of the file's size on disk, and each evicted row costs
#: (2 / LOG_FRACTION + 1) record sizes of sequential I/O (read and write the range, read the log).
LOG_FRACTION = 0.5
#: A log chunk (the rows one eviction appended to a range) starts with a header of int64s:
#: this magic, the row count, the rows; padded to :data:`_LOG_ALIGN` bytes, then the records.
_LOG_MAGIC = int.from_bytes(b"smbrows1", "little")
_LOG_ALIGN = 512  # O_DIRECT's unit: the header and 512-byte records keep every chunk aligned

_pools = {}


def _pool(kind):
    with _prefetcher_lock:
        if kind not in _pools:
            n = {"read": READ_THREADS, "write": WRITE_THREADS}.get(kind, 1)
            _pools[kind] = ThreadPoolExecutor(n, thread_name_prefix=f"sparsemb-{kind}")
        return _pools[kind]


def _aligned(count, dtype):
    """An uninitialised array of ``count`` records of ``dtype`` starting on a page (what ``O_DIRECT``
    needs of a buffer)."""
    return aligned_empty(count, dtype, mmap.PAGESIZE)


def log_dir(path) -> str:
    """The directory of the logs of the cached table in file ``path``: rows changed since the file
    was last merged (see :class:`RowCache`); absent when there are none."""
    return os.fspath(path) + ".log"


def _log_chunks(data, dtype):
    """(rows, records) of each whole chunk of a log's bytes ``data`` (uint8), oldest first; a chunk
    cut short (the process died while appending it) ends the log."""
    pos, size = 0, dtype.itemsize
    while pos + 16 <= data.size:
        magic, count = (int(x) for x in data[pos:pos + 16].view(np.int64))
        head = -(-(2 + count) * 8 // _LOG_ALIGN) * _LOG_ALIGN
        end = pos + head + count * size
        if magic != _LOG_MAGIC or count < 0 or end > data.size:
            break
        yield data[pos + 16:pos + 16 + 8 * count].view(np.int64), data[pos + head:end].view(dtype)
        pos = end


def replay_logs(table) -> None:
    """Merge the logs a row cache left beside the file ``table`` maps (a process that ended without
    writing its cache back: a crash) into the table, then remove them; nothing if there are none.

    Parameters
    ----------
    table : numpy.memmap
        The whole file mapped writable (a 2-D table or a 1-D array of records).

    Raises
    ------
    PermissionError
        There are logs but ``table`` is read-only.
    """
    path = mapped_file(table)
    directory = log_dir(path) if path is not None else None
    if directory is None or not os.path.isdir(directory):
        return
    if not table.flags.writeable:
        raise PermissionError(errno.EACCES, "storage file has rows in its logs (a cached table whose "
                              f"process ended without writing them back): open it writable once to "
                              f"merge {directory}", path)
    dtype = table.dtype if table.ndim == 1 else np.dtype([("weight", table.dtype, table.shape[1:])])
    names = sorted(os.listdir(directory))
    for name in names:
        data = np.fromfile(os.path.join(directory, name), dtype=np.uint8)
        for ids, records in _log_chunks(data, dtype):
            table[ids] = records if table.ndim == 1 else records["weight"]
    table.flush()
    for name in names:
        os.remove(os.path.join(directory, name))
    os.rmdir(directory)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _io(jobs, write):
    """Each job (fd, file position, memoryview): read or write it whole."""
    for fd, pos, view in jobs:
        while len(view):
            n = os.pwrite(fd, view, pos) if write else os.preadv(fd, [view], pos)
            if n <= 0:
                raise OSError(errno.EIO, f"{'writing' if write else 'reading'} {len(view)} bytes "
                              f"at offset {pos} of a cached table's file or log: {n} done")
            view, pos = view[n:], pos + n


#: Linux's native asynchronous I/O, used for a row cache's reads where its file takes ``O_DIRECT``:
#: one ``io_submit`` call hands the kernel a whole batch of reads (and the virtual disk one
#: notification for many), where a ``pread`` a row on :data:`READ_THREADS` threads costs a system
#: call, a notification and two thread switches each (~11 us of CPU a 512-byte read measured here,
#: a third of a cached step's CPU time). System call numbers by machine: io_setup, io_getevents,
#: io_submit.
_AIO_CALLS = {"x86_64": (206, 208, 209), "aarch64": (0, 4, 2)}
#: Reads a thread keeps in flight with :class:`_Aio` (a queue deep enough for the disk's best).
AIO_DEPTH = 512
_IOCB = np.dtype([("data", "<u8"), ("key", "<u4"), ("rw_flags", "<u4"), ("opcode", "<u2"),
                  ("reqprio", "<i2"), ("fd", "<u4"), ("buf", "<u8"), ("nbytes", "<u8"),
                  ("offset", "<i8"), ("reserved2", "<u8"), ("flags", "<u4"), ("resfd", "<u4")])
_IO_EVENT = np.dtype([("data", "<u8"), ("obj", "<u8"), ("res", "<i8"), ("res2", "<i8")])


class _Aio(threading.local):
    """Reads through ``io_submit``/``io_getevents``, a context per thread; ``ok`` is False where
    the system has none (then the read threads are used)."""

    def __init__(self):
        calls = _AIO_CALLS.get(platform.machine()) if os.name == "posix" else None
        self.ok = False
        if calls is None:
            return
        self.syscall = ctypes.CDLL(None, use_errno=True).syscall
        self.syscall.restype = ctypes.c_long
        self.setup, self.getevents, self.submit = calls
        ctx = ctypes.c_ulong(0)
        if self.syscall(ctypes.c_long(self.setup), ctypes.c_long(AIO_DEPTH), ctypes.byref(ctx)) == 0:
            self.ctx, self.ok = ctx, True

    def _call(self, *args):
        r = self.syscall(*(ctypes.c_long(a) if isinstance(a, int) else a for a in args))
        if r < 0:
            e = ctypes.get_errno()
            if e in (errno.EINTR, errno.EAGAIN):
                return 0
            raise OSError(e, os.strerror(e))
        return r

    def read(self, fds, pos, addr, nbytes):
        """Read ``nbytes[i]`` bytes at ``pos[i]`` of ``fds[i]`` to address ``addr[i]`` (the arrays'
        buffers kept alive by the caller), all of them, before returning."""
        n = fds.size
        iocbs = np.zeros(n, _IOCB)
        iocbs["data"], iocbs["fd"], iocbs["offset"] = np.arange(n), fds, pos
        iocbs["buf"], iocbs["nbytes"] = addr, nbytes
        ptrs = np.uint64(iocbs.ctypes.data) + np.arange(n, dtype=np.uint64) * np.uint64(_IOCB.itemsize)
        events = np.zeros(AIO_DEPTH, _IO_EVENT)
        sent = done = 0
        while done < n:
            if sent < n and sent - done < AIO_DEPTH:
                sent += self._call(self.submit, self.ctx, min(n - sent, AIO_DEPTH - (sent - done)),
                                   ctypes.c_void_p(ptrs.ctypes.data + 8 * sent))
            if sent > done:
                got = self._call(self.getevents, self.ctx, 1, AIO_DEPTH,
                                 ctypes.c_void_p(events.ctypes.data), None)
                ev = events[:got]
                short = ev["res"] != nbytes[ev["data"].astype(np.int64)]
                if short.any():
                    i = np.flatnonzero(short)[0]
                    res, k = int(ev["res"][i]), int(ev["data"][i])
                    raise OSError(-res if res < 0 else errno.EIO,
                                  f"reading {int(nbytes[k])} bytes at offset {int(pos[k])} of a "
                                  f"cached table's file or log: {os.strerror(-res) if res < 0 else res}")
                done += got


_aio = _Aio()


def _submit(kind, jobs, write):
    """``jobs`` dealt round to the ``kind`` threads; their futures."""
    tasks = min(READ_THREADS if kind == "read" else WRITE_THREADS, len(jobs))
    pool = _pool(kind)
    return [pool.submit(_io, jobs[i::tasks], write) for i in range(tasks)]


def _aio_read(records, fds, pos, addr, nbytes):
    """(on the aio thread, whose context it uses; ``records`` kept alive until the reads end)"""
    if not _aio.ok:  # (io_setup refused this thread a context: aio-max-nr reached, say)
        raise OSError(errno.EAGAIN, "no native AIO context for reading a cached table's rows")
    _aio.read(fds, pos, addr, nbytes)


class _Logs:
    """The file of a cached table and its logs: where each row's latest record is (``loc``: -1 in
    the file, else its byte position in its range's log), appends, merges and reads."""

    def __init__(self, path, offset, dtype, rows):
        self.path, self.offset, self.dtype, self.rows = path, offset, dtype, rows
        self.dir = log_dir(path)
        self.base, self.direct = self._open(path, 0)
        self.loc = np.full(rows, -1, np.int64)
        self.size = np.zeros(-(-rows // LOG_RANGE_ROWS), np.int64)
        self.limit = int(LOG_FRACTION * LOG_RANGE_ROWS * dtype.itemsize)
        self.fds = {}
        self.merges = 0

    def _open(self, path, create):
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | create
        direct = getattr(os, "O_DIRECT", 0)
        if direct and self.dtype.itemsize % _LOG_ALIGN == 0 and self.offset % _LOG_ALIGN == 0:
            fd = None
            try:
                fd = os.open(path, flags | direct, 0o644)
                probe = _aligned(1, self.dtype)  # the file system may still refuse (tmpfs)
                os.preadv(fd, [memoryview(probe.view(np.uint8))], 0)
                return fd, True
            except OSError as err:
                if fd is not None:
                    os.close(fd)
                if err.errno != errno.EINVAL:
                    raise
        return os.open(path, flags, 0o644), False

    def fd(self, r):
        if r not in self.fds:
            os.makedirs(self.dir, exist_ok=True)
            self.fds[r] = self._open(os.path.join(self.dir, f"{r:06d}"), os.O_CREAT)[0]
        return self.fds[r]

    def buffer(self, count):
        return _aligned(count, self.dtype) if self.direct else np.empty(count, self.dtype)

    def read(self, ids, records, background=False):
        """Read the latest records of the rows ``ids`` (sorted, distinct) into ``records``, one
        request per run of records that lie one after the other; with ``background`` return at
        once the futures of the reads."""
        if ids.size == 0:
            return []
        size = self.dtype.itemsize
        loc = self.loc[ids]
        where = np.where(loc < 0, -1, ids // LOG_RANGE_ROWS)
        pos = np.where(loc < 0, self.offset + ids * size, loc)
        cut = np.flatnonzero((np.diff(where) != 0) | (np.diff(pos) != size)) + 1
        first, end = np.r_[0, cut], np.r_[cut, ids.size]
        if self.direct and _aio.ok:
            files, which = np.unique(where[first], return_inverse=True)
            fds = np.array([self.base if w < 0 else self.fd(w) for w in files.tolist()])[which]
            args = records, fds, pos[first], records.ctypes.data + first * size, (end - first) * size
            if background:  # (its own thread: this thread's reads never queue behind these)
                return [_pool("aio").submit(_aio_read, *args)]
            _aio_read(*args)
            return []
        raw = memoryview(records.view(np.uint8))
        jobs = [(self.base if w < 0 else self.fd(w), p, raw[a * size:b * size])
                for a, b, w, p in zip(first.tolist(), end.tolist(), where[first].tolist(),
                                      pos[first].tolist())]
        futures = _submit("read", jobs, False)
        if background:
            return futures
        for f in futures:
            f.result()
        return []

    def append(self, ids, records):
        """Start appending the records of the rows ``ids`` (sorted, distinct) to their ranges' logs
        (``loc`` points there from now on), then merging the logs that reach the limit: a
        :class:`_Writes`, to :meth:`finish` once done."""
        size = self.dtype.itemsize
        rng = ids // LOG_RANGE_ROWS
        cut = np.flatnonzero(np.diff(rng)) + 1
        first, end = np.r_[0, cut], np.r_[cut, ids.size]
        counts = end - first
        heads = -(-(2 + counts) * 8 // _LOG_ALIGN) * _LOG_ALIGN
        starts = np.r_[0, np.cumsum(heads + counts * size)]
        buf = _aligned(int(starts[-1]), np.dtype(np.uint8))
        jobs, merges = [], []
        for a, b, r, s, h in zip(first.tolist(), end.tolist(), rng[first].tolist(),
                                 starts[:-1].tolist(), heads.tolist()):
            head = buf[s:s + h].view(np.int64)
            head[:2] = _LOG_MAGIC, b - a
            head[2:2 + b - a] = ids[a:b]
            head[2 + b - a:] = 0
            buf[s + h:s + h + (b - a) * size] = records[a:b].view(np.uint8)
            at = int(self.size[r])
            self.loc[ids[a:b]] = at + h + np.arange(b - a) * size
            jobs.append((self.fd(r), at, memoryview(buf[s:s + h + (b - a) * size])))
            self.size[r] = at + h + (b - a) * size
            if self.size[r] >= self.limit:
                merges.append(r)
        futures = _submit("write", jobs, True)
        if merges:
            futures.append(_pool("merge").submit(self._merge_after, futures[:], merges))
        return _Writes(ids, records, futures, merges)

    def _merge_after(self, futures, ranges):
        for f in futures:
            f.result()
        for r in ranges:
            self.merge(r)
        os.fdatasync(self.base)  # the merged rows on the disk before their logs are emptied

    def merge(self, r, ids=None, records=None):
        """Write range ``r`` of the file overlaid with its log and then with the records of the rows
        ``ids`` (of the range; newest), all in one sequential read and write; the log stays until
        :meth:`finish` (or :meth:`close_logs`) empties it."""
        size, lo = self.dtype.itemsize, r * LOG_RANGE_ROWS
        part = self.buffer(min(lo + LOG_RANGE_ROWS, self.rows) - lo)
        whole = (self.base, self.offset + lo * size, memoryview(part.view(np.uint8)))
        _io([whole], False)
        n = int(self.size[r])
        if n:
            log = _aligned(n, np.dtype(np.uint8))
            _io([(self.fd(r), 0, memoryview(log))], False)
            for rows, recs in _log_chunks(log, self.dtype):
                part[rows - lo] = recs
        if ids is not None:
            part[ids - lo] = records
        _io([whole], True)

    def finish(self, writes):
        """Wait for ``writes``; the logs it merged are emptied (their rows are in the file)."""
        writes.wait()
        self.merges += len(writes.merges)
        for r in writes.merges:
            os.ftruncate(self.fds[r], 0)
            self.size[r] = 0
            lo = r * LOG_RANGE_ROWS
            self.loc[lo:lo + LOG_RANGE_ROWS] = -1

    def write_back(self, ids, records_of):
        """Merge every log, and the records of the rows ``ids`` (sorted, distinct; ``records_of(a,
        b)`` gives those of ``ids[a:b]``), into the file, then remove the logs: the file holds every
        row. One range at a time: the memory used stays that of a merge."""
        rng = ids // LOG_RANGE_ROWS
        touched = np.union1d(np.flatnonzero(self.size), rng)
        for r, a, b in zip(touched.tolist(), np.searchsorted(rng, touched).tolist(),
                           np.searchsorted(rng, touched, side="right").tolist()):
            self.merge(r, ids[a:b], records_of(a, b))
        os.fdatasync(self.base)
        self.close_logs()
        self.loc[:] = -1
        self.size[:] = 0
        return touched.size

    def close_logs(self):
        """Close and remove the logs (their rows must be in the file)."""
        for r, fd in self.fds.items():
            os.close(fd)
            os.remove(os.path.join(self.dir, f"{r:06d}"))
        self.fds.clear()
        if os.path.isdir(self.dir) and not os.listdir(self.dir):
            os.rmdir(self.dir)

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
        os.close(self.base)


class _Writes:
    """Records being appended on the write threads: ``ids`` (sorted), their ``records``, the
    ``futures`` of the appends and merges, and the ranges ``merges`` whose logs are merged."""

    def __init__(self, ids, records, futures, merges):
        self.ids, self.records, self.futures, self.merges = ids, records, futures, merges

    def wait(self):
        for f in self.futures:
            f.result()

    def holds(self, ids):
        """(for each of ``ids``, whether this write holds it; where in ``ids``/``records`` it is)"""
        at = np.minimum(np.searchsorted(self.ids, ids), max(self.ids.size - 1, 0))
        return self.ids[at] == ids, at


class RowCache:
    """A fixed number of rows of a table in a file, held in RAM with their optimizer state: what
    ``Embedding(..., storage=path, cache_rows=n)`` trains on instead of the OS page cache.

    ``arrays`` holds one C-contiguous array per field of a row (``"weight"``, and for an interleaved
    table ``"<Optimizer>.<state>"``), ``capacity`` slots long; :meth:`slots` gives rows their slots,
    reading the missing ones (with ``O_DIRECT`` through Linux's native AIO, else ``pread`` on
    :data:`READ_THREADS` threads; a run of consecutive records one request; :meth:`stage` reads
    the next batch's ahead) and appending the changed rows that leave for them to logs beside the file
    (``<file>.log/``, one per :data:`LOG_RANGE_ROWS` rows: sequential writes on
    :data:`WRITE_THREADS` threads, in the background: the call returns once the rows are copied
    out, and the writes run while the caller computes; a row read again before its write is done
    is taken from the write's copy). A row missing from the cache is read from wherever its latest
    record is, the file or a log; a log that reaches :data:`LOG_FRACTION` of its range is merged
    into the file in the background. ``O_DIRECT`` is used where the records and the file allow it
    (records a multiple of 512 bytes from an aligned offset, a file system that takes it): then no
    page of the file enters the page cache. See :mod:`sparsemb.kernels.rowcache` for the policy.

    The file alone holds the truth only after :meth:`write_back`, which merges the logs and the
    changed rows into it and removes the logs (``drop=True`` also empties the cache, so that the
    file may be changed by other means: ``layer.weight`` does that). That happens too when the
    cache is garbage collected or the interpreter exits. After a crash the logs remain, and are
    merged when the file is opened next (:func:`replay_logs`): the file then holds each row as
    last written out, not a consistent snapshot (use :func:`checkpoint` for that).

    Parameters
    ----------
    table : numpy.memmap
        The whole file mapped (:func:`open_array`): a 2-D table, or a 1-D array of records
        (:func:`interleaved_dtype`).
    rows : int
        Slots: at least the distinct rows of one batch; more than the table's rows are not made.

    Attributes
    ----------
    capacity : int
    arrays : dict of str -> ndarray
    direct : bool
        Whether the file and logs are read and written with ``O_DIRECT``.
    rows_read, rows_written : int
        Rows read from the file or logs, and appended or written back, so far.
    merges : int
        Logs merged into the file in the background so far.
    """

    def __init__(self, table, rows):
        self.check_rows(rows)
        path = mapped_file(table)
        if path is None:
            raise ValueError("a row cache needs a table mapped from a file (storage=)")
        replay_logs(table)
        n = table.shape[0]
        self.capacity = int(min(rows, n))
        if table.ndim == 2:
            self._dtype = np.dtype([("weight", table.dtype, (table.shape[1],))])
        else:
            self._dtype = table.dtype
        fields = self._dtype.fields
        # np.zeros: pages are mapped when first written, so an unused cache costs no memory.
        self.arrays = {k: np.zeros((self.capacity,) + fields[k][0].shape, fields[k][0].base)
                       for k in self._dtype.names}
        self._map = new_map(n, self.capacity)
        self.rows_read = self.rows_written = 0
        self._logs = _Logs(path, table.offset, self._dtype, n)
        self.direct = self._logs.direct
        #: The _Writes in flight (at most one; a list the finalizer shares).
        self._writing = []
        #: Rows read ahead by :meth:`stage`: (ids sorted, records, futures of the reads, valid) of
        #: the last two calls, oldest first (a list the finalizer shares).
        self._staged = []
        # Changed rows reach the file when the cache goes away, as a mapped table's dirty pages do.
        self._finalizer = weakref.finalize(self, RowCache._final, self._logs, self.arrays,
                                           self._map, self._writing, self._staged)

    @staticmethod
    def check_rows(rows):
        """Refuse a number of slots that is not an integer >= 1 (TypeError, ValueError)."""
        if isinstance(rows, (bool, np.bool_)) or not isinstance(rows, (int, np.integer)):
            raise TypeError(f"cache_rows must be an integer, got {rows!r}")
        if rows < 1:
            raise ValueError(f"cache_rows must be >= 1, got {rows}")

    @staticmethod
    def _final(logs, arrays, m, writing, staged):
        try:
            _wait(staged)  # (before the logs they read are removed and their files closed)
            RowCache._write_changed(logs, arrays, m, writing)
        finally:
            logs.close()

    @staticmethod
    def _write_changed(logs, arrays, m, writing):
        """Merge the logs and every changed row into the file, remove the logs, and mark the rows
        unchanged; returns how many rows."""
        while writing:
            logs.finish(writing.pop(0))
        slots = np.flatnonzero(m.dirty)
        ids = m.id_of[slots]
        order = np.argsort(ids)
        ids, slots = ids[order], slots[order]
        logs.write_back(ids, lambda a, b: _gather(arrays, slots[a:b], logs))
        m.dirty[slots] = False
        return ids.size

    @property
    def merges(self) -> int:
        return self._logs.merges

    @property
    def log_ranges(self) -> int:
        """How many ranges of rows (hence logs, at most) the file has: :data:`LOG_RANGE_ROWS` each."""
        return int(self._logs.size.size)

    def slot(self, row) -> int:
        """The slot of ``row``, or -1 if it is not in the cache."""
        return int(self._map.slot_of[row])

    @property
    def rows(self) -> int:
        """Rows held now."""
        return int(np.count_nonzero(self._map.id_of >= 0))

    def slots(self, ids, write=False):
        """The slots of ``ids`` (int64, in range, repeats allowed; flat), as an int64 array, after
        reading in the rows that are missing (and starting to write out the changed rows that leave
        for them).

        With ``write`` the rows are marked changed (the caller is about to update them).

        Raises
        ------
        ValueError
            If ``ids`` holds more distinct rows than the cache has slots (nothing is read, written
            or evicted).
        """
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        slots = np.empty(ids.size, dtype=np.int64)
        load_slots, load_ids, evict_slots, evict_ids, distinct = assign(self._map, ids, write, slots)
        if distinct > self.capacity:
            raise ValueError(f"a batch of {distinct:,} distinct rows does not fit in a cache of "
                             f"{self.capacity:,} rows (cache_rows=): make the cache larger or the "
                             "batch smaller")
        if load_ids.size:
            self._load(load_ids, load_slots, evict_ids, evict_slots)
        return slots

    def stage(self, ids):
        """Start reading, on the read threads, the rows of ``ids`` that are not in the cache, and
        return at once: the next :meth:`slots` calls that need them take them from there. For the
        next batch's ids, called before this batch's step, so that its reads overlap the step's
        work. The rows of the last two calls are kept (this batch's and the next's)."""
        m = self._map
        rows = np.unique(np.asarray(ids, dtype=np.int64))
        rows = rows[m.slot_of[rows] < 0]
        for w in self._writing:  # their records may not be on disk yet: taken from the write then
            rows = rows[~w.holds(rows)[0]]
        records = self._logs.buffer(rows.size)
        self.rows_read += rows.size
        del self._staged[:-1]
        self._staged.append(
            (rows, records, self._logs.read(rows, records, True), np.ones(rows.size, np.bool_)))


    def _load(self, load_ids, load_slots, evict_ids, evict_slots):
        """Copy the evicted changed rows out, then read the new rows into their slots: from the
        write still in flight if it holds them (the file or log may be older), else from the file
        or log; then start appending the evicted rows. One write is in flight at a time: a new one
        waits for the last (so that two writes of a log never race, and a merge's log is emptied
        before it is appended to again)."""
        writing = self._writing
        if evict_ids.size:
            order = np.argsort(evict_ids)
            out = evict_ids[order], _gather(self.arrays, evict_slots[order], self._logs)
        order = np.argsort(load_ids)
        ids, slots = load_ids[order], load_slots[order]
        records = self._logs.buffer(ids.size)
        pending = np.zeros(ids.size, np.bool_)
        for w in writing:
            held, at = w.holds(ids)
            records[held] = w.records[at[held]]
            pending |= held
        for staged, staged_records, reads, valid in self._staged:
            at = np.minimum(np.searchsorted(staged, ids), max(staged.size - 1, 0))
            held = ~pending & (staged[at] == ids) & valid[at]
            if held.any():  # (so a step does not wait for the next batch's reads it has no use for)
                for f in reads:
                    f.result()
                records[held] = staged_records[at[held]]
                pending |= held
        disk = np.flatnonzero(~pending)
        if disk.size == ids.size:
            self._logs.read(ids, records)
        elif disk.size:
            part = self._logs.buffer(disk.size)  # read into a compact buffer, then placed
            self._logs.read(ids[disk], part)
            records[disk] = part
        for k, a in self.arrays.items():
            a[slots] = records[k]
        self.rows_read += disk.size
        if evict_ids.size:
            for staged, _, _, valid in self._staged:  # a staged copy of an evicted row is old now
                at = np.minimum(np.searchsorted(staged, out[0]), max(staged.size - 1, 0))
                valid[at[staged[at] == out[0]]] = False
            while writing:
                if writing[0].merges:  # its logs are emptied: no staged read may still use them
                    _wait(self._staged)
                self._logs.finish(writing.pop(0))
            writing.append(self._logs.append(*out))
            self.rows_written += out[0].size

    def write_back(self, drop=False):
        """Merge the logs and the changed rows into the file and remove the logs (the rows stay in
        the cache, unchanged); with ``drop`` also empty the cache, so that the file may then be
        read or changed by other means."""
        m = self._map
        _wait(self._staged)  # (the logs are emptied)
        if drop:  # the file may be changed by other means now: staged copies would be old
            del self._staged[:]
        self.rows_written += self._write_changed(self._logs, self.arrays, m, self._writing)
        if drop:
            clear(m)

    def flush(self):
        """:meth:`write_back` (which ends with ``fdatasync``)."""
        self.write_back()

    def fields(self, optimizer):
        """``optimizer``'s state arrays in the cache, by state name (``{"sum": ...}`` for the fields
        ``"Adagrad.sum"`` of ``optimizer="Adagrad"``)."""
        prefix = optimizer + "."
        return {k[len(prefix):]: a for k, a in self.arrays.items() if k.startswith(prefix)}


def _wait(staged):
    """Wait for the reads of the ``staged`` rows of a :class:`RowCache` (their positions in the logs
    stay valid until then)."""
    for _, _, reads, _ in staged:
        for f in reads:
            f.result()


def _gather(arrays, slots, logs):
    """The rows in ``slots`` of the cache ``arrays`` as records (aligned for ``O_DIRECT`` if the
    ``logs`` use it)."""
    records = logs.buffer(slots.size)
    for k, a in arrays.items():  # (gathered per field: a record's fields are interleaved)
        records[k] = a[slots]
    return records
