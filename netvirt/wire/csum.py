"""Ones'-complement sums (RFC 1071) of many pieces of one buffer, at C speed.

The Internet checksum is the ones'-complement sum of 16-bit words. Because
``2**16 == 1 (mod 0xFFFF)``, that sum is the buffer read as one big integer,
modulo 0xFFFF (0 standing for 0xFFFF): :func:`word_sum` is
``int.from_bytes(piece) % 0xFFFF``, no per-byte loop. Cutting a 64 KiB GSO
super-packet into ~45 segments needs one sum per segment; where numpy is
importable (an optional dependency, imported on first use), :func:`piece_sums`
reads the buffer once as a ``(pieces, words)`` array and sums its rows
(about 7 us for 64 KiB here against 130 us for 45 ``int.from_bytes``
calls); otherwise it falls back to ``int.from_bytes`` per piece. The two
give the same values (tested against each other and scapy).

Values are *unfolded* classes modulo 0xFFFF: add them up, then :func:`fold`.
"""

from __future__ import annotations

import sys
from typing import Any

Buffer = bytes | bytearray | memoryview

__all__ = ["checksum_field", "fold", "numpy_module", "piece_sums", "use_numpy", "word_sum"]

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
    size = len(data)
    full = size // step
    np = numpy_module() if full >= _NUMPY_MIN_PIECES and not step & 1 else None
    if np is None:
        return [word_sum(data[o : o + step]) for o in range(0, size, step)]
    words = np.frombuffer(data, dtype=np.uint16, count=full * step // 2)
    # native (little-endian) words: each row's sum is the byte-swapped class, i.e. the
    # big-endian one times 256 (mod 0xFFFF)
    rows = words.reshape(full, step // 2).sum(axis=1, dtype=np.uint64)
    rows %= 0xFFFF
    if _LITTLE:
        rows = rows * 256 % 0xFFFF
    out: list[int] = rows.tolist()
    if full * step < size:
        out.append(word_sum(data[full * step :]))
    return out
