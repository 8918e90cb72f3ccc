"""Words for numbers in titles and captions."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 restart"``, ``"3 restarts"``, ``"0 restarts"``: ``n`` and the noun in the number it takes
    (``plural`` where adding an ``s`` is wrong)."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
