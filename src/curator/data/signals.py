"""Cheap signals of a file's whole text, for junk rules that run before (and regardless of) any model.

The classifier sees only the head of a file (its first `max_length` tokens), so it cannot tell a 5 MB line of
minified JavaScript from a library, or an empty file from a decent one. StarCoder's and The Stack's
preprocessing removed such files with cheap statistics of the whole text; these are those statistics, computed
per file in the scoring workers and written as score columns, so that `filter.py` can drop junk by rule and
`--where` can name them.

Sources of the signals and the thresholds that use them (`curator.scoring.junk`):
- Codex (Chen et al. 2021) and The Stack / StarCoder's basic filter (bigcode-dataset `preprocessing/`):
  longest line > 1000 characters, mean line length > 100, alphanumeric share < 0.25.
- StarCoder2 / The Stack v2 (Lozhkov et al. 2024, "Basic filters"): more than 100,000 lines; auto-generated
  markers in the first 5 lines; alphabetic share < 0.25; encoded data, matched by three regular expressions
  (base64, hexadecimal byte sequences, `\\uXXXX` escapes), when one match is longer than 1024 characters or all
  matches cover more than half the file.
- SantaCoder's comment filter (comment-to-code ratio): here only the extreme, a file with no line of code.
- The seed (code-curator-v1's corpus): zlib compression ratio < 0.10 for extreme repetition (the rule here uses
  0.05: 0.10 rejects real test suites; experiments/junk_rules).

Size cap. Whole-file counts that cost one pass in C (size in bytes, line count, mean line length, whether the
file is blank) are exact on any file. Every other signal reads a window: the whole text when it holds at most
2 x WINDOW_CHARS characters, else its first and last WINDOW_CHARS characters (1 MiB each) taken as two
separate pieces. The cost of a file is therefore bounded whatever its size, but for the whole-file counts, which
grow by about 2.5 ms a MB (measured in experiments/junk_rules: 0.3 ms for a median sample file, 0.14 s on a 5 MB
single line, 0.26 s on a 100 MB file, 0.38 s on 2 M characters of random Unicode, the slowest kind of text). A
line that crosses the cut counts as its visible part, already far past any line-length threshold.

`file_signals(text)` returns a dict whose keys are exactly the names of SIGNAL_FIELDS, the columns of the score
files; `null_signals()` is the same dict for a row that has no text (its error says why).
"""

from __future__ import annotations

import re
import zlib

import pyarrow as pa

# Characters read from each end of a long file by the windowed signals (see the module docstring).
WINDOW_CHARS = 1 << 20
# Lines and characters at the head in which an auto-generated marker counts (StarCoder2: the first 5 lines;
# the character cap keeps a head of one huge line cheap).
MARKER_LINES = 5
MARKER_CHARS = 2000
# zlib level for the compression ratio: zlib's default, what a plain zlib.compress call (and so, presumably, the
# seed's check) uses; about 30 ms a MiB, the largest single cost of a full window.
ZLIB_LEVEL = 6

# One definition of the signal columns: name, type and why each one is there. The score files, the filter's
# expressions and the junk rules all read this list.
SIGNAL_FIELDS = [
    pa.field("size_bytes", pa.int64()),  # UTF-8 bytes of the whole file: size filters and reports
    pa.field(
        "num_lines", pa.int64()
    ),  # lines of the whole file: StarCoder2 drops > 100,000 (data, generated)
    pa.field("max_line_length", pa.int64()),  # longest line, characters: minified code, embedded data
    pa.field("mean_line_length", pa.float32()),  # characters per line: minified or generated code
    pa.field("alnum_share", pa.float32()),  # share of letters and digits: symbol soup, binary, ASCII art
    pa.field("alpha_share", pa.float32()),  # share of letters: numeric tables, hex dumps
    pa.field("non_ascii_share", pa.float32()),  # share of non-ASCII characters: not source code, mojibake
    pa.field("encoded_share", pa.float32()),  # share of bytes in base64 / hex / \u runs: inline data
    pa.field("encoded_longest", pa.int64()),  # longest such run, bytes: one embedded blob
    pa.field("comment_share", pa.float32()),  # share of non-blank lines that are comments: comment-only files
    pa.field("compression_ratio", pa.float32()),  # zlib bytes / raw bytes: extreme repetition
    pa.field("generated_marker", pa.bool_()),  # 'auto-generated', 'do not edit', '@generated' near the top
    pa.field("blank", pa.bool_()),  # empty or whitespace only
]
SIGNAL_COLUMNS = [f.name for f in SIGNAL_FIELDS]

