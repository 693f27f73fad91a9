"""Token and cost estimate before anything is sent, and the confirmation that guards spending."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from curator.labeling import prompt

CHARS_PER_TOKEN = 3.5  # code and English prose both tokenize at roughly 3-4 characters per token


@dataclass
class Prices:
    """USD per 1M tokens. Defaults: gpt-5-nano list prices; the Batch API halves them."""

    input_per_m: float = 0.05
    output_per_m: float = 0.40
    batch_discount: float = 0.5
    # Output tokens per answer. The JSON itself is ~25 tokens, but reasoning models bill their hidden
    # reasoning as output: the seed's ~$80 for 192K files at gpt-5-nano batch prices implies ~1,500-2,000.
    output_tokens_per_request: int = 1_500


@dataclass
class Estimate:
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    batch: bool
    tokenizer: str

    def describe(self) -> str:
        mode = "batch (discounted)" if self.batch else "online"
        return (
            f"{self.requests:,} requests, ~{self.input_tokens:,} input + ~{self.output_tokens:,} output tokens "
            f"(tokens by {self.tokenizer}), ~${self.cost_usd:,.2f} at {mode} prices"
        )


def _token_counter() -> tuple[Callable[[str], int], str]:
    try:
        import tiktoken

        enc = tiktoken.get_encoding("o200k_base")
        return (lambda s: len(enc.encode(s, disallowed_special=()))), "tiktoken o200k_base"
    except Exception:  # not installed, or its vocabulary cannot be fetched offline
        return (lambda s: int(len(s) / CHARS_PER_TOKEN) + 1), f"{CHARS_PER_TOKEN} chars/token"


def estimate(rows: Iterable[dict], max_chars: int, prices: Prices, batch: bool) -> Estimate:
    count, how = _token_counter()
    per_request_overhead = count(prompt.SYSTEM_PROMPT) + 20  # system prompt + message framing
    n = input_tokens = 0
    for row in rows:
        n += 1
        input_tokens += per_request_overhead + count(prompt.user_message(row, max_chars))
    output_tokens = prices.output_tokens_per_request * n
    usd = (input_tokens * prices.input_per_m + output_tokens * prices.output_per_m) / 1e6
    if batch:
        usd *= 1.0 - prices.batch_discount
    return Estimate(n, input_tokens, output_tokens, usd, batch, how)


class NotConfirmed(RuntimeError):
    pass


def confirm(est: Estimate, yes: bool, input_fn: Callable[[str], str] = input, stdin=None) -> None:
    """Ask before spending; raise NotConfirmed on "no", or when nobody can be asked and --yes is missing."""
    if yes or est.requests == 0:
        return
    stdin = sys.stdin if stdin is None else stdin
    if not (stdin is not None and stdin.isatty()):
        raise NotConfirmed(
            f"refusing to send {est.requests:,} requests (~${est.cost_usd:,.2f}) without confirmation: "
            "stdin is not a terminal; pass --yes (or set yes: true in the config) to go ahead"
        )
    answer = input_fn(f"Send {est.describe()}? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise NotConfirmed("not confirmed; nothing was sent")
