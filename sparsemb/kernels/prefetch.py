"""Software prefetch: ask for a table row a few iterations before it is read.

Gathering rows at random (lookups, bags, the optimizers' reads of gradient rows) is bound by memory
latency, not bandwidth: without help the core waits for each row in turn. Asking for the row needed
``AHEAD`` iterations later keeps several rows in flight. A prefetch is only a hint to the CPU: it
never faults, whatever the address, and never changes a result.
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


@jit(inline="always")
def wide_rows(table):
    """Whether the rows of a 2-D ``table`` are long enough for a prefetch to gain."""
    return table.shape[1] * table.itemsize >= MIN_ROW_BYTES


@jit(inline="always")
def prefetch_row(table, row):
    """Ask for every cache line of ``table[row]`` (a 2-D table), if rows are long enough to gain."""
    if wide_rows(table):
        step = max(_LINE // table.itemsize, 1)
        for c in range(0, table.shape[1], step):
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
