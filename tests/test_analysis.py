"""Chapter 6's grammar, its entropy floor, the corpus split, head scores and ablations."""

import itertools
import math

import pytest
import torch

from multihead.analysis import (
    ablated_logits,
    ablation_losses,
    conditional_score,
    earlier_copies,
    head_outputs,
    head_parameters,
    mean_head_outputs,
    pruning_curve,
    token_dependence,
    uniform_causal,
)
from multihead.data import (
    TEMPLATES,
    generator,
    grammar_sentences,
    sample_sentences,
    split_sentences,
    story_corpus,
    story_sentences,
    window_entropy,
    word_tokens,
)
from multihead import MultiHeadAttention, bugs, causal_mask
from multihead.heads import merge_heads
from multihead.training import TinyAttentionModel, token_loss, train_story_models


def test_grammar_sentences_are_what_story_sentences_draws() -> None:
    grammar = grammar_sentences()
    assert len(grammar) == 2392 and math.isclose(sum(grammar.values()), 1.0)
    drawn = story_sentences(6000, generator(0))
    assert set(drawn) <= set(grammar)
    # each template is drawn with probability 1/6: compare the grammar's mass with the draws
    markers = ["gave", "because", "walked", "near", "followed", "so"]  # one word per template
    for template, marker in zip(TEMPLATES, markers, strict=True):
        assert marker in template.split()
        mass = sum(p for s, p in grammar.items() if marker in s.split())
        share = sum(marker in s.split() for s in drawn) / len(drawn)
        assert math.isclose(mass, 1 / 6) and abs(share - mass) < 0.02, (template, mass, share)
    top = max(grammar, key=grammar.get)  # a "the {animal} sat ..." sentence: 1/6 * 1/64
    assert math.isclose(grammar[top], 1 / 384) and abs(drawn.count(top) / 6000 - 1 / 384) < 0.003


def _brute_force_entropy(sentences: dict[str, float], n: int) -> float:
    """H(token n | tokens 0..n-1) of a window starting at a random token, by listing every window."""
    words = {s: word_tokens(s) for s in sentences}
    mean_len = sum(p * len(words[s]) for s, p in sentences.items())
    joint: dict[tuple[str, ...], float] = {}
    shortest = min(len(w) for w in words.values())
    for s, p in sentences.items():
        for offset in range(len(words[s])):
            head = words[s][offset:]
            more = math.ceil(max(0, n + 1 - len(head)) / shortest)
            for rest in itertools.product(sentences, repeat=more):
                q = p / mean_len * math.prod(sentences[r] for r in rest)
                window = tuple((head + [w for r in rest for w in words[r]])[: n + 1])
                joint[window] = joint.get(window, 0.0) + q
    context: dict[tuple[str, ...], float] = {}
    for window, q in joint.items():
        context[window[:-1]] = context.get(window[:-1], 0.0) + q
    return -sum(q * math.log(q / context[w[:-1]]) for w, q in joint.items())


def test_window_entropy_matches_listing_every_window() -> None:
    toy = {"a b a .": 0.5, "b a b .": 0.3, "a a .": 0.2}  # contexts that hide where a sentence starts
    entropy = window_entropy(toy, 6)
    expected = torch.tensor([_brute_force_entropy(toy, n) for n in range(1, 7)], dtype=torch.float64)
    torch.testing.assert_close(entropy, expected)
    assert (entropy.diff() <= 1e-12).all()  # more context never hurts
    two = window_entropy({"a b .": 0.5, "a c .": 0.5}, 3)
    torch.testing.assert_close(two, torch.full((3,), math.log(2) / 3, dtype=torch.float64))


def test_window_entropy_of_the_grammar_reaches_the_entropy_rate() -> None:
    grammar = grammar_sentences()
    entropy = window_entropy(grammar, 16)
    lengths = {s: len(word_tokens(s)) for s in grammar}
    rate = -sum(p * math.log(p) for p in grammar.values()) / sum(p * lengths[s] for s, p in grammar.items())
    assert math.isclose(entropy[-1].item(), rate, rel_tol=1e-9) and 0.64 < rate < 0.66
    assert entropy[0] > entropy.mean() > rate


def test_window_entropy_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        window_entropy({"a .": 0.5}, 4)
    with pytest.raises(ValueError, match="must end with '.'"):
        window_entropy({"a . b": 1.0}, 4)
    with pytest.raises(ValueError, match="seq_len=0"):
        window_entropy({"a .": 1.0}, 0)


