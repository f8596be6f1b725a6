"""How file names are written in text: one reversible form, and cells a spreadsheet will not run.

A POSIX file name is bytes. Python hands it over as a str in which each byte that is not valid
UTF-8 became a lone surrogate (PEP 383, "surrogateescape"); such a str cannot be written as UTF-8,
and a name may also hold newlines, tabs or a backslash that break a CSV row, a log line or a record
read by eye. Every text the project writes (predictions.csv / .jsonl, report.html, submission.csv,
cache manifests and records, failures.jsonl, class names, one-line errors) carries a name through
`printable_name`:

- every valid UTF-8 character stays as it is (`é`, `日本`, spaces, quotes, `<`, `=`);
- a backslash becomes `\\\\`; tab, newline and carriage return become `\\t`, `\\n`, `\\r`;
- any other control character (U+0000-U+001F, U+007F) and each byte that is not valid UTF-8
  become `\\xHH`; C1 controls (U+0080-U+009F) and the line / paragraph separators U+2028, U+2029
  become `\\uHHHH`.

Because a backslash is always escaped, the form is unambiguous: `name_bytes(printable_name(n))` is
`os.fsencode(n)` for every name, and `original_name` gives back the str the os module takes.

`spreadsheet_safe` is the OWASP rule for CSV cells: a text cell starting with `=`, `+`, `-`, `@`,
tab or carriage return gets a leading `'`, so a spreadsheet shows it instead of evaluating it. A
cell that already starts with `'` gets one too, so the rule is reversible: a CSV cell that starts
with `'` is the text after it.
"""

from __future__ import annotations

import os
import re

_NEEDS_ESCAPE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff]")
_SHORT = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|(.))", re.DOTALL)
_UNSHORT = {"\\": b"\\", "t": b"\t", "n": b"\n", "r": b"\r"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")  # and "'": so that one "'" is always removable


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    if c in _SHORT:
        return _SHORT[c]
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not valid UTF-8
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def printable_name(name: str | bytes | os.PathLike) -> str:
    """The text form of a file name or path (see the module docstring); valid UTF-8 text unchanged."""
    raw = os.fsencode(name)
    text = raw.decode("utf-8", "surrogateescape")
    return _NEEDS_ESCAPE.sub(_escape, text) if _NEEDS_ESCAPE.search(text) else text


def name_bytes(printable: str) -> bytes:
    """The exact bytes of the name whose text form is `printable` (the inverse of `printable_name`)."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(printable):
        out += printable[pos:m.start()].encode("utf-8")
        byte, code, short = m.groups()
        if byte is not None:
            out.append(int(byte, 16))
        elif code is not None:
            out += chr(int(code, 16)).encode("utf-8")
        elif short in _UNSHORT:
            out += _UNSHORT[short]
        else:
            raise ValueError(f"not a printable name: unknown escape \\{short} in {printable!r}")
        pos = m.end()
    out += printable[pos:].encode("utf-8")
    return bytes(out)


def original_name(printable: str) -> str:
    """The name as the os module takes it (str, undecodable bytes as surrogates)."""
    return os.fsdecode(name_bytes(printable))


def printable_text(text: str, name: str | None = None) -> str:
    """A one-line message safe to write as UTF-8: `name` (a path inside it) in its printable form,
    and any other control character or undecodable byte escaped the same way."""
    if name is not None and name in text:
        shown = printable_name(name)
        text = text.replace(name, shown) if shown != name else text
    return _NEEDS_ESCAPE.sub(lambda m: "\\" if m.group() == "\\" else _escape(m), text)


def spreadsheet_safe(cell: str) -> str:
    """A CSV text cell that a spreadsheet shows as text, never evaluates (OWASP CSV injection)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell
