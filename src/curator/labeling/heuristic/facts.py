"""Facts about a file: what every rule looks at, computed once per file (`compute_facts`).

The path's parts; the code with strings blanked to "" and comments removed by a small regex lexer per language
family (so braces, quotes and keywords inside strings and comments do not count); comment text and lines;
string and number characters; for Python the `ast` tree or the syntax error.
"""

from __future__ import annotations

import ast
import bisect
import re
import warnings
from dataclasses import dataclass, field


class Rx:
    """A regex compiled for speed on long files.

    A leading `\\b` or a multiline `^` stops `re` from skipping ahead to a possible first character (up to 40x
    slower on 10 KB files). So `\\b` is removed from the start of each alternative and checked on every match
    instead, and a leading `^` becomes a newline, searched in the text with a newline put in front.
    """

    def __init__(self, pattern: str, flags: int = re.M, needles: tuple[str, ...] | None = None):
        self.pattern = pattern
        self.needles = needles
        fast = re.sub(r"(^|(?<!\\)\||\(\?:)\\b", r"\1", pattern)
        self.newline = bool(flags & re.M)
        if self.newline:
            fast = re.sub(r"(^|(?<!\\)\||\(\?:)\^", "\\1\\n", fast)
        self.re = re.compile(fast, flags)
        self.plain = re.compile(pattern, flags)  # for match() at the start of a string

    def finditer(self, text: str):
        if self.needles and not any(n in text for n in self.needles):
            return
        if self.newline:
            text = "\n" + text
        for m in self.re.finditer(text):
            s = m.start()
            if (
                s
                and (m.group(0)[:1].isalnum() or m.group(0)[:1] == "_")
                and (text[s - 1].isalnum() or text[s - 1] == "_")
            ):
                continue
            yield m

    def search(self, text: str):
        return next(self.finditer(text), None)

    def count(self, text: str) -> int:
        return sum(1 for _ in self.finditer(text))

    def match(self, text: str):
        return self.plain.match(text)

    def line_numbers(self, text: str) -> list[int]:
        """0-based line numbers of the first non-space character of each match."""
        newlines = [m.start() for m in _NEWLINE.finditer(text)]
        shift = 1 if self.newline else 0
        found = []
        for m in self.finditer(text):
            g = m.group(0)
            start = m.start() + len(g) - len(g.lstrip()) - shift
            found.append(bisect.bisect_right(newlines, start - 1))
        return found


_NEWLINE = re.compile("\n")


C_LIKE = {"javascript", "typescript", "java", "go", "rust"}

# One alternation per language family; comments first where they can contain quotes. The lexer only needs
# to be good enough that a quote or a brace inside a string or comment does not count as code. Escapes are
# `\\[\s\S]`, not `\\.`, so that a backslash before a newline (a line continuation) stays inside the string.
_LEXERS = {
    "python": re.compile(
        r"(?P<comment>#[^\n]*)"
        r"|(?P<string>[rRbBuUfF]{0,2}(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\[\s\S]|[^'\\\n])*'|\"(?:\\[\s\S]|[^\"\\\n])*\"))"
    ),
    "c_like": re.compile(
        r"(?P<comment>//[^\n]*|/\*[\s\S]*?\*/)"
        r"|(?P<string>\"\"\"[\s\S]*?\"\"\"|r#+\"[\s\S]*?\"#+|\"(?:\\[\s\S]|[^\"\\\n])*\"|`(?:\\[\s\S]|[^`\\])*`"
        r"|'(?:\\[\s\S]|[^'\\\n])*')"
    ),
    # Rust: 'a is a lifetime, so a single-quoted literal is one character or one escape.
    "rust": re.compile(
        r"(?P<comment>//[^\n]*|/\*[\s\S]*?\*/)"
        r"|(?P<string>b?r(#*)\"[\s\S]*?\"\3|b?\"(?:\\[\s\S]|[^\"\\])*\"|b?'(?:\\[\s\S][^']{0,7}|[^'\\\n])')"
    ),
    # Shell: '#' starts a comment only at a word start ($#, ${#x} and a#b are not comments); an escaped quote
    # outside a string (echo \"x\") is kept as code.
    "shell": re.compile(
        r"(?P<keep>\\[\s\S])|(?P<comment>(?<![\w$#{}\\/:])#[^\n]*)"
        r"|(?P<string>'[^']*'|\"(?:\\[\s\S]|[^\"\\])*\")"
    ),
}
# JavaScript and TypeScript add regex literals (/[{(]/g), recognised after a character that cannot end an
# operand, so that a division is not taken for one.
_LEXERS["javascript"] = _LEXERS["typescript"] = re.compile(
    r"(?P<comment>//[^\n]*|/\*[\s\S]*?\*/)"
    r"|(?P<string>\"(?:\\[\s\S]|[^\"\\\n])*\"|`(?:\\[\s\S]|[^`\\])*`|'(?:\\[\s\S]|[^'\\\n])*'"
    r"|(?<=[(,=:\[!&|?{};])[ \t]*/(?![/*])(?:\\.|\[(?:\\.|[^\]\\\n])*\]|[^/\\\n\[])+/[dgimsuyv]*)"
)
_LEXERS["sql"] = re.compile(
    r"(?P<comment>--[^\n]*|/\*[\s\S]*?\*/)|(?P<string>'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")"
)
_HEREDOC = re.compile(r"<<-?\s*\\?['\"]?(\w+)['\"]?[^\n]*\n[\s\S]*?\n\s*\1\s*(?=\n|$)")
NUMBER = re.compile(r"(?<![\w.])(?:0[xX][0-9a-fA-F_]+|\d[\d_]*(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w])")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEYWORDS = frozenset(
    "if else elif for while do return break continue def class import from as in is not and or pass try except "
    "finally raise with yield lambda global nonlocal assert del True False None self cls async await print "
    "function var let const new this typeof instanceof void delete switch case default throw catch extends "
    "implements interface enum export static public private protected final abstract package super null true "
    "false undefined func go defer chan map struct type range select fallthrough nil fn let mut impl pub use mod "
    "crate trait where match loop move ref Self dyn unsafe extern then fi esac done echo local readonly int "
    "string bool float double long char byte void boolean err ok".split()
)