# StarCoder2's encoded-data expressions: base64 (newlines included, so a wrapped blob is one run), hexadecimal
# byte sequences (0x12, \\x12 or bare pairs) and runs of \\uXXXX escapes. Run as written they cost more than
# everything else together, so each is found the same way faster (tests/test_signals.py checks that the spans
# are identical): base64 runs are runs of its characters, found with bytes.translate and bytes.find; the hex
# expression runs only inside runs of 16 or more characters that any hex match is made of; the \\u expression
# runs only when the text holds a '\\u'.
_BASE64 = re.compile(rb"[a-zA-Z0-9+/\n=]{64,}")
_HEX = re.compile(rb"(?:\b(?:0x|\\x)?[0-9a-fA-F]{2}(?:,|\b\s*)){8,}")
_UNICODE = re.compile(rb"(?:\\u[0-9a-fA-F]{4}){8,}")


def _class_table(chars: str) -> bytes:
    """A bytes.translate table that maps the given characters to b'a' and every other byte to b' '."""
    return bytes(ord("a") if chr(i) in chars else ord(" ") for i in range(256))


_DIGITS = "0123456789"
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BASE64_TABLE = _class_table(_LETTERS + _DIGITS + "+/\n=")
_HEX_TABLE = _class_table(_DIGITS + "abcdefABCDEF" + "x\\," + " \t\n\r\x0b\x0c")
_ALNUM_BYTES = (_LETTERS + _DIGITS).encode()
_ALPHA_BYTES = _LETTERS.encode()
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
# Markers that tools write at the top of the files they generate: StarCoder2's list, Go's
# "Code generated ... DO NOT EDIT." and the '@generated' tag (Meta's tools, Rust's and Java's annotation
# processors), and the 'do not edit' of most other generators.
_GENERATED = re.compile(
    r"auto[- ]?generated|automatically generated|generated automatically|this file (?:is|was) generated"
    r"|do not edit|@generated",
    re.IGNORECASE,
)
# A line that is a comment in the sample's languages: '#' (Python, Shell), '//' (C family, Go, Rust, JS),
# '--' (SQL), '/*' and the '*' continuation lines of block comments. A file with no other non-blank line is
# comment-only; a comment that does not start its line counts as code, which errs toward keeping. Both
# expressions start with a newline so that the regex engine can skip ahead to line starts.
_COMMENT_LINE = re.compile(rb"\n[ \t]*(?:#|//|--|/\*|\*)")
_NONBLANK_LINE = re.compile(rb"\n[ \t]*\S")


def null_signals() -> dict:
    """The signal columns of a row that has no text to measure (its `error` says why)."""
    return dict.fromkeys(SIGNAL_COLUMNS)


def _windows(text: str) -> list[str]:
    """The pieces of text the windowed signals read: the whole text, or its two ends."""
    if len(text) <= 2 * WINDOW_CHARS:
        return [text]
    return [text[:WINDOW_CHARS], text[-WINDOW_CHARS:]]


def _utf8_len(text: str) -> int:
    if text.isascii():  # constant time in CPython: the string knows it is ASCII
        return len(text)
    # Encoded in slices so that a 100 MB file does not need a second 100 MB copy; a lone surrogate (which
    # corpus readers may leave) counts as the 3 bytes it would take.
    step = WINDOW_CHARS
    return sum(len(text[i : i + step].encode("utf-8", "surrogatepass")) for i in range(0, len(text), step))


def _runs(translated: bytes, min_len: int) -> list[tuple[int, int]]:
    """Maximal runs of b'a' of at least min_len in a translated text: what [class]{min_len,} matches."""
    spans, needle = [], b"a" * min_len
    i = translated.find(needle)
    while i >= 0:
        j = translated.find(b" ", i)
        j = len(translated) if j < 0 else j
        spans.append((i, j))
        i = translated.find(needle, j)
    return spans


def encoded_spans(raw: bytes) -> list[tuple[int, int]]:
    """Byte spans of the three encoded-data expressions in raw (UTF-8), as finditer would give them."""
    spans = _runs(raw.translate(_BASE64_TABLE), 64)
    for start, stop in _runs(raw.translate(_HEX_TABLE), 16):
        # One byte past the run: never part of a match, but \b at the run's end must see it.
        spans += [m.span() for m in _HEX.finditer(raw, start, stop + 1)]
    if b"\\u" in raw:
        spans += [m.span() for m in _UNICODE.finditer(raw)]
    return spans


