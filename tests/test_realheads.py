"""What the heads of all-MiniLM-L6-v2 do: the scores, the ablations and the recorded pruning."""

import pytest
import torch

from multihead import realheads
from multihead.experiments import RECORDS
from multihead.pretrained import load_encoder, tokenize
from multihead.realheads import (
    KINDS,
    ablation_sets,
    documentation_sentences,
    full_embeddings,
    head_means,
    head_type_scores,
    heads_that_can_go,
    importance,
    pronoun_scores,
    pronoun_weights,
    pronoun_sentences,
    pruning_curve,
    removal,
    similarity_to,
)


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


def test_documentation_sentences_are_plain_distinct_and_seeded() -> None:
    docs = documentation_sentences(300)
    assert len(set(docs)) == 300
    assert all(8 <= len(s.split()) <= 20 and s.endswith(".") for s in docs)
    assert documentation_sentences(300) == docs
    assert documentation_sentences(300, seed=1) != docs
    with pytest.raises(ValueError, match="n=100000: the documentation has"):
        documentation_sentences(100_000)
    with pytest.raises(ValueError, match="n=-1"):
        documentation_sentences(-1)


def test_every_noun_and_pronoun_is_one_word_piece() -> None:
    examples = [e for frame in ("did", "felt") for p in ("it", "she") for e in pronoun_sentences(50, frame, p)]
    tokens, _, _ = tokenize([sentence for sentence, *_ in examples])
    for pieces, (sentence, pronoun, meant, other) in zip(tokens, examples):
        assert [pieces.count(w) for w in (pronoun, meant, other)] == [1, 1, 1], sentence
    assert pronoun_sentences(1, "did", "it")[0][2] in realheads.THINGS
    assert pronoun_sentences(1, "did", "she")[0][2] in realheads.WOMEN
    with pytest.raises(ValueError, match="frame='who'"):
        pronoun_sentences(1, "who", "it")


def test_head_type_scores_of_a_known_head_and_chance(encoder) -> None:
    texts = ["The cat sat on the mat, and the cat slept.", "A dog ran."]
    scores = head_type_scores(encoder, texts, batch_size=1)
    assert set(scores) == set(KINDS)
    tokens, weights, lengths = realheads.weights_of(encoder, texts[1:])
    n = int(lengths[0])  # [CLS] a dog ran . [SEP]: queries 1..4
    previous = sum(weights[0, 0, 2, q, q - 1] for q in range(2, n - 1))  # layer 0, head 2
    # both texts together: recompute from the weights of each, to check the bookkeeping
    first, w_first, len_first = realheads.weights_of(encoder, texts[:1])
    m = int(len_first[0])
    previous += sum(w_first[0, 0, 2, q, q - 1] for q in range(2, m - 1))
    queries = (n - 3) + (m - 3)
    torch.testing.assert_close(scores["previous"][0][0, 2], previous / queries)
    torch.testing.assert_close(torch.tensor(scores["previous"][1]), torch.tensor(((n - 3) / n + (m - 3) / m) / queries))
    assert scores["[CLS]"][1] == pytest.approx(((n - 2) / n + (m - 2) / m) / (n - 2 + m - 2))
    # in the first text "the" comes 3 times (2 other copies each) and "cat" twice (1 other)
    assert scores["same word"][1] == pytest.approx((3 * 2 / m + 2 * 1 / m) / 5)


def test_pronoun_scores_count_the_sentences_where_the_pronoun_weighs_its_noun_higher(encoder) -> None:
    examples = pronoun_sentences(8, "felt", "she")
    tokens, weights, _ = realheads.weights_of(encoder, [s for s, *_ in examples])
    expected = torch.zeros(6, 12)
    for b, (pieces, (_, pronoun, meant, other)) in enumerate(zip(tokens, examples)):
        assert pronoun == "she" and meant in realheads.WOMEN and other in realheads.THINGS
        q = pieces.index("she")
        expected += (weights[:, b, :, q, pieces.index(meant)] > weights[:, b, :, q, pieces.index(other)]).float()
    torch.testing.assert_close(pronoun_scores(encoder, examples), expected / 8)


def test_pronoun_weights_are_the_mean_weights_on_the_two_nouns(encoder) -> None:
    examples = pronoun_sentences(6, "did", "it")
    tokens, weights, _ = realheads.weights_of(encoder, [s for s, *_ in examples])
    meant, other = pronoun_weights(encoder, examples)
    for got, noun in ((meant, 2), (other, 3)):  # examples hold (sentence, pronoun, meant, other)
        by_hand = [weights[:, i, :, t.index("it"), t.index(examples[i][noun])] for i, t in enumerate(tokens)]
        torch.testing.assert_close(got, torch.stack(by_hand).mean(0))  # (layers, h)


def test_a_noun_that_is_not_one_word_piece_is_named(encoder) -> None:
    sentence = "The trophy did not fit in the suitcase because it was too big."
    assert pronoun_scores(encoder, [(sentence, "it", "Trophy", "suitcase")]).shape == (6, 12)
    with pytest.raises(ValueError, match=r"'suitcases' must be one word piece, once, in .*word pieces are"):
        pronoun_weights(encoder, [(sentence, "it", "trophy", "suitcases")])
    with pytest.raises(ValueError, match="'the' must be one word piece, once"):
        pronoun_scores(encoder, [(sentence, "it", "the", "trophy")])


