"""Clean / corrupt prompt pairs built from real text, for circuits and attributions.

`quote_pairs`: a stretch of text, then an opening token and a few words. In the clean
prompt the opening token is a double quote (``␣"``), in the corrupt one a parenthesis
(``␣(``), so what should close next changes while every other token stays the same; the
metric is ``logit('"') - logit(')')`` at the last position. Prefixes come from windows the
caller draws (held-out text, for a circuit judged on text the model never saw) and the
enclosed words are drawn from the tokenizer's whole-word tokens, so no pair is a memorised
quotation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

QUOTE = (' "', '"')  # (opening token, what closes it)
PAREN = (" (", ")")


@dataclass(frozen=True)
class PromptPairs:
    """``clean`` / ``corrupt`` ``[n, pos]`` differ in few tokens; at position ``pos`` the
    clean continuation is ``answer`` and the corrupt one ``other`` (``[n]`` token ids)."""

    clean: torch.Tensor
    corrupt: torch.Tensor
    pos: int
    answer: torch.Tensor
    other: torch.Tensor


def single_token(tokenizer: Any, text: str) -> int:
    """The id of `text` if the tokenizer spells it as exactly one token."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{text!r} is {len(ids)} tokens for this tokenizer, not one; "
                         "quote prompts need single-token quotes and parentheses")
    return ids[0]


def word_tokens(tokenizer: Any, min_chars: int = 3) -> list[int]:
    """Ids of tokens that are a space and then at least `min_chars` letters."""
    words = []
    for i in range(len(tokenizer)):
        s = tokenizer.decode([i])
        if s.startswith(" ") and s[1:].isalpha() and len(s) > min_chars:
            words.append(i)
    if not words:
        raise ValueError("the tokenizer has no whole-word tokens to put inside the quotes")
    return words


def quote_pairs(tokenizer: Any, windows: torch.Tensor, *, prefix: int, words: int,
                seed: int = 0) -> PromptPairs:
    """One pair per window (module doc): the window's first `prefix` tokens, the opening
    token, then `words` random whole-word tokens."""
    if windows.shape[1] < prefix:
        raise ValueError(f"windows of {windows.shape[1]} tokens are shorter than the prefix "
                         f"of {prefix}")
    if words < 1:
        raise ValueError("quote prompts need at least one word inside the quotes")
    open_clean, open_corrupt = (single_token(tokenizer, QUOTE[0]),
                                single_token(tokenizer, PAREN[0]))
    close_clean, close_corrupt = (single_token(tokenizer, QUOTE[1]),
                                  single_token(tokenizer, PAREN[1]))
    vocab = word_tokens(tokenizer)
    rng = random.Random(seed)
    clean, corrupt = [], []
    for window in windows:
        start = window[:prefix].tolist()
        inner = [rng.choice(vocab) for _ in range(words)]
        clean.append(start + [open_clean] + inner)
        corrupt.append(start + [open_corrupt] + inner)
    n = len(clean)
    return PromptPairs(torch.tensor(clean), torch.tensor(corrupt), prefix + words,
                       torch.full((n,), close_clean), torch.full((n,), close_corrupt))


__all__ = ["PAREN", "QUOTE", "PromptPairs", "quote_pairs", "single_token", "word_tokens"]
