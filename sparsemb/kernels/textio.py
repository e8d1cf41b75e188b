"""The word2vec text format in compiled code: ``key v1 ... vdim`` lines written as ``"%.9g"`` would
write them, and read as ``float()`` would read them.

Writing takes two passes over a block of rows. :func:`decimal_digits` finds each number's nine
significant digits and decimal exponent in float64 (one scaling by a power of ten, at most three
roundings, so the scaled value is within 4e-7 of the exact one); a number whose scaled value is within
:data:`TIE` of a rounding boundary (``.5``) is marked for its caller to settle with Python's own
correctly rounded formatting, so the digits are always those printf gives. :func:`write_lines` then
lays keys and numbers out in a byte buffer, as ``%g`` does: positional for exponents in [-4, 9),
scientific (``1.5e-05``, ``-3e+38``, ``1e-300``) otherwise, trailing zeros dropped, ``-0``, ``inf``,
``-inf`` and ``nan``.

Reading, :func:`parse_lines` takes the lines whose numbers it can convert exactly with one float64
operation (nearly all that any tool writes) and stops before any other, which its caller reads in
Python: the values and the errors are those of the Python reader.
"""
from __future__ import annotations

import math

import numpy as np

from .._config import jit

#: Bytes a number takes at most, with its separator: ``-1.23456789e-308 ``.
MAX_NUMBER_BYTES = 17
#: Distance from ``.5`` below which the float64 rounding is not trusted (the error is below 4e-7).
TIE = 1e-5
#: Marks, in the digits array, a number :func:`decimal_digits` leaves to its caller.
UNSETTLED = -1

_POW10 = np.array([float(f"1e{k}") for k in range(309)])  # correctly rounded, exact up to 1e22
_LOG10_2 = math.log10(2.0)
#: "00" .. "99" as two ASCII bytes, the first lowest.
_PAIRS = np.array([ord(f"{i:02d}"[0]) | ord(f"{i:02d}"[1]) << 8 for i in range(100)], dtype=np.int64)
#: Trailing zeros of 1..9999 written with four digits (0 is not looked up).
_TRAILING_ZEROS = np.array([0] + [len(str(i)) - len(str(i).rstrip("0")) for i in range(1, 10000)],
                           dtype=np.int64)


@jit(inline="always")
def _scaled(a, k):
    """``a * 10**k`` in float64 with an exact power where there is one; a subnormal's large ``k`` in
    two steps (10**332 is not a float64)."""
    if k < 0:
        return a / _POW10[-k]
    if k > 308:
        return (a * _POW10[k - 300]) * _POW10[300]
    return a * _POW10[k]


@jit()
def decimal_digits(block, digits, exps):
    """Nine significant digits and the decimal exponent of each number of ``block``.

    Parameters
    ----------
    block : ndarray, float32 or float64, shape (rows, dim)
    digits : ndarray of int64, shape (rows, dim)
        Receives ``d0d1...d8`` as an integer in [1e8, 1e9): the number is ``d0.d1...d8 * 10**exps``;
        0 for zeros and non-finite numbers; :data:`UNSETTLED` where the float64 rounding is too close
        to call.
    exps : ndarray of int64, shape (rows, dim)

    Returns
    -------
    int
        How many numbers are :data:`UNSETTLED`.
    """
    unsettled = 0
    for r in range(block.shape[0]):
        for j in range(block.shape[1]):
            a = abs(np.float64(block[r, j]))
            if a == 0.0 or not math.isfinite(a):
                digits[r, j] = 0
                exps[r, j] = 0
                continue
            # 2**(e2 - 1) <= a < 2**e2 puts the decimal exponent at e or e + 1.
            e2 = math.frexp(a)[1]
            e = int(math.floor((e2 - 1) * _LOG10_2))
            t = _scaled(a, 8 - e)
            while t >= 1e9:
                e += 1
                t = _scaled(a, 8 - e)
            while t < 1e8:
                e -= 1
                t = _scaled(a, 8 - e)
            m = math.floor(t)
            frac = t - m
            if abs(frac - 0.5) < TIE:
                digits[r, j] = UNSETTLED
                exps[r, j] = 0
                unsettled += 1
                continue
            if frac > 0.5:
                m += 1.0
            if m >= 1e9:  # 999999999.7 is 1.00000000 of the next decade
                m = 1e8
                e += 1
            digits[r, j] = np.int64(m)
            exps[r, j] = e
    return unsettled


