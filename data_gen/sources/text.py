"""Text rules, the same for distillation and evaluation: which encoding a file is read in (byte order marks, UTF-8
or Latin-1), and which values cannot go into a prompt or a training file (undecodable bytes, lone surrogates,
control characters)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_gen.errors import InputError

SCAN_BYTES = 1 << 20  # bytes per chunk when checking an encoding
# byte order marks, longest first (the UTF-32 LE mark begins with the UTF-16 LE one)
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
CONTROL_POLICIES = ("reject", "keep")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0 (but tab, LF, CR), DEL, C1


def sniff_bom(path: Path) -> str | None:
    """The encoding a byte order mark at the start of ``path`` names, or None."""
    with path.open("rb") as handle:
        head = handle.read(4)
    return next((name for bom, name in BOMS if head.startswith(bom)), None)


def check_encoding(path: Path, encoding: str) -> tuple[str, str | None]:
    """Which encoding to read ``path`` with, and a note for the manifest when that is worth saying.

    ``auto``: the encoding a byte order mark names (UTF-8, UTF-16, UTF-32); else UTF-8 when the whole file decodes;
    else, looking line by line, UTF-8 when the lines that decode and are not plain ASCII outnumber those that do
    not (a UTF-8 file with a few broken lines: those rows are rejected), and Latin-1 otherwise. A named encoding
    is used as it is (bytes it cannot decode reject their rows)."""
    named = encoding != "auto"
    try:
        codecs.lookup(encoding if named else "utf-8")
    except LookupError:
        raise InputError(f"unknown --encoding {encoding!r}") from None
    if named:
        return encoding, None
    bom = sniff_bom(path)
    if bom is not None:
        return bom, None if bom == "utf-8-sig" else f"{path} starts with a {bom.upper()} byte order mark: read as {bom}"
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(SCAN_BYTES):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
        return "utf-8-sig", None
    except UnicodeDecodeError:
        pass
    bad, utf8_text, first_bad = 0, 0, 0
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.isascii():
                continue
            try:
                line.decode("utf-8")
                utf8_text += 1
            except UnicodeDecodeError:
                bad += 1
                first_bad = first_bad or number
    if utf8_text > bad:
        return "utf-8", (
            f"{path}: {bad} line(s) are not valid UTF-8 (the first: line {first_bad}) in a UTF-8 file; the rows "
            "they hold are rejected as undecodable_text"
        )
    return "latin-1", f"{path} is not valid UTF-8 (first bad byte at line {first_bad}); decoded as Latin-1"


def unencodable(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate, which no UTF-8 file or SQLite database can store."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def text_problem(field: str, text: str, controls: str, row: int) -> tuple[str, str] | None:
    """Why a value cannot go into a prompt or a training file (reason, detail), or None."""
    if unencodable(text):
        at = next(i for i, ch in enumerate(text) if 0xD800 <= ord(ch) <= 0xDFFF)
        code = ord(text[at])
        if 0xDC80 <= code <= 0xDCFF:  # a byte the file's encoding could not decode (kept by surrogateescape)
            what = f"byte 0x{code - 0xDC00:02x} does not decode"
        else:
            what = f"a lone surrogate U+{code:04X} (half of a UTF-16 pair, e.g. an escaped \\u{code:04x} in JSON)"
        return "undecodable_text", f"row {row}: in the {field!r} field, {what} at character {at + 1}; not text"
    found = _CONTROL.search(text)
    if found and (controls != "keep" or found.group() == "\x00" or "\x00" in text):
        at = text.index("\x00") if "\x00" in text else found.start()
        char = text[at]
        rule = "never allowed" if char == "\x00" else "the task does not keep control characters"
        return "control_characters", f"row {row}: U+{ord(char):04X} at character {at + 1} of {field!r} ({rule})"
    return None


def whole_file_decoding(path: Path, encoding: str, rows: Iterator[Any]) -> Iterator[Any]:
    """``rows``, with a decoding failure of a whole-file codec (UTF-16, UTF-32) as one line naming the file."""
    try:
        yield from rows
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid {encoding} ({exc.reason} at byte {exc.start}); pass --encoding") from None


def decode_errors(encoding: str) -> str:
    """Undecodable bytes become lone surrogates (their rows are then rejected, one by one), where the codec can
    say which byte it was; UTF-16 and UTF-32 files that do not decode are an error of the whole file."""
    return "strict" if encoding.startswith(("utf-16", "utf-32")) else "surrogateescape"
