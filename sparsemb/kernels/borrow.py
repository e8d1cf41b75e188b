"""Borrowed arrays: views a kernel's hot loops can pass around without reference counting.

Numba counts references to every array through its *meminfo*: each time a function (inlined or not)
takes an array argument, it adds one reference on entry and drops it on exit, two atomic operations
on a counter shared by every thread using that array, unless LLVM can see both ends in one block.
A word2vec kernel hands its bundles of tables (:class:`~sparsemb.kernels.word2vec.Tables` and the
others, about twenty arrays) to the function of each centre word, so every example paid some
sixty atomic operations; each is also a full memory fence, and with two threads the counters'
cache lines moved between the cores on every example.

:func:`borrowed` returns a bundle whose arrays have no meminfo: the same data, shape and strides,
but reference counting on them is a test of a null pointer. It is for the arrays a kernel was
called with, which the caller keeps alive until the kernel returns; a borrowed array must not
outlive the call (never returned, stored, or given to an object that keeps it).
"""
from __future__ import annotations

from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic


#: The members a borrowed bundle may have besides arrays: values with nothing to count.
_PLAIN = (types.Number, types.Boolean, types.NoneType)


def _borrow_array(context, builder, ty, value):
    array = context.make_array(ty)(context, builder, value)
    array.meminfo = cgutils.get_null_value(array.meminfo.type)
    array.parent = cgutils.get_null_value(array.parent.type)
    return array._getvalue()


@intrinsic
def _borrowed(typingctx, bundle):
    """A borrowed view of the array ``bundle`` (same type, no meminfo, no parent object), or
    ``bundle`` (a tuple or named tuple of arrays, numbers, booleans and None) with each array
    replaced by one."""
    if isinstance(bundle, types.Array):
        return bundle(bundle), lambda context, builder, sig, args: _borrow_array(context, builder, bundle, args[0])
    if not (isinstance(bundle, types.BaseTuple)
            and all(isinstance(t, (types.Array, *_PLAIN)) for t in bundle.types)):
        return None

    def codegen(context, builder, signature, args):
        (value,) = args
        for i, ty in enumerate(bundle.types):
            if isinstance(ty, types.Array):
                value = builder.insert_value(value, _borrow_array(context, builder, ty,
                                                                  builder.extract_value(value, i)), i)
        return value

    return bundle(bundle), codegen


def _as_is(bundle):
    return bundle


#: In compiled code :func:`_borrowed`; in Python (``NUMBA_DISABLE_JIT``), where nothing counts
#: references, the bundle as it is.
borrowed = _as_is if config.DISABLE_JIT else _borrowed
