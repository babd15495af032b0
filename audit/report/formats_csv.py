"""One table of a result as CSV (``audit mitigate`` writes its trade-off table beside the
report, for a spreadsheet)."""

from __future__ import annotations

import csv
import io

from audit.result import Table


def table_csv(table: Table) -> str:
    """The table's columns and rows as CSV text; an empty cell (``None``) stays empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(["" if c is None else c for c in row] for row in table.rows)
    return buf.getvalue()
