"""Array parameters for PostgreSQL: one string parameter for a whole batch."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["postgres_array"]


def postgres_array(values: Iterable[int | str]) -> str:
    """A PostgreSQL array literal (``{1,2}``, ``{"a","b"}``), to pass as one string parameter.

    Cast in the SQL (``%s::text[]``). psycopg adapts a list element by
    element, which cost more than the rest of an idle batch's statements.
    """
    values = list(values)
    if all(type(value) is int for value in values):
        return "{" + ",".join(map(str, values)) + "}"
    quoted = ('"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values)
    return "{" + ",".join(quoted) + "}"
