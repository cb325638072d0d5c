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
