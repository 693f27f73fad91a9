"""How a file becomes model input: the one path that training, evaluation, error analysis and scoring share.

For the same file and the same settings every stage gets the same token ids, and `num_tokens` and
`truncated` mean the same thing everywhere:

1. text checks (`text_of`): null, binary (NUL bytes) or undecodable content is an error, never an exception;
2. head cutting: only the first `max_chars` characters are tokenized (a 100 MB file costs what a small one
   does); a head that holds fewer tokens than the model takes is doubled until it does, up to 64 x max_chars;
3. the file's path as a first line (optional, `with_path=True`): where a file lives says much of what it is
   (tests/, dist/, a .d.ts, a migration), and the readers who labeled the files saw it too;
   code markers (optional, `code_markers=True`): newlines and leading indentation become tokens of their own
   (`[unused0]`, `[unused1]`), for uncased WordPiece vocabularies that otherwise drop all whitespace;
4. tokenizing without special tokens, then `prefix + ids[:room] + suffix`: what the tokenizer gives with
   truncation to max_length;
5. `num_tokens`: the tokens of the model's text for the whole file (the path line, if any, and the content;
   special tokens not counted), extrapolated from the head's
   characters per token when only a head was tokenized (`estimated`); `truncated`: the model did not see all of
   the file;
6. windows (optional, `windows(..., max_windows=N)`): a file longer than the model's window becomes up to N
   inputs: the head (the same ids as above), then the file's next tokens in slices, each with the same prefix
   the head has (the special tokens and, with `with_path`, the path line), so that every window looks to the
   model like the heads it was trained on. Each window carries its `weight`, the tokens of the file that are
   new to it; the scores of a file are the weight-weighted mean over its windows (`curator.scoring`);
7. batches: `pad` (right-padded to a width) or `pack` (every file's tokens end to end, and where each starts).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from curator.hub import resolve_model_path

# Code runs about 3 characters a token, so 6 per token of max_length leaves room. Tokenizing whole files
# cost 4.3x more on the shipped sample at 512 tokens for the same model input
# (experiments/gpu_throughput/tokenize_heads.py).
HEAD_CHARS_PER_TOKEN = 6
MAX_HEAD_DOUBLINGS = 64
NEWLINE_MARKER = "[unused0]"
INDENT_MARKER = "[unused1]"
INDENT_COLUMNS = 4  # one indent marker per this many columns of leading whitespace (a tab counts 4)
MAX_INDENT_MARKERS = 8
_LINE = re.compile(r"([ \t]*)([^\n]*)(\n?)")


def load_tokenizer(path: str | Path, light: bool = False):
    """What `AutoTokenizer.from_pretrained(path)` gives, without importing transformers' auto classes where the
    folder's tokenizer_config.json names its class.

    The auto classes import the generation code, and scikit-learn with it where that is installed: 1.4-2.5 s of
    every scoring start-up. Like AutoTokenizer, the fast (Rust) class is taken where there is one.

    light: where the folder has a tokenizer.json, a `TokenizerFile` (no transformers at all) instead; for
    scoring, which needs only the ids (`InputEncoder`).
    """
    if light and (Path(path) / "tokenizer.json").is_file():
        return TokenizerFile(path)
    import transformers

    config = Path(path) / "tokenizer_config.json"
    name = json.loads(config.read_text()).get("tokenizer_class") if config.is_file() else None
    if name:
        base = name.removesuffix("Fast")
        for candidate in (base + "Fast", base):
            cls = getattr(transformers, candidate, None)  # imports that tokenizer's module only
            if cls is not None:
                return cls.from_pretrained(str(path))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


class TokenizerFile:
    """A folder's tokenizer.json through the `tokenizers` library alone: what `InputEncoder` asks of a
    transformers fast tokenizer (the ids of texts with or without special tokens, the pad and unknown ids, the
    code markers), the same ids (tests/test_inputs.py), without importing transformers, which took 1.4-2.8 s of
    every scoring process's start-up on a GPU host (experiments/gpu_throughput, "Start-up").
    """

    def __init__(self, folder: str | Path):
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # A saved tokenizer.json can hold the truncation and padding of its last use; transformers turns both
        # off for a call that asks for neither, as InputEncoder's calls do.
        self.backend.no_truncation()
        self.backend.no_padding()
        config = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (folder / name).is_file():
                config.update(json.loads((folder / name).read_text()))

        def token_id(role: str) -> int | None:
            token = config.get(role)
            token = token.get("content") if isinstance(token, dict) else token
            return self.backend.token_to_id(token) if token else None

        self.unk_token_id = token_id("unk_token")
        self.pad_token_id = token_id("pad_token")

    def __call__(self, text: str | list[str], add_special_tokens: bool = True, verbose: bool = True) -> dict:
        texts = [text] if isinstance(text, str) else list(text)
        ids = [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=add_special_tokens)]
        return {"input_ids": ids[0] if isinstance(text, str) else ids}

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        found = self.backend.token_to_id(token)
        return self.unk_token_id if found is None else found

    def add_tokens(self, tokens: list, special_tokens: bool = False) -> int:
        return self.backend.add_special_tokens(tokens) if special_tokens else self.backend.add_tokens(tokens)


def build_tokenizer(name_or_path: str, code_markers: bool = False, light: bool = False):
    """The tokenizer of an encoder (hub id, folder or short name such as 'minilm'), ready for `InputEncoder`.
    light: see `load_tokenizer`."""
    path = resolve_model_path(name_or_path)
    try:
        tokenizer = load_tokenizer(path, light=light)
    except OSError as e:
        raise OSError(
            f"could not load tokenizer {name_or_path!r}: {e}\n"
            "Offline? Use a local folder, or model.encoder=minilm for the packaged MiniLM."
        ) from e
    if code_markers:
        register_code_markers(tokenizer)
    return tokenizer


def register_code_markers(tokenizer) -> None:
    """Make the code markers single tokens of the tokenizer, reusing the vocabulary's unused slots.

    BERT vocabularies reserve `[unused0]`..`[unused993]`; registered as special tokens they keep their ids, so
    the encoder's embedding table is unchanged. A vocabulary without them cannot take markers.
    """
    unk = tokenizer.unk_token_id
    ids = [tokenizer.convert_tokens_to_ids(m) for m in (NEWLINE_MARKER, INDENT_MARKER)]
    if any(i is None or i == unk for i in ids):
        raise ValueError(
            f"code_markers needs a vocabulary with {NEWLINE_MARKER} and {INDENT_MARKER} slots (BERT WordPiece); "
            f"this tokenizer ({type(tokenizer).__name__}) has none: set data.code_markers=false"
        )
    from tokenizers import AddedToken

    tokenizer.add_tokens(
        [AddedToken(m, special=True, normalized=False) for m in (NEWLINE_MARKER, INDENT_MARKER)],
        special_tokens=True,
    )


def mark_code(text: str) -> str:
    """Newlines and leading indentation as marker tokens; blank-line runs kept to one blank line."""
    out = []
    blank_run = 0
    for indent, body, newline in _LINE.findall(text):
        if not body and not newline:
            continue
        if not body:
            blank_run += 1
            if blank_run <= 1 and newline:
                out.append(f" {NEWLINE_MARKER} ")
            continue
        blank_run = 0
        width = len(indent.expandtabs(INDENT_COLUMNS))
        markers = min(MAX_INDENT_MARKERS, -(-width // INDENT_COLUMNS))
        out.append(f"{INDENT_MARKER} " * markers + body + (f" {NEWLINE_MARKER} " if newline else ""))
    return "".join(out)


def text_of(content, max_chars: int) -> tuple[str | None, str | None]:
    """(the content as text, error): None and a reason for what cannot be read as text. Never raises."""
    if content is None:
        return None, "null content"
    if isinstance(content, (bytes, bytearray, memoryview)):
        raw = bytes(content)
        if b"\x00" in raw[: max_chars * 4]:
            return None, "binary content (NUL bytes)"
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, f"not valid UTF-8 (byte {e.start})"
    if not isinstance(content, str):
        return None, f"content is not text ({type(content).__name__})"
    # As git decides: a NUL among the first characters makes a file binary. Only the head is searched, so a
    # 100 MB file costs no more than a small one.
    if "\x00" in content[:max_chars]:
        return None, "binary content (NUL bytes)"
    return content, None


@dataclass
class ModelInput:
    """What the model sees of one file, or why it sees nothing."""

    ids: list[int] | None  # special tokens included, at most max_length
    num_tokens: int | None = None  # content tokens of the whole file, special tokens not counted
    estimated: bool = False  # num_tokens extrapolated from a head of the file
    truncated: bool = False  # the model did not see the whole file (in none of its windows)
    error: str | None = None
    # Tokens of the file that this input adds: its ids less the special tokens, and less the repeated path
    # line in a window after the head. Summed over a file's windows: the tokens of the file the model saw.
    weight: int = 0


class InputEncoder:
    """Files to `ModelInput`s, as described at the top of this module."""

    def __init__(
        self,
        tokenizer,
        max_length: int,
        max_chars: int | None = None,
        code_markers: bool = False,
        with_path: bool = False,
    ):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_chars = max_chars or max_length * HEAD_CHARS_PER_TOKEN
        self.code_markers = code_markers
        self.with_path = with_path
        if code_markers:
            register_code_markers(tokenizer)
        # Where the special tokens go, learnt from the tokenizer itself ([CLS] x [SEP], <s> x </s>, ...).
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a", add_special_tokens=True)["input_ids"]
        at = next(i for i in range(len(full)) if full[i : i + len(plain)] == plain)
        self.prefix, self.suffix = full[:at], full[at + len(plain) :]
        self.room = max_length - len(self.prefix) - len(self.suffix)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def _text(self, text: str, chars: int) -> str:
        head = text[:chars]
        return mark_code(head) if self.code_markers else head

    def _tokenize(self, texts: list[str]) -> list[list[int] | str]:
        try:
            return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        except Exception:  # one odd text must not cost the others: retry one by one
            out = []
            for t in texts:
                try:
                    out.append(self.tokenizer([t], add_special_tokens=False, verbose=False)["input_ids"][0])
                except Exception as e:
                    out.append(f"tokenizer failed: {type(e).__name__}: {str(e)[:200]}")
            return out

    def encode(self, contents: list, paths: list | None = None) -> list[ModelInput]:
        """Model input of each file (its head); with `with_path`, its path (in the repository) goes first, as a
        line."""
        return [w[0] for w in self.windows(contents, paths, 1)]

    def windows(
        self, contents: list, paths: list | None = None, max_windows: int = 1
    ) -> list[list[ModelInput]]:
        """Each file as up to `max_windows` model inputs (a file that cannot be read: one, with its error).

        The first is the head, what `encode` gives (a longer stretch of the file is tokenized, max_windows x
        max_chars characters, so the head is the same unless the head cut fell inside its last word). The
        others take the file's next tokens, `room` less the path line's tokens at a time, each after the same
        special tokens and path line as the head. `num_tokens`, `estimated` and `truncated` are the file's
        and the same in every window: `truncated` says that tokens are left beyond the last window.
        """
        if max_windows < 1:
            raise ValueError(f"max_windows must be at least 1, not {max_windows}")
        if self.with_path and paths is None:
            raise ValueError("this model reads each file's path first (with_path): pass the paths")
        out: list[list[ModelInput]] = []
        todo: list[tuple[list[ModelInput], str, int]] = []
        for i, content in enumerate(contents):
            text, error = text_of(content, self.max_chars)
            out.append([ModelInput(None, error=error)])
            if error is None:
                if self.with_path:
                    text = f"{paths[i] or ''}\n{text}"
                todo.append((out[-1], text, i))
        chars = max_windows * self.max_chars
        # Enough tokens for every window: the head holds `room` of them, a later window fewer.
        need = max_windows * self.room
        heads = self._tokenize([self._text(t, chars) for _, t, _ in todo]) if todo else []
        more: list[tuple[ModelInput, list[int], list[ModelInput], int]] = []
        for (slot, text, i), ids in zip(todo, heads, strict=True):
            head = min(len(text), chars)
            limit = min(len(text), MAX_HEAD_DOUBLINGS * chars)
            while isinstance(ids, list) and len(ids) < need and head < limit:
                head = min(limit, 2 * head)
                ids = self._tokenize([self._text(text, head)])[0]
            item = slot[0]
            if isinstance(ids, str):
                item.error = ids
                continue
            item.estimated = head < len(text)
            item.num_tokens = round(len(ids) * len(text) / head) if item.estimated else len(ids)
            item.truncated = item.estimated or len(ids) > self.room
            item.ids = self.prefix + ids[: self.room] + self.suffix
            item.weight = min(len(ids), self.room)
            if max_windows > 1 and len(ids) > self.room:
                more.append((item, ids, slot, i))
        if more:
            path_ids = self._path_ids([paths[i] for *_, i in more]) if self.with_path else [[]] * len(more)
            for (item, ids, slot, _), line in zip(more, path_ids, strict=True):
                step = self.room - len(line)
                rest = ids[self.room :]
                for at in range(0, min(len(rest), step * (max_windows - 1)), step):
                    piece = rest[at : at + step]
                    slot.append(
                        ModelInput(
                            self.prefix + line + piece + self.suffix,
                            item.num_tokens,
                            item.estimated,
                            item.estimated or len(rest) > step * (max_windows - 1),
                            weight=len(piece),
                        )
                    )
                for w in slot:
                    w.truncated = slot[-1].truncated
        return out

    def _path_ids(self, paths: list) -> list[list[int]]:
        """The path line's tokens, as they begin the head (at most half of `room`, so a window holds some of
        the file whatever the path)."""
        got = self._tokenize([self._text(f"{p or ''}\n", self.max_chars) for p in paths])
        return [ids[: self.room // 2] if isinstance(ids, list) else [] for ids in got]


def padded_width(longest: int, multiple_of: int = 1, max_width: int | None = None) -> int:
    """`longest` rounded up to a multiple of `multiple_of`, but never past max(longest, max_width).

    Rounding keeps the number of distinct batch shapes small: a compiled model captured as CUDA graphs
    records one graph per shape (at 512 tokens and a multiple of 64, eight widths per batch size).
    """
    width = -(-longest // multiple_of) * multiple_of
    if max_width is not None:
        width = min(width, max(longest, max_width))
    return width


def pad(
    sequences: list[list[int]], pad_id: int, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of token id lists padded on the right to `width` (default: the longest)."""
    width = max(len(s) for s in sequences) if width is None else width
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attention_mask[i, : len(s)] = 1
    return input_ids, attention_mask


def pack(sequences: list[list[int]], device=None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Token id lists -> (input_ids (total,) int32, cu_seqlens (n+1,) int32, max_seqlen): the files' tokens
    end to end and where each starts."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int32, count=len(sequences))
    cu = np.zeros(len(sequences) + 1, dtype=np.int32)
    np.cumsum(lengths, out=cu[1:])
    ids = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int32, count=int(cu[-1]))
    max_seqlen = int(lengths.max()) if len(sequences) else 0
    return torch.from_numpy(ids).to(device), torch.from_numpy(cu).to(device), max_seqlen