@jit(inline="always")
def _put8(out, p, w):
    """Store the eight bytes of ``w``, lowest first, at ``out[p:p + 8]`` (one word-sized store once
    compiled)."""
    for i in range(8):
        out[p + i] = (w >> (8 * i)) & 255


@jit()
def write_lines(keys, block, digits, exps, out):
    """Lay out ``key v1 ... vdim\\n`` per row in ``out``; return the number of bytes written.

    Parameters
    ----------
    keys : ndarray of uint8
        The rows' keys, UTF-8, each followed by ``\\n`` (keys hold no whitespace).
    block : ndarray, float32 or float64, shape (rows, dim)
    digits, exps : ndarray of int64, shape (rows, dim)
        From :func:`decimal_digits`, every number settled.
    out : ndarray of uint8
        At least :func:`buffer_size` bytes: a number's digits are stored eight at a time and the
        cursor moved past the significant ones (the rest are overwritten or past the end).
    """
    p = 0
    k = 0
    for r in range(block.shape[0]):
        while keys[k] != 10:
            out[p] = keys[k]
            p += 1
            k += 1
        k += 1
        for j in range(block.shape[1]):
            out[p] = 32
            p += 1
            v = np.float64(block[r, j])
            out[p] = 45
            p += math.copysign(1.0, v) < 0.0  # a minus sign, -0 included (branch-free: signs are random)
            if not math.isfinite(v) or v == 0.0:
                if v != v:  # nan: printf drops its sign
                    p -= math.copysign(1.0, v) < 0.0
                    out[p], out[p + 1], out[p + 2] = 110, 97, 110
                    p += 3
                elif v == 0.0:
                    out[p] = 48
                    p += 1
                else:
                    out[p], out[p + 1], out[p + 2] = 105, 110, 102
                    p += 3
                continue
            m = digits[r, j]
            e = exps[r, j]
            lead = m // 100000000
            rest = m - lead * 100000000
            hi = rest // 10000
            lo = rest - hi * 10000
            # The eight digits after the first as ASCII bytes, the first lowest.
            w = (_PAIRS[hi // 100] | (_PAIRS[hi % 100] << 16) | (_PAIRS[lo // 100] << 32)
                 | (_PAIRS[lo % 100] << 48))
            sig = 9 - _TRAILING_ZEROS[lo] if lo else 5 - _TRAILING_ZEROS[hi] if hi else 1
            if 0 <= e < 9:  # integer digits (zeros included), then the fraction if any is left
                out[p] = 48 + lead
                _put8(out, p + 1, w)
                p += e + 1
                if sig > e + 1:
                    out[p] = 46
                    _put8(out, p + 1, w >> (8 * e))
                    p += sig - e
            elif -4 <= e < 0:  # 0.000ddd
                out[p], out[p + 1], out[p + 2], out[p + 3], out[p + 4] = 48, 46, 48, 48, 48
                p += 1 - e
                out[p] = 48 + lead
                _put8(out, p + 1, w)
                p += sig
            else:
                out[p] = 48 + lead
                out[p + 1] = 46
                _put8(out, p + 2, w)
                p += sig + 1 if sig > 1 else 1
                out[p] = 101
                out[p + 1] = 45 if e < 0 else 43
                p += 2
                ae = abs(e)
                if ae >= 100:
                    out[p] = 48 + ae // 100
                    p += 1
                pair = _PAIRS[ae % 100]
                out[p] = pair & 255
                out[p + 1] = pair >> 8
                p += 2
        out[p] = 10
        p += 1
    return p


def buffer_size(key_bytes, rows, dim):
    """Bytes :func:`write_lines` needs for ``rows`` rows of ``dim`` numbers and their keys."""
    return key_bytes + rows * (1 + dim * MAX_NUMBER_BYTES) + 16


#: Digits a number may have for :func:`parse_lines` (more go to the caller): the mantissa then fits
#: in a float64 exactly.
MAX_PARSED_DIGITS = 15


@jit(inline="always")
def _is_line_space(c):
    """Whitespace ``bytes.rstrip()`` removes, newline aside: space, tab, CR, VT, FF."""
    return c == 32 or c == 9 or c == 13 or c == 11 or c == 12


@jit()
def parse_lines(data, pos, max_lines, out, key_bounds):
    """Parse lines ``key v1 ... vdim`` of ``data`` from ``pos`` while they are plain.

    A line is plain when its key (the bytes before the first space) is not empty, ``dim`` numbers
    follow, each after one space, and only line whitespace follows them before ``\\n``; a number is
    plain when it is ``[+-]digits[.digits][(e|E)[+-]digits]`` with at most
    :data:`MAX_PARSED_DIGITS` significant digits and a decimal exponent within +-22 of them, so that
    one float64 multiplication or division of exact operands gives the correctly rounded value
    (Clinger's fast path), which is what ``float()`` gives. Parsing stops before the first line that
    is not plain (the caller reads it its own way) or after ``max_lines`` lines.

    Parameters
    ----------
    data : ndarray of uint8
        Whole lines, the last ending with ``\\n``.
    pos : int
        Offset of the first line.
    max_lines : int
    out : ndarray, float32 or float64, shape (>= max_lines, dim)
        Receives the numbers of line ``i`` in ``out[i]``.
    key_bounds : ndarray of int64, shape (>= max_lines, 2)
        Receives the start and end offsets of each line's key.

    Returns
    -------
    (int, int)
        Lines parsed, and the offset after the last of them.
    """
    dim = out.shape[1]
    n = data.shape[0]
    lines = 0
    while lines < max_lines and pos < n:
        p = pos
        while p < n and data[p] != 32 and data[p] != 10:
            p += 1
        if p == pos or p >= n or data[p] != 32:
            break
        key_end = p
        ok = True
        for j in range(dim):
            if p >= n or data[p] != 32:
                ok = False
                break
            p += 1
            neg = False
            if p < n and (data[p] == 45 or data[p] == 43):
                neg = data[p] == 45
                p += 1
            mant = 0.0
            digits = 0  # significant digits kept
            any_digit = False
            scale = 0
            while p < n and 48 <= data[p] <= 57:
                any_digit = True
                if digits or data[p] != 48:
                    mant = mant * 10.0 + (int(data[p]) - 48)
                    digits += 1
                p += 1
            if p < n and data[p] == 46:
                p += 1
                while p < n and 48 <= data[p] <= 57:
                    any_digit = True
                    if digits or data[p] != 48:
                        mant = mant * 10.0 + (int(data[p]) - 48)
                        digits += 1
                    scale -= 1
                    p += 1
            if not any_digit or digits > MAX_PARSED_DIGITS:
                ok = False
                break
            if p < n and (data[p] == 101 or data[p] == 69):
                p += 1
                eneg = False
                if p < n and (data[p] == 45 or data[p] == 43):
                    eneg = data[p] == 45
                    p += 1
                if p >= n or not 48 <= data[p] <= 57:
                    ok = False
                    break
                ex = 0
                while p < n and 48 <= data[p] <= 57:
                    if ex < 100000:
                        ex = ex * 10 + (int(data[p]) - 48)
                    p += 1
                scale += -ex if eneg else ex
            if mant == 0.0:
                value = 0.0
            elif -22 <= scale <= 22:
                value = mant / _POW10[-scale] if scale < 0 else mant * _POW10[scale]
            else:
                ok = False
                break
            out[lines, j] = -value if neg else value
        if not ok:
            break
        while p < n and _is_line_space(data[p]):
            p += 1
        if p >= n or data[p] != 10:
            break
        key_bounds[lines, 0] = pos
        key_bounds[lines, 1] = key_end
        lines += 1
        pos = p + 1
    return lines, pos
