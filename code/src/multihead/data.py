"""Tiny data: the course's example sentence and seeded random generators (chapters 1, 6, 7)."""

from __future__ import annotations

import re

import torch

CAT_SENTENCE = "The cat sat on the mat because it was tired."


def word_tokens(text: str) -> list[str]:
    """Split text into words and punctuation marks. Introduced in chapter 1."""
    return re.findall(r"\w+|[^\w\s]", text)


def generator(seed: int) -> torch.Generator:
    """A CPU random generator with a fixed seed, so data never depends on global state. Introduced in chapter 1."""
    return torch.Generator().manual_seed(seed)


IGNORE = -100  # target value that F.cross_entropy skips (its default ignore_index)


def first_minus_previous(
    batch_size: int, seq_len: int, vocab_size: int, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens x (B, T) and targets y[t] = (x[t-1] - x[0]) mod V; y[0] is IGNORE. Introduced in chapter 1.

    Each answer needs two tokens in two different roles: the first one and the previous one.
    A single softmax that averages the two gets e(a) + e(b), which cannot tell a - b from b - a.
    """
    if seq_len < 2 or vocab_size < 2 or batch_size < 1:
        raise ValueError(f"need batch_size >= 1, seq_len >= 2, vocab_size >= 2, got {batch_size}, {seq_len}, {vocab_size}")
    x = torch.randint(vocab_size, (batch_size, seq_len), generator=rng)  # (B, T)
    y = torch.full_like(x, IGNORE)  # (B, T)
    y[:, 1:] = (x[:, :-1] - x[:, :1]) % vocab_size  # (B, T-1)
    return x, y
