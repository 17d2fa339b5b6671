"""The building blocks of a report page, shared by what fills it (decision, what-if, plots, efficiency) and by
what renders it (report): a Table of numbers and a Section of plots, tables and text.

A Table is already formatted (strings): whoever builds it decides how a number reads. Cells ending with the
table's ``mark`` are flagged (the decision table marks its projections so); the renderer styles them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .plots import Plot


@dataclass
class Table:
    header: list[str]
    body: list[list[str]]
    caption: str = ""   # shown below it
    title: str = ""     # shown above it
    warn: str = ""      # a caution shown above it (a lab figure, not hardware)
    mark: str = ""      # cells ending with this are flagged: see the caption for what it means
    kind: str = ""      # what the table is, for the page's markup (class="numbers decision" ...)


@dataclass
class Section:
    id: str
    title: str
    plots: list[Plot] = field(default_factory=list)
    absent: str = ""  # why there is nothing, when there is nothing
    tables: list[Table] = field(default_factory=list)
    intro: list[str] = field(default_factory=list)  # paragraphs before the plots and tables: how to read them
    outro: list[str] = field(default_factory=list)  # paragraphs after them: the model in full, notes
