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


class _GuardedWrite(contextlib.AbstractContextManager):
    """A write to ``path`` that is undone (:meth:`_undo`) however the block ends early, and finished
    (:meth:`_commit`) only when it succeeds; an ``OSError`` of the write names ``path``."""

    def __init__(self, path, inputs=()):
        self.path = os.fspath(path)
        self.inputs = tuple(inputs)

    def __exit__(self, exc_type, exc, tb):
        try:
            self.file.close()  # may raise: buffered data meets a full disk here
            if exc_type is None:
                self._commit()
        except OSError as err:
            self._undo()
            raise OSError(err.errno, err.strerror, self.path) from None
        except BaseException:
            self._undo()
            raise
        if exc_type is not None:
            self._undo()
            if issubclass(exc_type, OSError) and isinstance(exc, OSError) and not exc.filename:
                raise OSError(exc.errno, exc.strerror, self.path) from None
        return False

    def _commit(self):
        pass


class atomic_write(_GuardedWrite):
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
            self._undo()
            raise
        return self.file

    def _commit(self):
        os.chmod(self.tmp, self.mode)
        os.replace(self.tmp, self.target)

    def _undo(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


class atomic_append(_GuardedWrite):
    """Append to a file in place; if the block fails, cut the file back to the length it had.

    An append cannot be written under a temporary name without copying the whole file, so instead the
    old length is remembered and restored on any failure (an exception, Ctrl-C, a full disk at close).
    Only a crash of the process itself can leave a partial append. The output is checked as
    :func:`check_output` checks it (no directory, FIFO or device); a missing file is created.

    Parameters
    ----------
    path : str or os.PathLike
    inputs : iterable, optional
        Passed to :func:`check_output`.
    """

    def __enter__(self):
        self.target = check_output(self.path, self.inputs)
        self.file = open(self.target, "ab")
        self.length = self.file.tell()
        return self.file

    def _undo(self):
        with contextlib.suppress(OSError):
            os.truncate(self.target, self.length)


def open_compressed(path):
    """Open ``path`` for reading bytes, through gzip or bz2 when its name ends in ``.gz`` / ``.bz2``."""
    path = os.fspath(path)
    if path.endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    if path.endswith(".bz2"):
        import bz2

        return bz2.open(path, "rb")
    return open(path, "rb")


# -- the restricted unpickler ----------------------------------------------------------------------
#
# gensim saves models and vectors as a pickle of the object (its large arrays moved to .npy side files).
# Unpickling runs whatever callables a pickle names, so a pickle from anywhere is code from anywhere.
# The unpickler below resolves only the names in a fixed table: gensim's classes become inert
# stand-ins that hold the pickled attributes, numpy arrays are rebuilt by numpy's own reconstructors,
# and a few builtins are allowed. Any other name -- os.system, builtins.eval, subprocess.Popen, a
# gensim function -- is refused before anything is called.

import pickle as _pickle  # noqa: E402  (kept with the code that needs it)


class UnsafePickleError(_pickle.UnpicklingError, ValueError):
    """A pickle named a global that the restricted unpickler does not admit."""


class PickledObject:
    """Stand-in for a class of a pickle's (gensim's ``Word2Vec``, ``KeyedVectors``, ``Vocab``...).

    A subclass is made per pickled class name; ``pickled_class`` gives that name
    (``"gensim.models.word2vec.Word2Vec"``) and the instance's ``__dict__`` holds the pickled state.
    Nothing of the original class runs: no ``__init__``, no ``__setstate__``.
    """

    pickled_class = ""

    def __setstate__(self, state):
        # gensim's objects pickle their __dict__; (dict, slots) pairs appear for classes with slots.
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
            if slots:
                self.__dict__.update(slots)
        if state:
            if not isinstance(state, dict):
                raise UnsafePickleError(f"{self.pickled_class}: unexpected pickled state {type(state).__name__}")
            self.__dict__.update(state)

    def __repr__(self):
        return f"<pickled {self.pickled_class}: {sorted(self.__dict__)}>"


_STAND_INS: dict = {}


def _stand_in(name):
    cls = _STAND_INS.get(name)
    if cls is None:
        cls = type(name.rsplit(".", 1)[-1], (PickledObject,), {"pickled_class": name, "__module__": __name__})
        _STAND_INS[name] = cls
    return cls


#: gensim classes (module, name) mapped to stand-ins. gensim 3.x aliases and moved classes included.
GENSIM_CLASSES = frozenset({
    ("gensim.models.keyedvectors", "KeyedVectors"),
    ("gensim.models.keyedvectors", "Word2VecKeyedVectors"),
    ("gensim.models.keyedvectors", "EuclideanKeyedVectors"),
    ("gensim.models.keyedvectors", "BaseKeyedVectors"),
    ("gensim.models.keyedvectors", "WordEmbeddingsKeyedVectors"),
    ("gensim.models.keyedvectors", "Doc2VecKeyedVectors"),
    ("gensim.models.keyedvectors", "Vocab"),
    ("gensim.models.keyedvectors", "CompatVocab"),
    ("gensim.models.word2vec", "Word2Vec"),
    ("gensim.models.word2vec", "Vocab"),
    ("gensim.models.word2vec", "Word2VecVocab"),
    ("gensim.models.word2vec", "Word2VecTrainables"),
    ("gensim.models.base_any2vec", "BaseWordEmbeddingsModel"),
    ("gensim.models.deprecated.word2vec", "Word2Vec"),
    ("gensim.models.deprecated.word2vec", "Vocab"),
    ("gensim.models.deprecated.keyedvectors", "KeyedVectors"),
    ("gensim.models.deprecated.keyedvectors", "EuclideanKeyedVectors"),
    ("gensim.models.deprecated.keyedvectors", "Vocab"),
    ("gensim.utils", "call_on_class_only"),  # a function stored as an attribute (``load``), never called
})


def _numpy_reconstruct(subtype, shape, dtype):
    import numpy as np

    if subtype is not np.ndarray:
        raise UnsafePickleError(f"numpy reconstruction of {subtype!r} refused (only numpy.ndarray)")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _numpy_scalar(dtype, data=None):
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError(f"numpy scalar of dtype {dtype!r} refused")
    if isinstance(data, str):  # a Python 2 pickle's bytes, read as latin-1 text
        data = data.encode("latin1")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _codecs_encode(text, encoding="utf-8"):
    # Python 2 pickles spell bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise UnsafePickleError(f"_codecs.encode({type(text).__name__}, {encoding!r}) refused")
    return text.encode(encoding)


def _copyreg_reconstructor(cls, base, state):
    # Protocol 0/1 pickles of new-style classes: object.__new__(cls), or base(state) for builtin bases.
    if isinstance(cls, type) and issubclass(cls, PickledObject) and base is object:
        return cls.__new__(cls)
    if cls is base and base in (dict, list, set, frozenset, tuple, int, float, str, bytes):
        return base(state) if state is not None else base()
    raise UnsafePickleError(f"copyreg._reconstructor({cls!r}, {base!r}) refused")


def _random_state(*args):
    import numpy as np

    # The pickled state is applied by RandomState.__setstate__ (a BUILD step) afterwards.
    return np.random.RandomState()


_BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")


def _bit_generator(bit_generator_name="MT19937"):
    """numpy's ``__bit_generator_ctor``, for the named bit generators only; its state is set afterwards."""
    import numpy as np

    name = getattr(bit_generator_name, "__name__", bit_generator_name)
    if name not in _BIT_GENERATORS:
        raise UnsafePickleError(f"unknown bit generator {name!r} in the pickle")
    return getattr(np.random, name)()


def _generator(bit_generator_name="PCG64", bit_generator_ctor=_bit_generator):
    """numpy's ``__generator_ctor`` (a ``default_rng()``, as gensim 4 keeps in ``random``)."""
    import numpy as np

    if isinstance(bit_generator_name, np.random.BitGenerator):
        return np.random.Generator(bit_generator_name)
    return np.random.Generator(_bit_generator(bit_generator_name))  # a name, or one of the classes below


def _safe_globals():
    import builtins
    import collections

    import numpy as np

    table = {}
    for name in ("int", "float", "complex", "bool", "str", "bytes", "bytearray", "list", "tuple", "dict",
                 "set", "frozenset", "range", "slice", "hash", "object"):
        table[("builtins", name)] = table[("__builtin__", name)] = getattr(builtins, name)
    table[("__builtin__", "long")] = int
    table[("__builtin__", "unicode")] = str
    table[("collections", "defaultdict")] = collections.defaultdict
    table[("collections", "OrderedDict")] = collections.OrderedDict
    table[("collections", "Counter")] = collections.Counter
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = _numpy_reconstruct
        table[(module, "scalar")] = _numpy_scalar
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    for module, name in (("numpy.random", "__RandomState_ctor"), ("numpy.random._pickle", "__randomstate_ctor"),
                         ("numpy.random.mtrand", "RandomState"), ("numpy.random", "RandomState")):
        table[(module, name)] = _random_state
    for module, name in (("_mt19937", "MT19937"), ("_pcg64", "PCG64"), ("_pcg64", "PCG64DXSM"),
                         ("_philox", "Philox"), ("_sfc64", "SFC64")):
        table[("numpy.random." + module, name)] = getattr(np.random, name)
    table[("numpy.random._pickle", "__bit_generator_ctor")] = _bit_generator
    table[("numpy.random._pickle", "__generator_ctor")] = _generator
    table[("_codecs", "encode")] = _codecs_encode
    table[("copyreg", "_reconstructor")] = _copyreg_reconstructor
    table[("copy_reg", "_reconstructor")] = _copyreg_reconstructor
    return table


class RestrictedUnpickler(_pickle.Unpickler):
    """An unpickler that resolves only known globals (see :func:`load_pickle`)."""

    def __init__(self, file, classes=GENSIM_CLASSES, source="pickle", **kwargs):
        super().__init__(file, **kwargs)
        self.classes = frozenset(classes)
        self.source = source
        self.table = _safe_globals()

    def find_class(self, module, name):
        if (module, name) in self.table:
            return self.table[(module, name)]
        if (module, name) in self.classes:
            return _stand_in(f"{module}.{name}")
        raise UnsafePickleError(
            f"{self.source}: refusing to load: the pickle asks for {module}.{name}, which is not one of the "
            f"classes sparsemb reads (gensim's models and vectors, numpy arrays, a few builtins). Loading it "
            f"could run arbitrary code; if you trust the file, load it with gensim itself")

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: refusing a pickle with persistent ids")


def load_pickle(path, classes=GENSIM_CLASSES):
    """Unpickle a file, admitting only gensim's known classes, numpy arrays and plain builtins.

    Parameters
    ----------
    path : str or os.PathLike
        The pickle (``.gz`` / ``.bz2`` are decompressed).
    classes : iterable of (module, name)
        Classes to map to :class:`PickledObject` stand-ins; :data:`GENSIM_CLASSES` by default (add to
        it for other gensim models: ``GENSIM_CLASSES | {("gensim.models.fasttext", "FastText")}``).

    Returns
    -------
    object
        The unpickled object: stand-ins for the admitted classes (``obj.__dict__`` is the pickled
        state, ``type(obj).pickled_class`` the original class name), numpy arrays, builtins.

    Raises
    ------
    UnsafePickleError
        (a ``pickle.UnpicklingError`` and ``ValueError``) if the pickle names any other global; nothing
        it names is called before the check.
    FileNotFoundError
    """
    path = os.fspath(path)
    with open_compressed(path) as f:
        try:
            return RestrictedUnpickler(f, classes=classes, source=path, encoding="latin1").load()
        except UnsafePickleError:
            raise
        except (_pickle.UnpicklingError, EOFError, AttributeError, TypeError, IndexError, KeyError) as err:
            raise ValueError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None


def load_gensim(path, mmap=None, classes=GENSIM_CLASSES):
    """Load an object gensim's ``SaveLoad.save`` wrote: the pickle and its ``.npy`` side files.

    gensim stores large arrays apart, as ``<path>.<attribute>.npy`` (``.npz`` for a compressed
    ``path``), listing them in the pickled object's ``__numpys``, sub-objects' in
    ``__recursive_saveloads``, and dropped attributes in ``__ignoreds``; this puts them back, as
    gensim's ``_load_specials`` does. Side files are read with ``allow_pickle=False``.

    Parameters
    ----------
    path : str or os.PathLike
    mmap : {None, "r", "r+", "c"}
        Map the side files (uncompressed only).
    classes : iterable of (module, name)
        As for :func:`load_pickle`.

    Returns
    -------
    object
        As :func:`load_pickle` returns, with the side arrays set as attributes.

    Raises
    ------
    UnsafePickleError, FileNotFoundError, ValueError
    """
    import numpy as np

    path = os.fspath(path)
    obj = load_pickle(path, classes)
    compress = path.endswith((".gz", ".bz2"))
    suffix = "npz" if compress else "npy"

    def specials(target, fname):
        state = getattr(target, "__dict__", None)
        if state is None:
            return
        for attrib in state.get("__recursive_saveloads", []):
            specials(state.get(attrib), f"{fname}.{attrib}")
        for attrib in state.get("__numpys", []):
            side = f"{fname}.{attrib}.{suffix}"
            if compress:
                if mmap:
                    raise ValueError(f"cannot mmap compressed array {side}: load with mmap=None")
                with np.load(side, allow_pickle=False) as z:
                    state[attrib] = z["val"]
            else:
                state[attrib] = np.load(side, mmap_mode=mmap, allow_pickle=False)
        for attrib in state.get("__scipys", []):
            raise ValueError(f"{path}: sparse matrix attribute {attrib!r} is not supported")
        for attrib in state.get("__ignoreds", []):
            state[attrib] = None

    specials(obj, path)
    return obj
