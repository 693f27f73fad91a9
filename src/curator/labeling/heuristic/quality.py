"""quality rules: each returns (delta, reason) or None; a rule may also cap the result (QUALITY_CAPS)."""

from __future__ import annotations

import ast
import re
from collections import Counter

from curator.labeling.heuristic.content_type import is_minified
from curator.labeling.heuristic.facts import C_LIKE, DEF_PATTERNS, IDENT, KEYWORDS, NUMBER, Facts, Rx
from curator.labeling.heuristic.rules import describe
from curator.labels import QUALITY

_PY2 = Rx(
    r"^\s*print\s+[\"'\w]|^\s*print\s*>>|except\s+[\w.]+\s*,\s*\w+\s*:|^\s*exec\s+[\"']|\bur[\"']", re.M
)
_BRACKETS = {"(": ")", "[": "]", "{": "}"}
_SHELL_BLOCK = re.compile(r"(?:^|[;&|(`\s])(if|fi|case|esac|do|done)(?=[\s;&|)`]|$)", re.M)


_NOT_BRACKET = re.compile(r"[^()\[\]{}\n]+")
_NOT_PAREN = re.compile(r"[^()\n]+")


def bracket_problem(f: Facts) -> str | None:
    """Unbalanced brackets in the code (strings and comments blanked), or a file cut off mid-construct."""
    if f.language == "shell":
        if f.name.endswith((".fish", ".zsh")):
            return None  # fish closes blocks with `end`; zsh has brace forms of if and for
        words = Counter(m.group(1) for m in _SHELL_BLOCK.finditer(f.code))
        pairs = [("if", "fi"), ("case", "esac"), ("do", "done")]
        bad = [f"{a}/{b} {words[a]}/{words[b]}" for a, b in pairs if words[a] != words[b]]
        return "unbalanced shell blocks (" + ", ".join(bad) + ")" if bad else None
    # Only brackets (and newlines, for line numbers) are walked in Python; the regex drops the rest in C.
    only = _NOT_PAREN if f.language == "sql" else _NOT_BRACKET
    stack: list[tuple[str, int]] = []
    line_no = 1
    for ch in only.sub("", f.code):
        if ch == "\n":
            line_no += 1
        elif ch in "({[":
            stack.append((ch, line_no))
        elif not stack or _BRACKETS[stack[-1][0]] != ch:
            return f"unmatched {ch!r} on line {line_no}"
        else:
            stack.pop()
    if stack:
        ch, at = stack[-1]
        return f"{len(stack)} unclosed bracket(s), last {ch!r} from line {at} (truncated?)"
    return None


@describe(
    "Python `ast.parse` fails (-1 when the failure is Python 2 syntax); unmatched or unclosed brackets in"
    " C-like or SQL code (-1 for JS/TS, whose lexer misses some regex literals); unbalanced if/fi, "
    "case/esac, do/done in shell (-1)",
    delta="-2",
)
def q_parse(f: Facts):
    if f.language == "python":
        if f.syntax_error is None:
            return None
        if _PY2.search(f.content):
            return -1, f"quality -1: Python 2 syntax ({f.syntax_error})"
        return -2, f"quality -2: parse error ({f.syntax_error})"
    if f.language in C_LIKE or f.language in ("sql", "shell"):
        problem = bracket_problem(f)
        if problem:
            # JS regex literals and JSX text fool the lexer more often than shell or Go code is broken.
            delta = -1 if f.language in ("javascript", "typescript", "shell") else -2
            return delta, f"quality {delta}: {problem}"
    return None


@describe("lines over 1000 characters with a mean over 300, or one line holding most of the file", delta="-4")
def q_minified(f: Facts):
    reason = is_minified(f)
    return (-4, f"quality -4: {reason}") if reason else None


@describe("5+ replacement or control characters", delta="-2")
def q_encoding(f: Facts):
    bad = f.content.count("\ufffd") + len(re.findall(r"[\x00-\x08\x0e-\x1f]", f.content[:20000]))
    if bad >= 5:
        return -2, f"quality -2: encoding debris ({bad} replacement/control characters)"
    return None