def test_split_and_sample() -> None:
    grammar = grammar_sentences()
    a, b, rest = split_sentences(grammar, [100, 50], generator(0))
    assert (len(a), len(b), len(rest)) == (100, 50, len(grammar) - 150)
    assert not (set(a) & set(b) or set(a) & set(rest) or set(b) & set(rest))
    assert set(a) | set(b) | set(rest) == set(grammar) and all(a[s] == grammar[s] for s in a)
    drawn = sample_sentences(a, 500, generator(1))
    assert set(drawn) <= set(a) and drawn == sample_sentences(a, 500, generator(1))
    with pytest.raises(ValueError, match="sizes="):
        split_sentences(grammar, [len(grammar)], generator(0))
    with pytest.raises(ValueError, match="count=0"):
        sample_sentences(a, 0, generator(0))


def test_story_corpus_keeps_the_splits_apart() -> None:
    corpus = story_corpus()
    assert len(corpus.vocab.words) == 56
    train, val, test = (set(corpus.sentences[k]) for k in ("train", "validation", "test"))
    assert not (train & test or train & val or val & test)
    assert train <= set(corpus.pools["train"]) and test <= set(corpus.pools["test"])
    joined = corpus.vocab.encode(" ".join(corpus.sentences["test"]))
    assert torch.equal(corpus.streams["test"], joined)


def test_earlier_copies_and_conditional_score() -> None:
    #         a  b  .  a  b  a   (ids: a=0, b=1, .=2)
    tokens = torch.tensor([[0, 1, 2, 0, 1, 0]])
    targets = torch.tensor([[1, 2, 0, 1, 0, 1]])
    keys = earlier_copies(tokens, targets, end=2)  # (1, T, T)
    expected = torch.zeros(1, 6, 6, dtype=torch.bool)
    expected[0, 4, 3] = True  # query "b" (t=4) predicts "a": the "a" at 3, same sentence
    expected[0, 5, 4] = True  # query "a" (t=5) predicts "b": the "b" at 4
    # t=0 predicts "b": not seen yet; t=2 is "." (next sentence); t=3 predicts "b": not in this sentence
    assert torch.equal(keys, expected)
    uniform = uniform_causal(6).expand(1, 2, 6, 6)  # (B, h, T, T)
    torch.testing.assert_close(conditional_score(uniform, keys), torch.full((2,), (1 / 5 + 1 / 6) / 2))
    with pytest.raises(ValueError, match="no query"):
        conditional_score(uniform, torch.zeros(1, 6, 6, dtype=torch.bool))


def _model() -> TinyAttentionModel:
    torch.manual_seed(0)
    return TinyAttentionModel(10, 6, 16, 4, causal=True).eval()


def test_head_outputs_add_up_to_the_attention_layer() -> None:
    model = _model()
    tokens = torch.randint(10, (3, 6), generator=generator(0))
    heads = head_outputs(model, tokens)  # (B, h, T, d_k)
    assert heads.shape == (3, 4, 6, 4)
    x = model.embed(tokens)
    with torch.no_grad():
        expected = model.attention(x, mask=model.attention_mask(tokens))
    torch.testing.assert_close(model.attention.W_o(merge_heads(heads)).detach(), expected)
    torch.testing.assert_close(mean_head_outputs(model, tokens), heads.mean(dim=0))


def test_mean_and_zero_ablation() -> None:
    model = _model()
    tokens = torch.randint(10, (1, 6), generator=generator(1))
    keep = torch.tensor([1.0, 0.0, 1.0, 0.0])
    with torch.no_grad():
        plain = model(tokens)
        # replacing heads by their own outputs on this very sequence changes nothing
        own = head_outputs(model, tokens)[0]  # (h, T, d_k)
        torch.testing.assert_close(ablated_logits(model, tokens, keep, own), plain)
        torch.testing.assert_close(ablated_logits(model, tokens, keep), model(tokens, head_mask=keep))
        # a mean of zeros is zero-ablation
        zeros = torch.zeros(4, 6, 4)
        torch.testing.assert_close(ablated_logits(model, tokens, keep, zeros), ablated_logits(model, tokens, keep))
        torch.testing.assert_close(model(tokens), plain)  # the hook is gone
    targets = torch.randint(10, (1, 6), generator=generator(2))
    means = mean_head_outputs(model, torch.randint(10, (8, 6), generator=generator(3)))
    increase = ablation_losses(model, tokens, targets, means)
    curve = pruning_curve(model, tokens, targets, [3], means)
    torch.testing.assert_close(torch.tensor(curve[1] - curve[0]), increase[3])
    assert math.isclose(curve[0], token_loss(plain, targets).item())
    with pytest.raises(ValueError, match="keep must have shape"):
        ablated_logits(model, tokens, torch.ones(3))
    with pytest.raises(ValueError, match="means must be"):
        ablated_logits(model, tokens, keep, torch.zeros(4, 2, 4))


