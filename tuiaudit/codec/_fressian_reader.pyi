"""Types of the compiled Fressian reader (_fressian_reader.pyx): reader.decode's twin."""

from typing import Any

MAX_DEPTH: int
MAX_BUDGET: int
MAX_NESTED_READS: int

def accepts(max_bytes: object, max_elements: object, max_depth: object) -> bool: ...
def decode(
    data: bytes | bytearray | memoryview, *, max_bytes: int, max_elements: int, max_depth: int
) -> Any: ...