def test_mean_ablation_replaces_the_head_by_its_mean(encoder) -> None:
    """The shift that `removal` adds is what W_o makes of the removed head's mean output."""
    _, ids, lengths = tokenize(["The lamp pleased the woman because it was new.", "A dog ran."])
    means = head_means(encoder, ids, lengths)  # (6, 12, 32)
    assert means.shape == (6, 12, 32)
    removed = torch.zeros(6, 12, dtype=torch.bool)
    removed[3, 4] = True
    head_mask, shift = removal(encoder, removed, means)
    assert head_mask[3, 4] == 0 and head_mask.sum() == 71
    torch.testing.assert_close(shift[3], encoder.layers[3].attention.W_o.weight[:, 4 * 32 : 5 * 32] @ means[3, 4])
    assert shift[[0, 1, 2, 4, 5]].abs().max() == 0
    assert removal(encoder, removed)[1] is None  # zero ablation: no shift
    # the per-head means, recomputed by hand for layer 0 from the embeddings
    with torch.no_grad():
        x = encoder.embed(ids)
        _, w = encoder.layers[0].attention(x, mask=realheads.padding_mask(lengths, ids.shape[1]), return_attention=True)
        v = encoder.layers[0].attention.W_v(x).view(2, -1, 12, 32).transpose(1, 2)  # (B, h, T, d_k)
        out = w @ v  # (B, h, T, d_k)
        real = [out[b, :, : int(n)] for b, n in enumerate(lengths)]  # (h, n_b, d_k) each
        by_hand = torch.cat(real, dim=1).mean(1)  # (h, d_k)
    torch.testing.assert_close(means[0], by_hand)


def test_removing_nothing_keeps_the_model_and_everything_moves_it(encoder) -> None:
    _, ids, lengths = tokenize(["The weather is lovely today.", "He drove to the stadium."])
    reference = full_embeddings(encoder, ids, lengths)
    none = torch.zeros(6, 12, dtype=torch.bool)
    assert similarity_to(encoder, ids, lengths, reference, none) == pytest.approx(1.0, abs=1e-6)
    order = torch.arange(72)
    curve = pruning_curve(encoder, ids, lengths, reference, order, [0, 36, 72])
    assert curve[0] == pytest.approx(1.0, abs=1e-6) and curve[2] < curve[0] - 0.1
    with pytest.raises(ValueError, match="cannot remove 73 of 72 heads"):
        pruning_curve(encoder, ids, lengths, reference, order, [73])
    with pytest.raises(ValueError, match="each of the 72 flat head indices once"):
        pruning_curve(encoder, ids, lengths, reference, torch.zeros(72, dtype=torch.long), [1])


def test_heads_that_can_go() -> None:
    curve = [1.0, 0.995, 0.985, 0.96, 0.93, 0.80]
    assert [heads_that_can_go(curve, d) for d in (0.01, 0.05, 0.10, 0.5)] == [1, 3, 4, 5]
    assert heads_that_can_go([1.0, 0.5], 0.01) == 0


def test_ablation_sets_are_disjoint_from_each_other_and_the_chapters_text() -> None:
    choose, score = ablation_sets()
    shown = set(documentation_sentences(realheads.TYPE_SIZE))
    assert len(choose) == len(score) == realheads.ABLATION_SIZE
    assert not set(choose) & set(score) and not (set(choose) | set(score)) & shown


def test_the_record_is_what_the_code_computes_now(encoder) -> None:
    """Re-runs a part of `record_pruning`: importance of a few heads, and points of each curve."""
    record = torch.load(RECORDS / f"{realheads.PRUNING_RECORD}.pt")
    choose, score = ablation_sets()
    (_, ids_a, len_a), (_, ids_b, len_b) = tokenize(choose), tokenize(score)
    ref_a, ref_b = full_embeddings(encoder, ids_a, len_a), full_embeddings(encoder, ids_b, len_b)
    means = head_means(encoder, ids_a, len_a)
    for mode, m in (("zero", None), ("mean", means)):
        recorded = record["importance"][mode]
        assert recorded.shape == (6, 12)
        for layer, head in [(0, 2), (3, 11), (5, 0)]:
            removed = torch.zeros(6, 12, dtype=torch.bool)
            removed[layer, head] = True
            now = 1 - similarity_to(encoder, ids_a, len_a, ref_a, removed, m)
            assert now == pytest.approx(recorded[layer, head].item(), abs=1e-5)
        order = recorded.flatten().argsort()
        points = [10, 40]
        now = pruning_curve(encoder, ids_b, len_b, ref_b, order, points, m)
        assert now == pytest.approx([record["curves"][mode][k] for k in points], abs=1e-5)
    orders = record["random"]["orders"]  # (5, 72)
    assert orders.shape == (realheads.RANDOM_ORDERS, 72) and len(set(map(tuple, orders.tolist()))) == len(orders)
    assert all(sorted(order.tolist()) == list(range(72)) for order in orders)
    now = pruning_curve(encoder, ids_b, len_b, ref_b, orders[-1], [20])
    assert now == pytest.approx([record["random"]["curves"][-1][20]], abs=1e-5)
    assert record["counts"] == list(range(73))
    assert all(len(c) == 73 for c in [record["curves"]["zero"], record["curves"]["mean"], *record["random"]["curves"]])
