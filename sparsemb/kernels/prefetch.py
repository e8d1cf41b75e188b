"""Cache hints: software prefetch, and streaming stores for outputs larger than the caches.

Gathering rows at random (lookups, bags, the optimizers' reads of gradient rows) is bound by memory
latency, not bandwidth: without help the core waits for each row in turn. Asking for the row needed
``AHEAD`` iterations later keeps several rows in flight. A prefetch is only a hint to the CPU: it
never faults, whatever the address, and never changes a result.

A streaming (non-temporal) store writes a whole line to memory without first reading it into the
caches, as ``memcpy`` does for large copies: for an output much larger than the caches it halves the
memory traffic of writing it (see :data:`STREAM_MIN_BYTES`).
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._config import jit

#: Iterations between asking for a row and reading it. Measured on 1M x 64 float32 tables: lookups were
#: best at 8-16 (16 within 6% of 8), the optimizer updates at 4-8.
AHEAD = 8

#: Rows shorter than this are not prefetched: for 32-, 64- and 128-byte rows the hint cost more than it
#: saved (lookups 10-50% slower), for 256-byte rows it saved 23%.
MIN_ROW_BYTES = 256

_LINE = 64

#: Bytes of one streaming store (a 256-bit vector): a streamed row must be a whole number of them,
#: and start on a multiple of them.
STREAM_BYTES = 32

#: Outputs at least this large are written with streaming stores. Measured on the lookup of 1M x 64
#: float32 rows at Zipf(1.1) ids, followed by a read of the whole output (its consumer): 2 MiB output
#: 16% slower streamed, 4 MiB even, 8 MiB 18% faster, 16 MiB 8-25% faster (34% without the read).
STREAM_MIN_BYTES = 1 << 23


@intrinsic
def _prefetch(typingctx, array, index):
    """LLVM's ``prefetch`` (read, keep in all cache levels) of the line holding ``array[index]``
    (``index`` a tuple of ints, one per dimension)."""
    if not (isinstance(array, types.Array) and isinstance(index, types.BaseTuple) and len(index) == array.ndim
            and all(isinstance(t, types.Integer) for t in index)):
        return None

    def codegen(context, builder, signature, args):
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [context.cast(builder, builder.extract_value(args[1], k), t, types.intp)
               for k, t in enumerate(idxty)]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


@intrinsic
def _stream_chunk(typingctx, out, i, j, table, r):
    """``out[i, j:j + k] = table[r, j:j + k]`` with one streaming store, ``k`` items of
    :data:`STREAM_BYTES`; ``out[i, j]`` must be aligned to :data:`STREAM_BYTES`."""
    if not (isinstance(out, types.Array) and isinstance(table, types.Array) and out.dtype == table.dtype
            and out.ndim == table.ndim == 2 and out.dtype in (types.float32, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        oty, ity, jty, tty, rty = signature.args
        o, t = context.make_array(oty)(context, builder, args[0]), context.make_array(tty)(context, builder, args[3])

        def pointer(aryty, ary, row, rowty):
            idx = [context.cast(builder, row, rowty, types.intp), context.cast(builder, args[2], jty, types.intp)]
            return cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)

        item = context.get_data_type(oty.dtype)
        vec = ir.VectorType(item, STREAM_BYTES * 8 // oty.dtype.bitwidth).as_pointer()
        value = builder.load(builder.bitcast(pointer(tty, t, args[4], rty), vec), align=oty.dtype.bitwidth // 8)
        store = builder.store(value, builder.bitcast(pointer(oty, o, args[1], ity), vec), align=STREAM_BYTES)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.IntType(32)(1)]))
        return context.get_dummy_value()

    return types.void(out, i, j, table, r), codegen


@intrinsic
def store_fence(typingctx):
    """Order this thread's streaming stores before what follows (they are weakly ordered): call once
    after them, before other threads may read what they wrote."""
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


def _items_in(nbytes):
    """An intrinsic giving how many items of an array's dtype fit in ``nbytes`` (at least 1), as a
    constant of the compiled code: ``nbytes // array.itemsize`` reads the item size from the array
    at run time and divides, a 64-bit integer division at each row prefetched or streamed."""

    @intrinsic
    def items(typingctx, array):
        if not isinstance(array, types.Array):
            return None

        def codegen(context, builder, signature, args):
            size = context.get_abi_sizeof(context.get_data_type(array.dtype))
            return context.get_constant(types.intp, max(nbytes // size, 1))

        return types.intp(array), codegen

    return items


_line_items = _items_in(_LINE)
_stream_items = _items_in(STREAM_BYTES)


@jit(inline="always")
def streams(out):
    """Whether rows of the 2-D C-contiguous ``out`` can be written with streaming stores, and gain:
    the output is at least :data:`STREAM_MIN_BYTES`, and each of its rows starts on and is a whole
    number of :data:`STREAM_BYTES`."""
    row = out.shape[1] * out.itemsize
    return (out.size * out.itemsize >= STREAM_MIN_BYTES and row % STREAM_BYTES == 0
            and out.ctypes.data % STREAM_BYTES == 0)


@jit(inline="always")
def stream_row(out, i, table, r):
    """``out[i] = table[r]`` with streaming stores (where :func:`streams` says so)."""
    for j in range(0, out.shape[1], _stream_items(out)):
        _stream_chunk(out, i, j, table, r)


@jit(inline="always")
def wide_rows(table):
    """Whether the rows of a 2-D ``table`` are long enough for a prefetch to gain."""
    return table.shape[1] * table.itemsize >= MIN_ROW_BYTES


@jit(inline="always")
def prefetch_row(table, row):
    """Ask for every cache line of ``table[row]`` (a 2-D table), if rows are long enough to gain."""
    if wide_rows(table):
        for c in range(0, table.shape[1], _line_items(table)):
            _prefetch(table, (row, c))


@jit(inline="always")
def prefetch_ahead(table, ids, i):
    """Ask for ``table[ids[i + AHEAD]]``, if there is such an id and rows are long enough to gain
    (checked first, so short rows cost one predictable branch)."""
    if wide_rows(table) and i + AHEAD < ids.size:
        prefetch_row(table, ids[i + AHEAD])


@jit(inline="always")
def prefetch_item(array, i):
    """Ask for the cache line holding ``array[i]`` (a 1-D array)."""
    _prefetch(array, (i,))