@describe("under 5 code lines / under 2 code lines and under 5 comment lines", delta="-1 / -2")
def q_tiny(f: Facts):
    n = len(f.code_lines)
    if n < 2 and f.comment_lines < 5:
        return -2, f"quality -2: no code ({n} code lines)"
    if n < 5:
        return -1, f"quality -1: tiny file ({n} code lines)"
    return None


# Definitions a reader looks for a doc comment on (not every callback or arrow function).
_DOC_DEFS = {
    "javascript": Rx(
        r"^\s*(?:export\s+)?(?:default\s+)?(?:async\s+)?function\b|^\s*(?:export\s+)?(?:const|let)\s+\w+\s*="
        r"\s*(?:async\s+)?(?:\([^)\n]*\)|\w+)\s*=>|^\s*(?:export\s+)?(?:default\s+)?class\b"
        r"|^\s+(?:static\s+|async\s+|get\s+|set\s+)*(?!if\b|for\b|while\b|switch\b|catch\b)\w+\s*\([^)\n]*\)\s*\{"
    ),
    "typescript": Rx(
        r"^\s*(?:export\s+)?(?:default\s+)?(?:declare\s+)?(?:async\s+)?(?:function|class|interface|type|enum)\b"
        r"|^\s*(?:export\s+)?(?:const|let)\s+\w+\s*(?::[^=\n]+)?=\s*(?:async\s+)?(?:\([^)\n]*\)|\w+)[^=\n]*=>"
        r"|^\s+(?:public\s+|private\s+|protected\s+|static\s+|async\s+|readonly\s+|get\s+|set\s+)*"
        r"(?!if\b|for\b|while\b|switch\b|catch\b)\w+\s*\([^)\n]*\)\s*(?::[^{\n]+)?\{"
    ),
    "java": DEF_PATTERNS["java"],
    "go": Rx(r"^(?:func|type)\s"),
    "rust": Rx(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:unsafe\s+)?(?:fn|struct|enum|trait|type)\s"),
    "shell": DEF_PATTERNS["shell"],
    "sql": Rx(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE|TABLE|VIEW|TRIGGER)\b", re.I | re.M),
}
_ANNOTATION_LINE = re.compile(r"^\s*(?:@|#\[)")


def _doc_ratio(f: Facts) -> tuple[int, int]:
    """(definitions with a docstring or a comment right above, definitions), computed once per file."""
    if f.doc_ratio is not None:
        return f.doc_ratio
    if f.tree is not None:
        defs = [
            d for d in f.py_defs if not d.name.startswith("__") or d.name == "__init__" and len(d.body) > 3
        ]
        f.doc_ratio = sum(ast.get_docstring(d) is not None for d in defs), len(defs)
        return f.doc_ratio
    pattern = _DOC_DEFS.get(f.language)
    if pattern is None:
        f.doc_ratio = 0, 0
        return f.doc_ratio
    code_lines = f.code.split("\n")
    def_lines = pattern.line_numbers(f.code)
    documented = 0
    for i in def_lines:
        j = i - 1
        while j >= 0 and (not f.lines[j].strip() and j == i - 1 or _ANNOTATION_LINE.match(code_lines[j])):
            j -= 1  # skip one blank line and any annotations or attributes between the comment and the def
        if j >= 0 and f.lines[j].strip() and not code_lines[j].strip():
            documented += 1  # the line above holds only a comment
    f.doc_ratio = documented, len(def_lines)
    return f.doc_ratio


@describe(
    "over 60 code lines, comments under 2% of them, no docstrings (not for tests, config, data)", delta="-1"
)
def q_no_comments(f: Facts):
    n = len(f.code_lines)
    documented, _ = _doc_ratio(f)
    if n > 60 and f.comment_lines < 0.02 * n and documented == 0:
        return -1, f"quality -1: no comments or docstrings in {n} code lines"
    return None