@dataclass
class Facts:
    content: str
    path: str
    language: str
    lpath: str
    name: str  # lowercased file name, for matching
    basename: str  # the file name as written, for reasons
    parts: list[str]
    lines: list[str]
    code: str  # the content with strings blanked to "" and comments removed; newlines kept
    code_lines: list[str]  # non-blank lines of `code`
    uncommented: str  # the content without comments, strings kept
    comment_lines: int
    comments: list[str]
    string_chars: int
    n_strings: int
    tree: ast.Module | None = None
    syntax_error: str | None = None
    n_defs: int = 0  # functions and methods (Python: from ast; else from a regex)
    py_defs: list = field(default_factory=list)  # Python: function and class nodes
    doc_ratio: tuple[int, int] | None = None  # cache of _doc_ratio


_DEF_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _py_definitions(tree: ast.Module) -> list:
    """Function and class nodes, found through statement bodies only: ast.walk into every expression costs
    more than the parse itself."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, _DEF_NODES):
            found.append(node)
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, name, None)
            if isinstance(children, list):
                todo.extend(c for c in children if isinstance(c, ast.AST))
    found.sort(key=lambda n: n.lineno)
    return found


DEF_PATTERNS = {
    "javascript": Rx(r"\bfunction\b|=>|^\s*(?:async\s+)?\w+\s*\([^)]*\)\s*\{", re.M),
    "typescript": Rx(
        r"\bfunction\b|=>|^\s*(?:public |private |protected |async |static )*\w+\s*\([^)]*\)\s*(?::[^{]+)?\{",
        re.M,
    ),
    "java": Rx(
        r"^\s*(?:(?:public|private|protected|static|final|synchronized|abstract)\s+)+[\w<>\[\], ]+\s+\w+\s*\([^;]*$",
        re.M,
    ),
    "go": Rx(r"^func\b", re.M),
    "rust": Rx(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s", re.M),
    "shell": Rx(r"^\s*(?:function\s+[\w:-]+|[\w:-]+\s*\(\s*\))\s*\{?", re.M),
    "sql": Rx(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE)\b", re.I),
}


def compute_facts(content: str, path: str, language: str) -> Facts:
    language = language.lower()
    lpath = path.replace("\\", "/").lower()
    parts = [p for p in lpath.split("/") if p]
    name = parts[-1] if parts else ""
    comments: list[str] = []
    comment_spans: list[tuple[int, int]] = []
    stats = {"comment_lines": 0, "string_chars": 0, "n_strings": 0}

    def blank(m: re.Match) -> str:
        text = m.group(0)
        if m.lastgroup == "keep":
            return text
        nl = text.count("\n")
        if m.lastgroup == "comment":
            comments.append(text)
            comment_spans.append(m.span())
            stats["comment_lines"] += nl + 1
            return "\n" * nl
        stats["n_strings"] += 1
        if language == "python" and text.lstrip("rRbBuUfF")[:3] in ('"""', "'''"):
            return '""' + "\n" * nl  # docstrings are prose, not data literals
        stats["string_chars"] += len(text)
        return '""' + "\n" * nl

    source = content
    if language == "shell":
        # Heredoc bodies are text, not commands: keep their line count, drop their words.
        source = _HEREDOC.sub(lambda m: '""' + "\n" * m.group(0).count("\n"), source)
    code = _LEXERS.get(language, _LEXERS["c_like"]).sub(blank, source)
    code_lines = [ln for ln in code.split("\n") if ln.strip()]
    # The text without comments but with strings: where structured-data signals are counted, since struct
    # tags, SQL and media types live in strings while prose about JSON lives in comments.
    pieces, at = [], 0
    for start, end in comment_spans:
        pieces += [source[at:start], "\n" * source.count("\n", start, end)]
        at = end
    pieces.append(source[at:])
    facts = Facts(
        content=content,
        path=path,
        language=language,
        lpath=lpath,
        name=name,
        basename=path.replace("\\", "/").rsplit("/", 1)[-1],
        parts=parts,
        lines=content.split("\n"),
        code=code,
        code_lines=code_lines,
        uncommented="".join(pieces),
        comment_lines=stats["comment_lines"],
        comments=comments,
        string_chars=stats["string_chars"],
        n_strings=stats["n_strings"],
    )
    if language == "python":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escape sequences in old code are not our business
                facts.tree = ast.parse(content)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            line = getattr(e, "lineno", None)
            facts.syntax_error = f"{type(e).__name__} line {line}" if line else type(e).__name__
        if facts.tree is not None:
            facts.py_defs = _py_definitions(facts.tree)
            facts.n_defs = sum(not isinstance(n, ast.ClassDef) for n in facts.py_defs)
        else:
            facts.n_defs = len(re.findall(r"^\s*(?:async\s+)?def\s", content, re.M))
    elif language in DEF_PATTERNS:
        facts.n_defs = DEF_PATTERNS[language].count(code)
    return facts


def head_text(f: Facts, n_lines: int = 30) -> str:
    return "\n".join(f.lines[:n_lines])[:4000]


def count(pattern: re.Pattern, text: str) -> int:
    return sum(1 for _ in pattern.finditer(text))
