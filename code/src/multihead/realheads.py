"""What the heads of a real model do, measured (chapter 7).

The pretrained encoder of `multihead.pretrained` is run on text that ships with Python itself
(the sentences of its documentation, in `pydoc_data`) and on sentences generated for the course.
Every head gets a score for each behaviour, next to the score that attention spread evenly over
the tokens would get. Ablation removes heads, by zeroing them or by replacing them with their
mean output, and measures how far the sentence embeddings move.
"""

from __future__ import annotations

import random
import re

import torch

from .heads import split_heads
from .masks import padding_mask
from .pretrained import Encoder, mean_pool, tokenize

PUNCTUATION = set(".,;:!?()'\"-")

WOMEN = ["woman", "girl", "mother", "sister", "aunt", "queen", "actress", "bride"]
THINGS = ["car", "lamp", "book", "phone", "chair", "clock", "radio", "bike", "table", "coat", "camera", "box"]
STATES = {"it": ["old", "cheap", "broken", "heavy", "expensive", "loud", "new", "small"],
          "she": ["tired", "busy", "hungry", "sad", "late", "angry", "bored", "ill"]}
DID_TO = ["sold", "bought", "returned", "kept", "moved", "repaired", "liked", "wanted"]  # a person did it to a thing
FELT = ["surprised", "pleased", "annoyed", "impressed", "worried", "bored"]  # a thing made a person feel it


def documentation_sentences(n: int, seed: int = 0) -> list[str]:
    """`n` plain sentences of 8 to 20 words from Python's own documentation, shuffled by `seed`. Introduced in chapter 7.

    The text is `pydoc_data.topics`, which every Python installation ships.
    """
    from pydoc_data.topics import topics

    text = re.sub(r"\s+", " ", " ".join(topics[key] for key in sorted(topics)))
    sentences = sorted(
        {s for s in re.split(r"(?<=[.!?])\s+", text) if 8 <= len(s.split()) <= 20 and re.fullmatch(r"[A-Z][A-Za-z ,;()'-]+\.", s) and "--" not in s}
    )
    if not 0 <= n <= len(sentences):
        raise ValueError(f"n={n}: the documentation has {len(sentences)} sentences that qualify")
    random.Random(seed).shuffle(sentences)
    return sentences[:n]


def pronoun_sentences(n: int, frame: str, pronoun: str, seed: int = 0) -> list[tuple[str, str, str, str]]:
    """`n` sentences with one thing, one woman and a pronoun that can only mean one of them. Introduced in chapter 7.

    frame="did": "The woman sold the lamp because it was old." (the thing comes second).
    frame="felt": "The lamp pleased the woman because it was new." (the thing comes first).
    pronoun="it" means the thing and pronoun="she" the woman, so the same frame can point the
    pronoun either way. Returns (sentence, pronoun, what it means, the other noun).
    """
    if frame not in ("did", "felt") or pronoun not in STATES:
        raise ValueError(f"frame={frame!r} must be 'did' or 'felt', pronoun={pronoun!r} must be 'it' or 'she'")
    rng = random.Random(f"{seed}-{frame}-{pronoun}")
    out = []
    for _ in range(n):
        woman, thing, state = rng.choice(WOMEN), rng.choice(THINGS), rng.choice(STATES[pronoun])
        if frame == "did":
            sentence = f"The {woman} {rng.choice(DID_TO)} the {thing} because {pronoun} was {state}."
        else:
            sentence = f"The {thing} {rng.choice(FELT)} the {woman} because {pronoun} was {state}."
        meant, other = (thing, woman) if pronoun == "it" else (woman, thing)
        out.append((sentence, pronoun, meant, other))
    return out


@torch.no_grad()
def weights_of(encoder: Encoder, texts: list[str]) -> tuple[list[list[str]], torch.Tensor, torch.Tensor]:
    """Word pieces, every head's weights (layers, B, h, T, T) and lengths (B,). Introduced in chapter 7."""
    tokens, ids, lengths = tokenize(texts)
    _, weights = encoder(ids, lengths)
    return tokens, weights, lengths


KINDS = ("previous", "next", "[CLS]", "[SEP]", "punctuation", "same word")