@describe(
    "3+ definitions, 60%+ with a docstring or a comment right above (50% with a module docstring)", delta="+1"
)
def q_documented(f: Facts):
    documented, defs = _doc_ratio(f)
    module_doc = f.tree is not None and ast.get_docstring(f.tree) is not None
    if defs >= 3 and (documented >= 0.6 * defs or module_doc and documented >= 0.5 * defs):
        return 1, f"quality +1: documented ({documented}/{defs} definitions have docstrings/doc comments)"
    return None


_ERROR_HANDLING = {
    "python": Rx(r"^\s*(?:try:|except\b|raise\s+\w)", re.M),
    "javascript": Rx(r"\btry\s*\{|\.catch\(|\bthrow new\b"),
    "java": Rx(r"\btry\s*\{|\bthrow new\b|\bthrows\b"),
    "go": Rx(r"\bif err != nil\b|\berrors\.New\(|fmt\.Errorf\("),
    "rust": Rx(r"\bResult<|\?;|\.map_err\(|\bOption<"),
    "shell": Rx(r"^\s*set -\w*e|\|\|\s*(?:exit|return|die)\b|\btrap\b", re.M),
    "sql": Rx(r"\bEXCEPTION\b|\bBEGIN\s+TRY\b|\bRAISE\b|\bON CONFLICT\b|\bIF (?:NOT )?EXISTS\b", re.I),
}
_ERROR_HANDLING["typescript"] = _ERROR_HANDLING["javascript"]


# One idiom per language that careful code tends to show (resource cleanup, wrapped errors, immutability).
_CAREFUL_IDIOMS = {
    "go": Rx(r"\bdefer\b|%w|\berrors\.(?:Is|As)\(|\bcontext\.Context\b"),
    "java": Rx(r"\btry\s*\(|\bOptional<|\bObjects\.requireNonNull\(|\bprivate final\b"),
    "javascript": Rx(r"\basync\b[^\n]*\bawait\b|\bawait\b|\bObject\.freeze\(|'use strict'|\"use strict\""),
    "typescript": Rx(r"\breadonly\b|\bawait\b"),
    "shell": Rx(r"set -[a-z]*u|\blocal\b|\"\$\{?\w+\}?\""),
    "sql": Rx(r"\bBEGIN\b|\bCOMMIT\b|\bTRANSACTION\b|\bCHECK\s*\(|\bNOT NULL\b", re.I),
}


@describe(
    "documented, and two of: error handling, type hints on 70% of functions, doctests, TypeScript without"
    " `any`, Rust unit tests, a careful idiom (defer/%w, try-with-resources/Optional, await, set "
    "-u/local, transactions/CHECK)",
    delta="+1",
)
def q_exemplary(f: Facts):
    if not q_documented(f) or len(f.code_lines) < 20:
        return None
    good = []
    eh = _ERROR_HANDLING.get(f.language)
    if eh and eh.search(f.code):
        good.append("error handling")
    if f.tree is not None:
        funcs = [n for n in f.py_defs if not isinstance(n, ast.ClassDef)]
        typed = sum(
            n.returns is not None or any(a.annotation is not None for a in n.args.args) for n in funcs
        )
        if funcs and typed >= 0.7 * len(funcs):
            good.append(f"type hints ({typed}/{len(funcs)})")
        if ">>> " in f.content:
            good.append("doctests")
    if f.language == "typescript" and not re.search(r":\s*any\b", f.code):
        good.append("typed without any")
    if f.language == "rust" and "#[cfg(test)]" in f.content:
        good.append("unit tests")
    idiom = _CAREFUL_IDIOMS.get(f.language)
    m = idiom.search(f.code) if idiom else None
    if m:
        good.append(f"careful idiom {' '.join(m.group(0).split())!r}")
    if len(good) >= 2:
        return 1, "quality +1: exemplary (documented, " + ", ".join(good) + ")"
    return None


def _identifiers(f: Facts) -> set[str]:
    return {w for w in IDENT.findall(f.code) if w not in KEYWORDS and not w.isupper() or len(w) == 1}


