"""A DataTable whose columns fit its width, so nothing scrolls sideways; refitted on resize."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual import events
from textual.widgets import DataTable
from textual.widgets.data_table import CellKey, RowKey

PADDING = 2  # a DataTable cell's padding, left and right together
FIRST_MIN = 10
LAST_MIN = 5


@dataclass(frozen=True)
class Column:
    """A table column: its key, its heading and its width in cells."""

    key: str
    label: str
    width: int


def rest_of(width: int, columns: list[Column], minimum: int = 8) -> int:
    """What is left of `width` for one more column after `columns`, padding included."""
    return max(minimum, width - sum(c.width + PADDING for c in columns) - PADDING)


class FittedTable(DataTable):
    """Subclasses say which columns to show at a width; the table keeps them that way.

    Cells that do not fit end in an ellipsis (give them Text with overflow="ellipsis").
    A column shown again after a narrower layout is filled from `cell_value`."""

    def __init__(self, columns: list[Column] | None = None, **kwargs):
        super().__init__(**kwargs)
        self._columns_wanted = columns or []

    def fit(self, width: int) -> list[Column]:
        """The columns to show when `width` cells are free. By default the ones given: the last
        takes what the others leave, and when that is too little the first gives some up."""
        first, *middle, last = self._columns_wanted
        room = rest_of(width, [first, *middle], minimum=LAST_MIN)
        short = sum(c.width + PADDING for c in (first, *middle)) + room + PADDING - width
        first_width = max(first.width - max(short, 0), FIRST_MIN)
        return [
            Column(first.key, first.label, first_width),
            *middle,
            Column(last.key, last.label, room),
        ]

    def cell_value(self, row_key: str, column_key: str) -> object:
        return ""

    # Every column here is given its width and every row is one line high, so the DataTable's
    # measuring of cells (about 55 ms per 1,000 new rows) could change nothing: it is left out.
    # Only the measuring: the virtual size is still worked out from the widths and row count.

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        super()._update_dimensions(() if self._widths_fixed else new_rows)

    def _update_column_widths(self, updated_cells: set[CellKey]) -> None:
        super()._update_column_widths(set() if self._widths_fixed else updated_cells)

    @property
    def _widths_fixed(self) -> bool:
        return not any(column.auto_width for column in self.columns.values())

    @property
    def free_width(self) -> int:
        """The width for cells: the table's, less a vertical scrollbar whether shown or not
        (reserving it keeps the columns from jumping when rows come and go)."""
        return self.size.width - self.styles.scrollbar_size_vertical

    def on_mount(self) -> None:
        self.refit()

    def on_resize(self, event: events.Resize) -> None:
        self.refit()

    def refit(self) -> None:
        width = self.free_width
        if width <= 0:
            # Not laid out yet: fit the app's width (or any), so rows added before the first
            # layout are drawn as wide as they need in the first frame; the resize then refits.
            width = (self.app.size.width or 80) - self.styles.scrollbar_size_vertical
        wanted = self.fit(width)
        shown = list(self.ordered_columns)
        keep = 0  # the leading columns that stay: same key, same label
        while (
            keep < min(len(shown), len(wanted))
            and shown[keep].key.value == wanted[keep].key
            and shown[keep].label.plain == wanted[keep].label
        ):
            keep += 1
        resized = False
        for column, want in zip(shown[:keep], wanted[:keep], strict=True):
            if column.width != want.width:
                column.width = want.width
                resized = True
        for column in shown[keep:]:
            self.remove_column(column.key)
        for want in wanted[keep:]:
            self.add_column(want.label, key=want.key, width=want.width)
            for row_key in self.rows:
                self.update_cell(row_key, want.key, self.cell_value(row_key.value, want.key))
        if resized and keep == len(shown) == len(wanted) and self.row_count:
            # Widths changed in place: an update that measures makes the table recompute
            # its virtual width (and so whether it needs a horizontal scrollbar).
            row_key = self.coordinate_to_cell_key((0, 0)).row_key
            first = shown[0].key
            self.update_cell(row_key, first, self.get_cell(row_key, first), update_width=True)

    @property
    def shown_keys(self) -> set[str]:
        return {key.value for key in self.columns}
