"""Plain-text output for people: the tables of the ``modelzoo`` command and the demo."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["format_table"]


def format_table(header: Sequence[Any], rows: Sequence[Sequence[Any]], rule: bool = False) -> str:
    """Left-aligned columns, two spaces apart, trailing spaces removed.

    Args:
        header: the column titles.
        rows: the rows, each with one value per column (formatted with ``str``).
        rule: put a line of dashes under the header.

    Returns:
        the table, lines joined by newlines, without a final newline.

    Example::

        >>> print(format_table(("NAME", "SIZE"), [("a", "1 KB"), ("bb", "-")]))
        NAME  SIZE
        a     1 KB
        bb    -
    """
    table = [[str(v) for v in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in table]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
