"""Tiny data: the course's example sentence and seeded random generators (chapters 1, 6, 8)."""

from __future__ import annotations

import itertools
import math
import re
import string
from collections.abc import Callable, Sequence
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
    return _first_and_previous(batch_size, seq_len, vocab_size, rng, sign=-1)


def first_plus_previous(
    batch_size: int, seq_len: int, vocab_size: int, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same tokens as first_minus_previous, with y[t] = (x[t-1] + x[0]) mod V. Introduced in chapter 1.

    The symmetric twin of chapter 1's task (its exercise "A symmetric task"): the answer no
    longer depends on which token plays which role.
    """
    return _first_and_previous(batch_size, seq_len, vocab_size, rng, sign=1)


def _first_and_previous(
    batch_size: int, seq_len: int, vocab_size: int, rng: torch.Generator, sign: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if seq_len < 2 or vocab_size < 2 or batch_size < 1:
        raise ValueError(f"need batch_size >= 1, seq_len >= 2, vocab_size >= 2, got {batch_size}, {seq_len}, {vocab_size}")
    x = torch.randint(vocab_size, (batch_size, seq_len), generator=rng)  # (B, T)
    y = torch.full_like(x, IGNORE)  # (B, T)
    y[:, 1:] = (x[:, :-1] + sign * x[:, :1]) % vocab_size  # (B, T-1)
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


def grammar_sentences() -> dict[str, float]:
    """Every sentence `story_sentences` can produce, with its probability. Introduced in chapter 6.

    The template is uniform, each field is uniform over its options, and name2 is uniform over
    the names other than name; fields a template does not use leave its sentence unchanged.
    """
    names = GRAMMAR["name"]
    result: dict[str, float] = {}
    for template in TEMPLATES:
        used = sorted({field for _, field, _, _ in string.Formatter().parse(template) if field})
        choices = [
            [(n, 1.0) for n in names] if key == "name2" else [(o, 1.0 / len(GRAMMAR[key])) for o in GRAMMAR[key]]
            for key in used
        ]
        for combo in itertools.product(*choices):
            fields = {key: value for key, (value, _) in zip(used, combo)}
            if "name2" in fields and fields["name2"] == fields.get("name"):
                continue
            p = 1.0 / len(TEMPLATES)
            for key, (_, q) in zip(used, combo):
                p *= 1.0 / (len(names) - 1) if key == "name2" else q
            sentence = template.format(**fields)
            result[sentence] = result.get(sentence, 0.0) + p
    return result


def window_entropy(sentences: dict[str, float], seq_len: int, end: str = ".") -> torch.Tensor:
    """The least possible loss at each position of a window, in nats, (seq_len,). Introduced in chapter 6.

    The text is an endless stream of independent sentences drawn with the given probabilities,
    each ending with the token `end` (and containing it nowhere else); a window of seq_len
    tokens starts at a uniformly random token. Entry t is the conditional entropy of the token
    after window position t given window tokens 0..t: the loss of the best possible predictor,
    one that knows the grammar. Its mean is the floor of `token_loss` on such windows.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len={seq_len!r} must be at least 1")
    total = sum(sentences.values())
    if not sentences or abs(total - 1.0) > 1e-6:
        raise ValueError(f"the probabilities must sum to 1, got {total!r}")
    tokens = {s: word_tokens(s.lower()) for s in sentences}
    for s, words in tokens.items():
        if words[-1] != end or end in words[:-1]:
            raise ValueError(f"every sentence must end with {end!r} and contain it only there, got {s!r}")
    mean_len = sum(p * len(tokens[s]) for s, p in sentences.items())
    weights = [(words, p / mean_len) for s, p in sentences.items() for words in [tokens[s]]]  # per position

    def loss(key: Callable[[list[str], int], tuple[str, ...]], after_end: float) -> float:
        """Expected -log q(next | key(words, j)) over all positions (sentence, j)."""
        counts: dict[tuple[str, ...], dict[str, float]] = {}
        for words, w in weights:
            for j in range(len(words) - 1):
                options = counts.setdefault(key(words, j), {})
                options[words[j + 1]] = options.get(words[j + 1], 0.0) + w
        result = 0.0
        for words, w in weights:
            result += w * after_end  # j = last: the next token starts a new sentence
            for j in range(len(words) - 1):
                options = counts[key(words, j)]
                result -= w * math.log(options[words[j + 1]] / sum(options.values()))
        return result

    first: dict[str, float] = {}
    for s, p in sentences.items():
        first[tokens[s][0]] = first.get(tokens[s][0], 0.0) + p
    after_end = -sum(q * math.log(q) for q in first.values())  # entropy of a sentence's first token

    longest = max(len(words) for words in tokens.values())
    entropies: list[float] = []
    for n in range(1, seq_len + 1):  # n = t + 1 tokens of context
        if n > longest:  # every context reaches back to the previous `end`: nothing more to learn
            entropies.append(entropies[-1])
            continue

        def key(words: list[str], j: int, n: int = n) -> tuple[str, ...]:
            if n >= j + 2:  # the previous `end` is in sight: the sentence so far is known
                return (end, *words[: j + 1])
            return tuple(words[j - n + 1 : j + 1])  # a piece of one sentence, its start unseen

        entropies.append(loss(key, after_end))
    return torch.tensor(entropies, dtype=torch.float64)


def sample_sentences(sentences: dict[str, float], count: int, rng: torch.Generator) -> list[str]:
    """count sentences drawn with replacement, with the given probabilities renormalised. Introduced in chapter 6."""
    if count < 1 or not sentences:
        raise ValueError(f"need count >= 1 and at least one sentence, got count={count!r}, {len(sentences)} sentences")
    pool = list(sentences)
    probs = torch.tensor([sentences[s] for s in pool], dtype=torch.float64)  # (S,)
    picks = torch.multinomial(probs, count, replacement=True, generator=rng)  # (count,)
    return [pool[i] for i in picks.tolist()]


def split_sentences(
    sentences: dict[str, float], sizes: Sequence[int], rng: torch.Generator
) -> list[dict[str, float]]:
    """Disjoint random pools of distinct sentences, one per size, then one with the rest. Introduced in chapter 6.

    Each pool keeps the sentences' probabilities (not renormalised; `sample_sentences` does that).
    """
    if any(size < 1 for size in sizes) or sum(sizes) >= len(sentences):
        raise ValueError(f"sizes={list(sizes)!r} must be positive and leave sentences for the rest of {len(sentences)}")
    pool = list(sentences)
    order = torch.randperm(len(pool), generator=rng).tolist()  # (S,) a shuffled index
    bounds = [0, *itertools.accumulate(sizes), len(pool)]
    return [{pool[i]: sentences[pool[i]] for i in order[a:b]} for a, b in zip(bounds, bounds[1:])]


@dataclass
class StoryCorpus:
    """Chapter 6's text: the grammar's distinct sentences split into test, validation and training pools.

    Introduced in chapter 6. No sentence of one pool occurs in another, so the test loss
    measures the grammar learned, not sentences memorised.
    """

    vocab: Vocabulary  # every word the grammar can produce
    pools: dict[str, dict[str, float]]  # "train", "validation", "test" -> sentence -> probability
    sentences: dict[str, list[str]]  # the same keys -> the sentences drawn for that text, in order
    streams: dict[str, torch.Tensor]  # the same keys -> (N,) word ids of those sentences joined


def story_corpus(
    train: int = 2000, held_out: int = 400, pool_size: int = 240, seed: int = 0
) -> StoryCorpus:
    """Split the grammar by distinct sentence and draw train/validation/test text. Introduced in chapter 6.

    pool_size distinct sentences each are held out for test and validation; `train` sentences
    are drawn from the rest and `held_out` from each held-out pool, with the grammar's
    probabilities renormalised within the pool.
    """
    grammar = grammar_sentences()
    test, validation, rest = split_sentences(grammar, [pool_size, pool_size], generator(seed))
    pools = {"train": rest, "validation": validation, "test": test}
    counts = {"train": train, "validation": held_out, "test": held_out}
    vocab = Vocabulary.from_sentences(list(grammar))
    sentences = {
        name: sample_sentences(pools[name], counts[name], generator(seed + 1 + i))
        for i, name in enumerate(pools)
    }
    streams = {name: vocab.encode(" ".join(text)) for name, text in sentences.items()}  # (N,) each
    return StoryCorpus(vocab, pools, sentences, streams)