@describe("over 25% of distinct identifiers single letters, or a mean identifier length under 4", delta="-1")
def q_names(f: Facts):
    if f.language in ("shell", "sql"):
        return None  # option letters (-e, -n) and table aliases are not names a person chose
    names = _identifiers(f)
    if len(names) < 15:
        return None
    single = sum(1 for w in names if len(w.strip("_")) == 1)
    mean = sum(len(w) for w in names) / len(names)
    if single / len(names) > 0.25 or mean < 4:
        return -1, f"quality -1: short names ({single}/{len(names)} single-letter, mean length {mean:.1f})"
    return None


_TODO = re.compile(r"\b(?:TODO|FIXME|XXX|HACK)\b")


@describe("5+ TODO/FIXME/XXX/HACK, or 3+ at over 2% of code lines", delta="-1")
def q_todos(f: Facts):
    n = sum(len(_TODO.findall(c)) for c in f.comments)
    if n >= 5 or n >= 3 and n > 0.02 * len(f.code_lines):
        return -1, f"quality -1: {n} TODO/FIXME/XXX markers"
    return None


_CODE_IN_COMMENT = re.compile(
    r"^\s*(?:#|//|--)\s*(?:.*[;{}]\s*$|(?:def|class|import|from|return|if|for|while|print|var|let|const|func|fn|"
    r"echo|export|SELECT|INSERT|UPDATE)\b.*[(:=;{]|[\w.\[\]]+\s*=\s*[\w\"'\[(].*$|[\w.]+\([^)]*\)\s*;?\s*$)"
)


# In SQL a comment like "-- owner_is( schema, user )" documents a signature; only statements count.
_SQL_IN_COMMENT = re.compile(
    r"^\s*--\s*(?:(?:SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP)\s.*|.*;\s*)$", re.I
)


@describe(
    "5+ comment lines that look like code, 20%+ of comment lines (doc-comment samples excluded)", delta="-1"
)
def q_commented_code(f: Facts):
    n = 0
    for c in f.comments:
        for line in c.split("\n"):
            # Doc comments (///, //!, /** */) and indented samples in them show code on purpose.
            if line.lstrip().startswith(("#!", "# -*-", "///", "//!", "/**", "*")) or re.match(
                r"\s*//(?:\t| {3})", line
            ):
                continue
            if (_SQL_IN_COMMENT if f.language == "sql" else _CODE_IN_COMMENT).match(line):
                n += 1
    if n >= 5 and n >= 0.2 * f.comment_lines:
        return -1, f"quality -1: {n} lines of commented-out code"
    return None


_CONST_LINE = re.compile(
    r"^\s*(?:[A-Z][A-Z0-9_]*\s*[:=]|(?:(?:public|private|protected|static|final|export|pub)\s+)*(?:const|final|static final|#define|enum)\b|case\b)"
)
COMMON_NUMBERS = frozenset(
    {"0", "1", "2", "10", "100", "1000", "0.0", "1.0", "0.5", "3", "4", "8", "16", "255", "1024"}
)


@describe("15+ uncommon numeric literals outside constant definitions, over 0.15 per code line", delta="-1")
def q_magic_numbers(f: Facts):
    if f.language in ("sql", "shell"):
        return None
    text = "\n".join(line for line in f.code_lines if not _CONST_LINE.match(line))
    magic = sum(1 for m in NUMBER.findall(text) if m not in COMMON_NUMBERS)
    n = len(f.code_lines)
    if magic >= 15 and magic > 0.15 * n:
        return -1, f"quality -1: magic numbers ({magic} in {n} code lines)"
    return None


_FUNC_HEADER = re.compile(
    r"\b(?:function|func|fn)\b|=>\s*\{|\)\s*(?:throws [\w., ]+)?\s*(?:->\s*[^{]+|:\s*[^{]+)?\{\s*$"
)
_NOT_FUNC = re.compile(
    r"^\s*(?:\}\s*)?(?:if|else|for|while|switch|catch|try|do|class|struct|impl|interface|enum|match|loop|unsafe|return|select)\b"
)