def _key_masks(pieces: list[list[str]], ids: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
    """kind -> (B, T, T): True where key k is of that kind for query q. Queries and keys of a kind
    are word pieces, never [CLS], [SEP] or padding, except the [CLS] and [SEP] keys themselves."""
    B, T = ids.shape
    position = torch.arange(T)
    n = lengths[:, None]  # (B, 1)
    word = (position >= 1) & (position <= n - 2)  # (B, T): between [CLS] and [SEP]
    pairs = word[:, :, None] & word[:, None, :]  # (B, T, T): both query and key are word pieces
    q, k = position[:, None], position[None, :]  # (T, 1), (1, T)
    punctuation = torch.tensor([[p in PUNCTUATION for p in row] + [False] * (T - len(row)) for row in pieces])  # (B, T)
    return {
        "previous": pairs & (k == q - 1),
        "next": pairs & (k == q + 1),
        "[CLS]": word[:, :, None] & (k == 0),
        "[SEP]": word[:, :, None] & (k == n[:, :, None] - 1),
        "punctuation": pairs & punctuation[:, None, :],
        "same word": pairs & (ids[:, :, None] == ids[:, None, :]) & (k != q),
    }


@torch.no_grad()
def head_type_scores(encoder: Encoder, texts: list[str], batch_size: int = 32) -> dict[str, tuple[torch.Tensor, float]]:
    """Each head's mean weight on each kind of key, and what even attention would give. Introduced in chapter 7.

    Every query that is a word piece (not [CLS] or [SEP]) is scored on the keys of a kind:
    "previous" and "next" the word piece before and after it, "[CLS]" and "[SEP]" those tokens,
    "punctuation" every punctuation mark, "same word" the other places of its word piece. A
    query with no key of a kind (the first word piece has no previous one) is left out of that
    kind. Returns kind -> (scores (layers, h), chance), where chance is the weight that
    attention spread evenly over the n tokens puts on those keys. Texts are run in batches of
    similar length, so little is padding.
    """
    by_length = sorted(texts, key=len)
    L, h = encoder.config.num_layers, encoder.config.num_heads
    sums = {kind: [torch.zeros(L, h), 0.0, 0] for kind in KINDS}  # weight on the keys, chance, queries
    for i in range(0, len(by_length), batch_size):
        pieces, ids, lengths = tokenize(by_length[i : i + batch_size])
        _, weights = encoder(ids, lengths)  # (L, B, h, T, T)
        per_head = weights.transpose(1, 2).reshape(L * h, -1)  # (L * h, B * T * T)
        for kind, keys in _key_masks(pieces, ids, lengths).items():
            per_query = keys.sum(-1)  # (B, T): keys of this kind for each query
            total = sums[kind]
            total[0] += (per_head @ keys.flatten().float()).view(L, h)  # weight on those keys
            total[1] += (per_query / lengths[:, None]).sum().item()
            total[2] += int((per_query > 0).sum())
    return {kind: (on_keys / count, chance / count) for kind, (on_keys, chance, count) in sums.items()}


def _position(pieces: list[str], word: str, sentence: str) -> int:
    """Where `word` stands among a sentence's word pieces; it must be exactly one piece, once."""
    if pieces.count(word.lower()) != 1:
        raise ValueError(f"{word!r} must be one word piece, once, in {sentence!r}; its word pieces are {pieces}")
    return pieces.index(word.lower())


def pronoun_scores(encoder: Encoder, examples: list[tuple[str, str, str, str]]) -> torch.Tensor:
    """(layers, h): the share of sentences in which the pronoun weighs what it means above the other noun. Introduced in chapter 7.

    Chance is 0.5 for a head blind to meaning.
    """
    tokens, weights, _ = weights_of(encoder, [sentence for sentence, *_ in examples])
    wins = torch.zeros(weights.shape[0], weights.shape[2])
    for b, (pieces, (sentence, pronoun, meant, other)) in enumerate(zip(tokens, examples)):
        q, m, o = (_position(pieces, word, sentence) for word in (pronoun, meant, other))
        wins += (weights[:, b, :, q, m] > weights[:, b, :, q, o]).float()  # (layers, h)
    return wins / len(examples)


def pronoun_weights(encoder: Encoder, examples: list[tuple[str, str, str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(layers, h) twice: the mean weight the pronoun puts on what it means, and on the other noun. Introduced in chapter 7.

    `pronoun_scores` says how often the first beats the second; this says by how much.
    """
    tokens, weights, _ = weights_of(encoder, [sentence for sentence, *_ in examples])
    meant, other = torch.zeros(2, weights.shape[0], weights.shape[2])
    for b, (pieces, (sentence, pronoun, m, o)) in enumerate(zip(tokens, examples)):
        q, m, o = (_position(pieces, word, sentence) for word in (pronoun, m, o))
        meant += weights[:, b, :, q, m]  # (layers, h)
        other += weights[:, b, :, q, o]
    return meant / len(examples), other / len(examples)


def best(scores: torch.Tensor) -> tuple[int, int]:
    """(layer, head) of the largest score in a (layers, h) table. Introduced in chapter 7."""
    i = int(scores.argmax())
    return divmod(i, scores.shape[1])


@torch.no_grad()
def head_means(encoder: Encoder, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Every head's output (before W_o) averaged over the real tokens, (layers, h, d_k). Introduced in chapter 7."""
    inputs = []
    hooks = [layer.attention.register_forward_pre_hook(lambda m, args: inputs.append(args[0])) for layer in encoder.layers]
    try:
        _, weights = encoder(ids, lengths)  # (layers, B, h, T, T)
    finally:
        for hook in hooks:
            hook.remove()
    keep = padding_mask(lengths, ids.shape[1])[:, 0, 0, :, None]  # (B, T, 1)
    means = []
    for layer, x, w in zip(encoder.layers, inputs, weights):
        v = split_heads(layer.attention.W_v(x), layer.attention.num_heads)  # (B, h, T, d_k)
        heads = w @ v  # (B, h, T, d_k)
        means.append((heads * keep[:, None]).sum((0, 2)) / keep.sum())  # (h, d_k)
    return torch.stack(means)


def removal(encoder: Encoder, removed: torch.Tensor, means: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """head_mask (layers, h) and shift (layers, d_model) that remove the heads where `removed` is True. Introduced in chapter 7.

    Without `means` the heads are zeroed. With them (`head_means`), each removed head is replaced
    by its mean output: a constant whose share of W_o's output is added as a shift.
    """
    head_mask = (~removed).float()
    if means is None:
        return head_mask, None
    shift = []
    for layer, gone, mean in zip(encoder.layers, removed, means):
        w_o = layer.attention.W_o.weight  # (d_model, h * d_k): head i owns columns i*d_k .. (i+1)*d_k
        constant = (mean * gone[:, None]).reshape(-1)  # (h * d_k,): removed heads' means, others 0
        shift.append(w_o @ constant)  # (d_model,)
    return head_mask, torch.stack(shift)


@torch.no_grad()
def similarity_to(
    encoder: Encoder, ids: torch.Tensor, lengths: torch.Tensor, reference: torch.Tensor,
    removed: torch.Tensor, means: torch.Tensor | None = None,
) -> float:
    """Mean cosine similarity of the sentence embeddings with `removed` heads to `reference` (B, d_model). Introduced in chapter 7."""
    head_mask, shift = removal(encoder, removed, means)
    hidden, _ = encoder(ids, lengths, head_mask, shift, need_weights=False)  # (B, T, d_model)
    return (mean_pool(hidden, lengths) * reference).sum(-1).mean().item()


def importance(
    encoder: Encoder, ids: torch.Tensor, lengths: torch.Tensor, reference: torch.Tensor, means: torch.Tensor | None = None
) -> torch.Tensor:
    """(layers, h): how far the embeddings move when that head alone is removed, 1 - similarity. Introduced in chapter 7."""
    L, h = encoder.config.num_layers, encoder.config.num_heads
    scores = torch.zeros(L, h)
    for layer in range(L):
        for head in range(h):
            removed = torch.zeros(L, h, dtype=torch.bool)
            removed[layer, head] = True
            scores[layer, head] = 1 - similarity_to(encoder, ids, lengths, reference, removed, means)
    return scores


def pruning_curve(
    encoder: Encoder, ids: torch.Tensor, lengths: torch.Tensor, reference: torch.Tensor,
    order: torch.Tensor, counts: list[int], means: torch.Tensor | None = None,
) -> list[float]:
    """Similarity to `reference` after removing the first k heads of `order`, for each k in `counts`. Introduced in chapter 7.

    `order` holds flat head indices layer * h + head, least important first.
    """
    L, h = encoder.config.num_layers, encoder.config.num_heads
    if sorted(order.tolist()) != list(range(L * h)):
        raise ValueError(f"order must hold each of the {L * h} flat head indices once, got {order.tolist()}")
    out = []
    for k in counts:
        if not 0 <= k <= L * h:
            raise ValueError(f"cannot remove {k} of {L * h} heads")
        removed = torch.zeros(L * h, dtype=torch.bool)
        removed[order[:k]] = True
        out.append(similarity_to(encoder, ids, lengths, reference, removed.view(L, h), means))
    return out


PRUNING_RECORD = "ch7_pruning"  # records/ch7_pruning.pt, written by `python -m multihead.realheads`
ABLATION_SIZE = 32  # sentences that choose the order, and as many others that score it
TYPE_SIZE = 240  # the first sentences, which the chapter scores head types on


def ablation_sets() -> tuple[list[str], list[str]]:
    """Two disjoint sets of documentation sentences: one ranks the heads, the other scores the pruning. Introduced in chapter 7.

    They come after the first `TYPE_SIZE`, which the chapter draws its head-type scores from.
    """
    docs = documentation_sentences(TYPE_SIZE + 2 * ABLATION_SIZE)
    return docs[TYPE_SIZE : TYPE_SIZE + ABLATION_SIZE], docs[TYPE_SIZE + ABLATION_SIZE :]


@torch.no_grad()
def full_embeddings(encoder: Encoder, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Sentence embeddings (B, d_model) of the whole model: the reference for `similarity_to`. Introduced in chapter 7."""
    every_head = torch.ones(encoder.config.num_layers, encoder.config.num_heads)  # as similarity_to runs it
    hidden, _ = encoder(ids, lengths, every_head, need_weights=False)  # (B, T, d_model)
    return mean_pool(hidden, lengths)


RANDOM_ORDERS = 5  # seeded random orders: the baseline an importance order must beat


def record_pruning(encoder: Encoder) -> dict:
    """Importance of every head (zero and mean ablation) on one set; pruning curves on the other. Introduced in chapter 7.

    Curves remove 0 to 72 heads, least important first. `RANDOM_ORDERS` more curves remove
    them (zeroed) in seeded random orders: the baseline an importance order must beat.
    """
    choose, score = ablation_sets()
    (_, ids_a, len_a), (_, ids_b, len_b) = tokenize(choose), tokenize(score)
    ref_a, ref_b = full_embeddings(encoder, ids_a, len_a), full_embeddings(encoder, ids_b, len_b)
    means = head_means(encoder, ids_a, len_a)
    n = encoder.config.num_layers * encoder.config.num_heads
    counts = list(range(n + 1))
    record = {"counts": counts, "importance": {}, "curves": {}}
    for mode, m in (("zero", None), ("mean", means)):
        record["importance"][mode] = importance(encoder, ids_a, len_a, ref_a, m)
        order = record["importance"][mode].flatten().argsort()
        record["curves"][mode] = pruning_curve(encoder, ids_b, len_b, ref_b, order, counts, m)
    orders = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(s)) for s in range(RANDOM_ORDERS)])
    record["random"] = {
        "orders": orders,  # (RANDOM_ORDERS, n)
        "curves": [pruning_curve(encoder, ids_b, len_b, ref_b, order, counts) for order in orders],
    }
    return record


def heads_that_can_go(curve: list[float], drop: float) -> int:
    """The most heads removed, along a curve from 0 heads on, before the score falls below 1 - drop. Introduced in chapter 7."""
    for k, value in enumerate(curve):
        if value < 1 - drop:
            return k - 1
    return len(curve) - 1


if __name__ == "__main__":  # make records
    from .experiments import RECORDS
    from .pretrained import load_encoder

    torch.save(record_pruning(load_encoder()), RECORDS / f"{PRUNING_RECORD}.pt")
    print(f"wrote {RECORDS / PRUNING_RECORD}.pt")
