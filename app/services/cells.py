"""Text for spreadsheet cells: never read as a formula, and intact as typed.

A spreadsheet reads a cell that starts with `=`, `+`, `-` or `@` as a formula (and tab or CR
before them, which it skips), so user text such as `=HYPERLINK("http://…","点我")` in a ledger
would become a live link or a call once the file is opened (OWASP, "CSV Injection"):

- CSV has no cell types, so such text gets a leading `'`, which spreadsheets take as "this is
  text" (OWASP's advice). Only text: a number is written as a number, never prefixed.
- XLSX has: every text is written as a string cell (never a formula cell, whatever it starts
  with), so it needs no prefix and stays exactly as typed. Characters that XML cannot carry (or
  would turn into another, as it turns CR into LF) are written as OOXML escapes `_xHHHH_`, which
  Excel, LibreOffice and calamine decode; a `_` that would otherwise start such an escape is
  escaped itself (`_x005F_`).
"""

import re

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

# XML 1.0 carries none of C0 but tab and LF (CR it reads back as LF), nor U+FFFE and U+FFFF.
_OOXML_ESCAPED = re.compile(r"_(?=x[0-9A-Fa-f]{4}_)|[\x00-\x08\x0b-\x1f\ufffe\uffff]")


def csv_text(text: str) -> str:
    """Text for a CSV cell: prefixed with `'` when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def xlsx_text(text: str) -> str:
    """Text for an XLSX string cell, with the OOXML escapes it needs to read back as is."""
    return _OOXML_ESCAPED.sub(lambda match: f"_x{ord(match.group()):04X}_", text)