def _encoded(pieces: list[bytes]) -> tuple[int, int]:
    """Bytes covered by encoded-data runs (overlaps counted once) and the longest run."""
    covered = longest = 0
    for piece in pieces:
        end = 0
        for start, stop in sorted(encoded_spans(piece)):
            longest = max(longest, stop - start)
            covered += max(0, stop - max(start, end))
            end = max(end, stop)
    return covered, longest


def _letters_and_digits(text: str, raw: bytes) -> tuple[int, int]:
    """Letters and digits (str.isalnum), and letters (str.isalpha), of a text and its UTF-8 bytes. The ASCII ones
    are counted by bytes.translate (a non-ASCII character's bytes are all >= 0x80, so never deleted), the
    non-ASCII ones one by one: they are few in code, and at most a window's worth in anything."""
    alnum = len(raw) - len(raw.translate(None, _ALNUM_BYTES))
    alpha = len(raw) - len(raw.translate(None, _ALPHA_BYTES))
    if not text.isascii():
        other = "".join(_NON_ASCII.findall(text))
        alnum += sum(map(str.isalnum, other))
        alpha += sum(map(str.isalpha, other))
    return alnum, alpha


def file_signals(text: str) -> dict:
    """The signals of one file's text; keys are exactly SIGNAL_COLUMNS. Pure, and bounded in time on any size."""
    if not isinstance(text, str):
        raise TypeError(f"file_signals takes the text of a file, not {type(text).__name__}")
    if "\n" not in text and "\r" in text:
        # Old Mac line endings: without this the whole file would be one long line.
        text = text.replace("\r", "\n")
    n_chars = len(text)
    newlines = text.count("\n")
    # A last line without a newline still counts; an empty file has no lines.
    num_lines = newlines + (1 if text and not text.endswith("\n") else 0)

    pieces = _windows(text)
    # A lone surrogate (which corpus readers may leave) is encoded as the 3 bytes it would take.
    raws = [p.encode("utf-8", "surrogatepass") for p in pieces]
    window_chars = sum(len(p) for p in pieces)
    window_bytes = sum(len(r) for r in raws)
    counts = [_letters_and_digits(p, r) for p, r in zip(pieces, raws, strict=True)]
    alnum, alpha = sum(c[0] for c in counts), sum(c[1] for c in counts)
    # Encoding to ASCII with errors ignored drops exactly the non-ASCII characters.
    non_ascii = sum(0 if p.isascii() else len(p) - len(p.encode("ascii", "ignore")) for p in pieces)
    encoded, encoded_longest = _encoded(raws)
    comment_lines = sum(len(_COMMENT_LINE.findall(b"\n" + r)) for r in raws)
    nonblank_lines = sum(len(_NONBLANK_LINE.findall(b"\n" + r)) for r in raws)
    head = "\n".join(text[:MARKER_CHARS].split("\n", MARKER_LINES)[:MARKER_LINES])

    def share(part: int, whole: int) -> float:
        return part / whole if whole else 0.0

    return {
        "size_bytes": window_bytes if len(pieces) == 1 else _utf8_len(text),
        "num_lines": num_lines,
        "max_line_length": max(len(line) for p in pieces for line in p.split("\n")),
        # Characters per line, newlines not counted (StarCoder's mean over splitlines()).
        "mean_line_length": share(n_chars - newlines, num_lines),
        "alnum_share": share(alnum, window_chars),
        "alpha_share": share(alpha, window_chars),
        "non_ascii_share": share(non_ascii, window_chars),
        # Over bytes: the encoded runs are ASCII, so for ASCII text this is the share of characters.
        "encoded_share": share(encoded, window_bytes),
        "encoded_longest": encoded_longest,
        "comment_share": share(comment_lines, nonblank_lines),
        # An empty file has nothing repeated: 1.0 rather than the ratio of zlib's fixed overhead to nothing.
        "compression_ratio": share(len(zlib.compress(b"".join(raws), ZLIB_LEVEL)), window_bytes)
        if text
        else 1.0,
        "generated_marker": bool(_GENERATED.search(head)),
        "blank": not text or text.isspace(),
    }
