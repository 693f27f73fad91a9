"""Token and cost estimate before anything is sent, and the confirmation that guards spending."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from curator.labeling import prompt

CHARS_PER_TOKEN = 3.5  # code and English prose both tokenize at roughly 3-4 characters per token

# OpenAI list prices, USD per 1M (input, output) tokens at standard processing (2025); the Batch API halves
# them. Any other model (an open-weight judge on a local server) has no price unless it is given.
LIST_PRICES = {
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
}


@dataclass
class Prices:
    """USD per 1M tokens (None: unknown). Defaults: gpt-5-nano list prices."""

    input_per_m: float | None = 0.05
    output_per_m: float | None = 0.40
    batch_discount: float = 0.5
    # Output tokens per answer. The JSON itself is ~25 tokens, but reasoning models bill their hidden
    # reasoning as output: the seed's ~$80 for 192K files at gpt-5-nano batch prices implies ~1,500-2,000.
    output_tokens_per_request: int = 1_500
    source: str = "list price of gpt-5-nano"


def prices_for(
    model: str,
    input_per_m: float | None = None,
    output_per_m: float | None = None,
    batch_discount: float = 0.5,
    output_tokens_per_request: int = 1_500,
) -> Prices:
    """The model's list prices, each replaced by the one given; None where neither is known."""
    listed = LIST_PRICES.get(model)
    if input_per_m is not None and output_per_m is not None:
        source = "prices given by --price-input/--price-output"
    elif listed:
        input_per_m = listed[0] if input_per_m is None else input_per_m
        output_per_m = listed[1] if output_per_m is None else output_per_m
        source = f"list price of {model}"
    else:
        source = f"unknown model {model!r}: no price (give --price-input and --price-output)"
    return Prices(input_per_m, output_per_m, batch_discount, output_tokens_per_request, source)


@dataclass
class Estimate:
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None  # None: the model's price is unknown
    batch: bool
    tokenizer: str
    price_source: str = ""

    def cost_text(self) -> str:
        return "cost unknown" if self.cost_usd is None else f"~${self.cost_usd:,.2f}"

    def describe(self) -> str:
        mode = "batch (discounted)" if self.batch else "online"
        price = f"{self.price_source}" if self.cost_usd is None else f"at {mode} prices ({self.price_source})"
        return (
            f"{self.requests:,} requests, ~{self.input_tokens:,} input + ~{self.output_tokens:,} output tokens "
            f"({self.tokenizer}), {self.cost_text()} {price}"
        )


def _token_counter() -> tuple[Callable[[str], int], str]:
    guess = f"tokens estimated at {CHARS_PER_TOKEN} characters each"
    try:
        import tiktoken
    except ImportError:
        return (lambda s: int(len(s) / CHARS_PER_TOKEN) + 1), f"{guess}: tiktoken is not installed"
    try:
        enc = tiktoken.get_encoding("o200k_base")
    except Exception:  # its vocabulary is downloaded on first use, which fails offline
        return (lambda s: int(len(s) / CHARS_PER_TOKEN) + 1), f"{guess}: tiktoken could not load o200k_base"
    return (lambda s: len(enc.encode(s, disallowed_special=()))), "tokens counted with tiktoken o200k_base"


def estimate(rows: Iterable[dict], max_chars: int, prices: Prices, batch: bool) -> Estimate:
    count, how = _token_counter()
    per_request_overhead = count(prompt.SYSTEM_PROMPT) + 20  # system prompt + message framing
    n = input_tokens = 0
    for row in rows:
        n += 1
        input_tokens += per_request_overhead + count(prompt.user_message(row, max_chars))
    output_tokens = prices.output_tokens_per_request * n
    usd = None
    if prices.input_per_m is not None and prices.output_per_m is not None:
        usd = (input_tokens * prices.input_per_m + output_tokens * prices.output_per_m) / 1e6
        if batch:
            usd *= 1.0 - prices.batch_discount
    return Estimate(n, input_tokens, output_tokens, usd, batch, how, prices.source)


class NotConfirmed(RuntimeError):
    pass


def confirm(est: Estimate, yes: bool, input_fn: Callable[[str], str] = input, stdin=None) -> None:
    """Ask before spending; raise NotConfirmed on "no", or when nobody can be asked and --yes is missing."""
    if yes or est.requests == 0:
        return
    stdin = sys.stdin if stdin is None else stdin
    if not (stdin is not None and stdin.isatty()):
        raise NotConfirmed(
            f"refusing to send {est.requests:,} requests ({est.cost_text()}) without confirmation: "
            "stdin is not a terminal; pass --yes (or set yes: true in the config) to go ahead"
        )
    answer = input_fn(f"Send {est.describe()}? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise NotConfirmed("not confirmed; nothing was sent")
