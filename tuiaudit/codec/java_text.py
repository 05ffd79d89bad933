"""Text as Java's Fressian writer produces it: UTF-8 where a character outside
the BMP may arrive as two 3-byte surrogate sequences (CESU-8 style).

Shared by the pure-Python reader and the compiled one (DESIGN §5.3), so both
accept and refuse exactly the same bytes.
"""

from __future__ import annotations

from tuiaudit.codec.types import DecodeError


def java_utf8(b: bytes) -> str:
    """Java's Fressian UTF-8: surrogate pairs arrive as two 3-byte sequences."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        s = b.decode("utf-8", "surrogatepass")
        return s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    except UnicodeError:
        raise DecodeError("invalid UTF-8 in a string") from None
