"""CSV writers that neutralise spreadsheet formulas: every CSV the product writes uses these.

User content (user ids, purposes, tags, sources, devices) can start with `=`, `+`, `-`, `@`,
a tab or a carriage return, which spreadsheet programs run as a formula ("CSV injection").
As OWASP advises, such a text cell gets a leading single quote, so it is shown as text.
Numbers are left alone: -3 stays a number.
"""

import csv
from collections.abc import Iterable, Mapping
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """`value`, with a leading ' if it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class _SafeWriter:
    """Wraps a csv writer: each row's cells go through cell() first."""

    def __init__(self, writer: Any):
        self._writer = writer
        self.dialect = writer.dialect

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(out: Any, *args: Any, **kwargs: Any) -> _SafeWriter:
    """csv.writer(out, ...) whose rows are neutralised."""
    return _SafeWriter(csv.writer(out, *args, **kwargs))


class DictWriter(csv.DictWriter):
    """csv.DictWriter whose rows are neutralised (the header is ours, not user content)."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({name: cell(value) for name, value in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for rowdict in rowdicts:
            self.writerow(rowdict)