def test_train_story_models_is_seeded_and_leaves_the_global_generator() -> None:
    corpus = story_corpus()
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    models, losses = train_story_models(corpus, [0, 1], steps=30, d_model=16)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert losses.shape == (2, 30) and losses[:, -5:].mean() < losses[:, 0].mean()
    again, _ = train_story_models(corpus, [0, 1], steps=30, d_model=16)
    for a, b in zip(models, again):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert models[0].causal and not models[0].training


def test_token_dependence_reads_the_mask_off_a_layer() -> None:
    torch.manual_seed(0)
    T, mha = 6, MultiHeadAttention(16, 4)
    x = torch.randn(1, T, 16)
    causal = token_dependence(lambda x: mha(x, mask=causal_mask(T)), x)
    assert causal.dtype == torch.bool and torch.equal(causal, torch.ones(T, T, dtype=torch.bool).tril())
    assert token_dependence(mha, x).all()
    assert torch.equal(token_dependence(lambda x: x * 2, x), torch.eye(T, dtype=torch.bool))


def test_token_dependence_of_the_split_without_transpose() -> None:
    """Row s of head i holds a piece of token (i T + s) // h, so position t reads tokens i T / h .. (i T + t) // h."""
    torch.manual_seed(0)
    T, h, mha = 8, 4, MultiHeadAttention(16, 4)
    seen = token_dependence(lambda x: bugs.forward_1(mha, x, causal_mask(T)), torch.randn(1, T, 16))
    expected = torch.zeros(T, T, dtype=torch.bool)
    for t, i in itertools.product(range(T), range(h)):
        expected[t, i * T // h : (i * T + t) // h + 1] = True
    assert torch.equal(seen, expected)
    assert seen.triu(1).any()  # a position reads a later token


def test_token_dependence_rejects_other_shapes() -> None:
    with pytest.raises(ValueError, match=r"one sequence of shape \(1, T, d_in\), got \(2, 3, 4\)"):
        token_dependence(lambda x: x, torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"must return \(1, T=3, d_out\), got \(1, 4\)"):
        token_dependence(lambda x: x.sum(1), torch.randn(1, 3, 4))


def test_head_parameters_are_views_of_each_heads_rows_and_columns() -> None:
    mha = MultiHeadAttention(8, 2)
    shares = head_parameters(mha)
    assert {name: tuple(w.shape) for name, w in shares.items()} == {
        "W_q.weight": (2, 4, 8), "W_q.bias": (2, 4), "W_k.weight": (2, 4, 8), "W_k.bias": (2, 4),
        "W_v.weight": (2, 4, 8), "W_v.bias": (2, 4), "W_o.weight": (2, 8, 4),
    }
    torch.testing.assert_close(shares["W_v.weight"][1], mha.W_v.weight[4:])
    torch.testing.assert_close(shares["W_o.weight"][1], mha.W_o.weight[:, 4:])
    with torch.no_grad():
        shares["W_o.weight"][0] = 0.0  # a view: the layer changes
    assert (mha.W_o.weight[:, :4] == 0).all() and (mha.W_o.weight[:, 4:] != 0).all()


def test_copied_heads_get_equal_gradients() -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2)
    with torch.no_grad():
        for w in head_parameters(mha).values():
            w.copy_(w[:1].expand_as(w).clone())
    mha(torch.randn(3, 5, 8), mask=causal_mask(5)).square().sum().backward()
    for name, g in head_parameters(mha, grad=True).items():
        assert g.abs().sum() > 0 and torch.equal(g[0], g[1]), name


def test_head_parameters_rejects_what_it_cannot_split() -> None:
    with pytest.raises(ValueError, match="num_kv_heads=1"):
        head_parameters(MultiHeadAttention(8, 2, num_kv_heads=1))
    with pytest.raises(ValueError, match="bias=False"):
        head_parameters(MultiHeadAttention(8, 2, bias=False))
    with pytest.raises(ValueError, match="call backward"):
        head_parameters(MultiHeadAttention(8, 2), grad=True)
