"""Ones'-complement sums (RFC 1071) of many pieces of one buffer, at C speed.

The Internet checksum is the ones'-complement sum of 16-bit words. Because
``2**16 == 1 (mod 0xFFFF)``, that sum is the buffer read as one big integer,
modulo 0xFFFF (0 standing for 0xFFFF): :func:`word_sum` is
``int.from_bytes(piece) % 0xFFFF``, no per-byte loop. Cutting a 64 KiB GSO
super-packet into ~45 segments needs one sum per segment; where numpy is
importable (an optional dependency, imported on first use), :func:`piece_sums`
reads the buffer once as a ``(pieces, words)`` array and sums its rows
(about 7 us for 64 KiB here against 130 us for 45 ``int.from_bytes``
calls), 32-bit words where the pieces allow (``2**16 == 1`` mod 0xFFFF makes a
32-bit word the class of its two halves' sum), and :func:`total_sum` does the
same for a whole buffer; otherwise they fall back to ``int.from_bytes``. The
two ways give the same values (tested against each other and scapy).

Values are *unfolded* classes modulo 0xFFFF: add them up, then :func:`fold`.
"""

from __future__ import annotations

import sys
from typing import Any

Buffer = bytes | bytearray | memoryview

__all__ = ["checksum_field", "fold", "numpy_module", "piece_sums", "piece_sums_array", "total_sum",
           "use_numpy", "word_sum"]

_numpy: list[Any] = []  # [module or None] once looked for


def numpy_module() -> Any:
    """numpy if it can be imported, else None (imported on first use, never at start-up:
    validation imports the programs, and ``validate`` must stay fast)."""
    if not _numpy:
        try:
            import numpy
        except ImportError:  # pragma: no cover - depends on the machine
            _numpy.append(None)
        else:
            _numpy.append(numpy)
    return _numpy[0]


def use_numpy(enabled: bool) -> None:
    """Use numpy where it helps (the default if importable) or never (tests, comparisons)."""
    _numpy.clear()
    if not enabled:
        _numpy.append(None)


_LITTLE = sys.byteorder == "little"
#: Pieces below this many are summed with int.from_bytes (numpy's set-up costs more).
_NUMPY_MIN_PIECES = 4


def word_sum(data: Buffer) -> int:
    """Sum of the big-endian 16-bit words of ``data`` (an odd last byte padded), mod 0xFFFF."""
    if len(data) & 1:
        return (int.from_bytes(data, "big") << 8) % 0xFFFF
    return int.from_bytes(data, "big") % 0xFFFF


def fold(total: int) -> int:
    """A sum (any size) folded to the 16-bit ones'-complement sum; 0 only for a zero sum."""
    if not total:
        return 0
    folded = total % 0xFFFF
    return folded or 0xFFFF


def checksum_field(total: int) -> int:
    """The value of a checksum field whose covered words (field at 0) sum to ``total``."""
    return 0xFFFF - fold(total) if total else 0xFFFF


def piece_sums(data: Buffer, step: int) -> list[int]:
    """:func:`word_sum` of each ``step``-byte piece of ``data`` (the last may be shorter)."""
    sums = piece_sums_array(data, step)
    if sums is None:
        return [word_sum(data[o : o + step]) for o in range(0, len(data), step)]
    out: list[int] = sums.tolist()
    return out


def piece_sums_array(data: Buffer, step: int) -> Any:
    """:func:`piece_sums` as a numpy ``int64`` array, or None where numpy does not pay
    (fewer than 4 whole pieces, an odd ``step``) or is missing."""
    full = len(data) // step if step > 0 else 0
    np = numpy_module() if full >= _NUMPY_MIN_PIECES and not step & 1 else None
    if np is None:
        return None
    rows = _row_sums(np, data, step, full)
    if full * step == len(data):
        return rows
    out = np.empty(full + 1, np.int64)
    out[:full] = rows
    out[full] = word_sum(data[full * step :])
    return out


def total_sum(data: Buffer) -> int:
    """:func:`word_sum` of all of ``data``: the sum of :func:`piece_sums` for any even step."""
    size = len(data)
    np = numpy_module() if size >= 512 else None
    if np is None:
        return word_sum(data)
    whole = size & ~3
    total = int(np.frombuffer(data, np.uint32, count=whole // 4).sum(dtype=np.uint64)) % 0xFFFF
    if _LITTLE:
        total = total * 256 % 0xFFFF
    return (total + word_sum(data[whole:])) % 0xFFFF if whole < size else total


def _row_sums(np: Any, data: Buffer, step: int, rows: int) -> Any:
    """Each of the first ``rows`` ``step``-byte rows' word sum, mod 0xFFFF (``int64``)."""
    # two words per uint32 where the rows allow it: 2**16 == 1 (mod 0xFFFF), so a 32-bit
    # value is in the class of its two words' sum, and half as many elements are summed
    width = 4 if not step & 3 else 2
    words = np.frombuffer(data, dtype=np.uint32 if width == 4 else np.uint16,
                          count=rows * step // width)
    sums = words.reshape(rows, step // width).sum(axis=1, dtype=np.int64)  # < 2**47
    if _LITTLE:
        # native (little-endian) words: each row's sum is the byte-swapped class, i.e. the
        # big-endian one times 256 (mod 0xFFFF)
        sums *= 256
    sums %= 0xFFFF
    return sums
