"""Tiny data: the course's example sentence and seeded random generators (chapters 1, 6, 7)."""

from __future__ import annotations

import re
from dataclasses import dataclass

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


GRAMMAR = {
    "name": ["Anna", "Ben", "Mia", "Tom", "Sara", "Leo"],
    "thing": ["book", "ball", "key", "hat", "letter", "cup"],
    "place": ["park", "market", "river", "school", "mill", "garden"],
    "animal": ["cat", "dog", "fox", "bird"],
    "spot": ["mat", "wall", "step", "chair"],
    "feeling": ["tired", "happy", "cold", "hungry"],
    "did": ["read", "kept", "dropped", "found", "carried"],
    "time": ["morning", "evening", "night"],
}
TEMPLATES = [
    "{name} gave the {thing} to {name2} , and {name2} {did} it .",
    "the {animal} sat on the {spot} because it was {feeling} .",
    "{name} and {name2} walked to the {place} in the {time} .",
    "in the {time} {name} found a {thing} near the {place} .",
    "the {animal} ran to the {place} , and {name} followed it .",
    "{name} was {feeling} , so {name} sat on the {spot} .",
]


def story_sentences(count: int, rng: torch.Generator) -> list[str]:
    """Sentences from a small English grammar the course writes. Introduced in chapter 6.

    Names recur within a sentence ("... to Ben , and Ben read it"), and some phrases are fixed
    ("because it was"): patterns that different attention heads can pick up.
    """
    def pick(key: str) -> str:
        options = GRAMMAR[key]
        return options[int(torch.randint(len(options), (), generator=rng))]

    sentences = []
    for _ in range(count):
        template = TEMPLATES[int(torch.randint(len(TEMPLATES), (), generator=rng))]
        name = pick("name")
        name2 = next(n for n in iter(lambda: pick("name"), None) if n != name)
        fields = {key: pick(key) for key in GRAMMAR if key != "name"}
        sentences.append(template.format(name=name, name2=name2, **fields))
    return sentences


@dataclass
class Vocabulary:
    """Word tokens <-> ids, built from a list of sentences (lower-cased). Introduced in chapter 6."""

    words: list[str]  # id -> word

    @classmethod
    def from_sentences(cls, sentences: list[str]) -> Vocabulary:
        return cls(sorted({w for s in sentences for w in word_tokens(s.lower())}))

    def encode(self, text: str) -> torch.Tensor:
        """Text -> (T,) ids; raises ValueError naming an unknown word."""
        index = {w: i for i, w in enumerate(self.words)}
        unknown = [w for w in word_tokens(text.lower()) if w not in index]
        if unknown:
            raise ValueError(f"words not in the vocabulary: {unknown}")
        return torch.tensor([index[w] for w in word_tokens(text.lower())])

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [self.words[i] for i in ids.tolist()]


def next_token_windows(
    stream: torch.Tensor, batch_size: int, seq_len: int, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of a token stream: inputs (B, T) and next tokens (B, T). Introduced in chapter 6."""
    if stream.dim() != 1 or len(stream) <= seq_len:
        raise ValueError(f"need a 1-d stream longer than seq_len={seq_len}, got shape {tuple(stream.shape)}")
    starts = torch.randint(len(stream) - seq_len, (batch_size,), generator=rng)  # (B,)
    windows = stream[starts[:, None] + torch.arange(seq_len + 1)]  # (B, T + 1)
    return windows[:, :-1], windows[:, 1:]