def longest_function(f: Facts) -> int:
    if f.tree is not None:
        funcs = [n for n in f.py_defs if not isinstance(n, ast.ClassDef)]
        return max(((n.end_lineno or n.lineno) - n.lineno + 1 for n in funcs), default=0)
    if f.language not in C_LIKE:
        return 0
    longest, stack = 0, []
    for i, line in enumerate(f.code.split("\n")):
        if "{" not in line and "}" not in line:
            continue
        for ch in line:
            if ch == "{":
                stack.append((i, bool(_FUNC_HEADER.search(line) and not _NOT_FUNC.match(line))))
            elif ch == "}" and stack:
                start, is_func = stack.pop()
                if is_func:
                    longest = max(longest, i - start + 1)
    return longest


@describe("a function over 150 lines (Python from `ast`, C-like from braces; not for tests)", delta="-1")
def q_long_function(f: Facts):
    n = longest_function(f)
    if n > 150:
        return -1, f"quality -1: very long function ({n} lines)"
    return None


@describe("25%+ of 4-line windows repeat elsewhere in the file (copy-paste)", delta="-1")
def q_duplicates(f: Facts):
    # Copy-paste shows as repeated runs of lines, not single repeated lines (tests and declarative SQL repeat
    # single lines by nature): count 4-line windows of the original text that occur more than once.
    if f.language == "sql":
        return None
    lines = [ln.strip() for ln in f.lines if len(ln.strip()) >= 4]
    windows = [tuple(lines[i : i + 4]) for i in range(len(lines) - 3)]
    if len(windows) < 20:
        return None
    counts = Counter(windows)
    repeated = sum(c for c in counts.values() if c > 1)
    if repeated >= 10 and repeated >= 0.25 * len(windows):
        return -1, f"quality -1: copy-pasted blocks ({repeated}/{len(windows)} 4-line runs repeat)"
    return None


QUALITY_RULES = [
    q_parse,
    q_minified,
    q_encoding,
    q_tiny,
    q_no_comments,
    q_names,
    q_todos,
    q_commented_code,
    q_magic_numbers,
    q_long_function,
    q_duplicates,
    q_documented,
    q_exemplary,
]

# Rules whose firing also caps the level: broken code is at most "functional but poor", minified code is 1.
QUALITY_CAPS = {q_parse: 2, q_minified: 1, q_encoding: 2}

# The content type moves quality too: tool output and data dumps teach little about writing code.
CONTENT_TYPE_QUALITY = {"generated": -1, "data": -1}


# Rules not applied to some content types, and why.
SKIPPED_RULES = {
    # Tool output and data: few hand-written names, comments or functions to judge.
    "data": {q_magic_numbers, q_names, q_no_comments, q_duplicates},
    "generated": {q_magic_numbers, q_names, q_no_comments, q_duplicates},
    # Settings files are lists of values, commented or not.
    "config": {q_no_comments, q_magic_numbers},
    # Tests repeat the same call with different literals by design.
    "test": {q_duplicates, q_magic_numbers, q_no_comments, q_long_function},
}


def quality_of(f: Facts, content_type: str) -> tuple[int, list[str]]:
    quality, cap, reasons = 3, QUALITY.hi, []
    skip = SKIPPED_RULES.get(content_type, set())
    for rule in QUALITY_RULES:
        if rule in skip:
            continue
        hit = rule(f)
        if hit:
            delta, reason = hit
            quality += delta
            reasons.append(reason)
            if rule in QUALITY_CAPS:
                cap = min(cap, QUALITY_CAPS[rule])
    if content_type in CONTENT_TYPE_QUALITY:
        delta = CONTENT_TYPE_QUALITY[content_type]
        quality += delta
        reasons.append(f"quality {delta:+d}: {content_type} file, little hand-written code to learn from")
    final = max(QUALITY.lo, min(quality, cap, QUALITY.hi))
    reasons.append(
        f"quality = {final} (3 {quality - 3:+d}" + (f", capped at {cap}" if cap < QUALITY.hi else "") + ")"
    )
    return final, reasons
