import pytest
import torch
from torch import nn

from multihead import count_parameters
from multihead.data import CAT_SENTENCE, IGNORE, first_minus_previous, first_plus_previous, generator, word_tokens
from multihead.training import (
    TinyAttentionEnsemble,
    TinyAttentionModel,
    token_accuracy,
    token_loss,
    train,
    train_together,
)


def test_word_tokens() -> None:
    assert word_tokens(CAT_SENTENCE) == ["The", "cat", "sat", "on", "the", "mat", "because", "it", "was", "tired", "."]


def test_train_lowers_the_loss_and_is_seeded() -> None:
    def make_batch(rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(32, 4, generator=rng)
        return x, x.sum(-1, keepdim=True)

    def run() -> list[float]:
        torch.manual_seed(0)
        return train(nn.Linear(4, 1), make_batch, nn.functional.mse_loss, steps=200, lr=0.05, seed=1)

    losses = run()
    assert losses[-1] < 0.01 * losses[0]
    assert losses == run()
    assert torch.equal(torch.randn(3, generator=generator(5)), torch.randn(3, generator=generator(5)))


def test_train_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="steps=0"):
        train(nn.Linear(1, 1), lambda rng: (torch.ones(1, 1), torch.ones(1, 1)), nn.functional.mse_loss, steps=0)


def test_first_minus_previous_targets() -> None:
    x, y = first_minus_previous(3, 6, 7, generator(0))
    assert x.shape == y.shape == (3, 6) and x.max() < 7
    assert (y[:, 0] == IGNORE).all()
    for t in range(1, 6):
        assert torch.equal(y[:, t], (x[:, t - 1] - x[:, 0]) % 7)
    with pytest.raises(ValueError, match="seq_len >= 2"):
        first_minus_previous(1, 1, 5, generator(0))


def test_first_plus_previous_has_the_same_tokens_and_sum_targets() -> None:
    x, y = first_plus_previous(3, 6, 7, generator(0))
    assert torch.equal(x, first_minus_previous(3, 6, 7, generator(0))[0])
    assert (y[:, 0] == IGNORE).all()
    for t in range(1, 6):
        assert torch.equal(y[:, t], (x[:, t - 1] + x[:, 0]) % 7)
    with pytest.raises(ValueError, match="vocab_size >= 2"):
        first_plus_previous(1, 4, 1, generator(0))


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_tiny_model_shapes_and_equal_parameters(num_heads: int) -> None:
    model = TinyAttentionModel(vocab_size=12, seq_len=10, d_model=32, num_heads=num_heads)
    x, y = first_minus_previous(5, 10, 12, generator(0))
    logits = model(x)
    assert logits.shape == (5, 10, 12)
    assert count_parameters(model) == count_parameters(TinyAttentionModel(12, 10, 32, 1))
    loss = token_loss(logits, y)
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits[:, 1:].flatten(0, 1), y[:, 1:].flatten()))


def test_token_accuracy_skips_ignored_positions() -> None:
    targets = torch.tensor([[IGNORE, 1, 2]])
    logits = torch.zeros(1, 3, 3)
    logits[0, 1, 1] = logits[0, 2, 0] = 1.0  # position 1 right, position 2 wrong
    assert token_accuracy(logits, targets) == 0.5


def test_four_heads_learn_the_two_role_task() -> None:
    """The chapter 1 experiment in small: a four-head model learns (x[t-1] - x[0]) mod V."""
    torch.manual_seed(0)
    model = TinyAttentionModel(12, 10, 32, 4)
    losses = train(model, lambda rng: first_minus_previous(64, 10, 12, rng), token_loss, steps=600, seed=0)
    x, y = first_minus_previous(512, 10, 12, generator(99))
    assert losses[-1] < 0.3 * losses[0]
    assert token_accuracy(model(x), y) > 0.9


def test_story_sentences_and_vocabulary() -> None:
    from multihead.data import Vocabulary, next_token_windows, story_sentences

    sentences = story_sentences(50, generator(0))
    assert sentences == story_sentences(50, generator(0)) and len(set(sentences)) > 30
    vocab = Vocabulary.from_sentences(sentences)
    ids = vocab.encode(sentences[0])
    assert " ".join(vocab.decode(ids)) == sentences[0].lower()
    with pytest.raises(ValueError, match="not in the vocabulary: \\['zebra'\\]"):
        vocab.encode("the zebra")
    stream = vocab.encode(" ".join(sentences))
    x, y = next_token_windows(stream, 4, 8, generator(1))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one token


def test_head_mask_removes_exactly_one_term() -> None:
    from multihead import MultiHeadAttention, merge_heads, scaled_dot_product_attention, split_heads

    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    keep = torch.tensor([1.0, 0.0, 1.0, 1.0])
    q, k, v = (split_heads(W(x), 4) for W in (mha.W_q, mha.W_k, mha.W_v))
    heads, _ = scaled_dot_product_attention(q, k, v)
    heads[:, 1] = 0.0
    torch.testing.assert_close(mha(x, head_mask=keep), mha.W_o(merge_heads(heads)))
    torch.testing.assert_close(mha(x, head_mask=keep, return_attention=True)[0], mha(x, head_mask=keep))
    with pytest.raises(ValueError, match=r"head_mask must have shape \(num_heads=4,\), got \(3,\)"):
        mha(x, head_mask=torch.ones(3))


def test_ablation_and_pruning_agree() -> None:
    from multihead.analysis import ablation_losses, head_profile, pruning_curve, uniform_causal

    torch.manual_seed(0)
    model = TinyAttentionModel(10, 6, 16, 4, causal=True)
    x = torch.randint(10, (8, 6))
    y = torch.randint(10, (8, 6))
    increase = ablation_losses(model, x, y)
    curve = pruning_curve(model, x, y, [2])
    torch.testing.assert_close(torch.tensor(curve[1] - curve[0]), increase[2])
    profile = head_profile(uniform_causal(6).expand(8, 4, 6, 6), {"all": torch.ones(8, 6, dtype=torch.bool)})
    torch.testing.assert_close(profile["all"], torch.ones(4))
    torch.testing.assert_close(profile["first token"], profile["same position"])  # even spread: equal
    attn = model.attention_weights(x)
    assert attn.shape == (8, 4, 6, 6) and (attn.triu(1) == 0).all()  # causal


def test_train_together_matches_separate_runs() -> None:
    """Three seeds trained in one batched pass follow the runs that train() makes one by one."""
    vocab, seq_len, d_model, steps, seeds = 6, 5, 16, 20, (0, 1, 2)

    def make_batch(rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return first_minus_previous(8, seq_len, vocab, rng)

    def fresh(seed: int) -> TinyAttentionModel:
        torch.manual_seed(seed)
        return TinyAttentionModel(vocab, seq_len, d_model, 2)

    together = [fresh(s) for s in seeds]
    losses = train_together(together, make_batch, token_loss, steps=steps, seeds=seeds)
    assert losses.shape == (3, steps)
    for i, seed in enumerate(seeds):
        alone = fresh(seed)
        torch.testing.assert_close(losses[i], torch.tensor(train(alone, make_batch, token_loss, steps=steps, seed=seed)))
        # Parameters are not compared: W_k's bias has a zero gradient up to rounding (softmax ignores
        # a constant added to every score), and Adam scales that noise up to full-size steps.
        x, _ = make_batch(generator(99))
        with torch.no_grad():
            torch.testing.assert_close(together[i](x), alone(x), atol=1e-4, rtol=1e-4)
        assert not together[i].training
    assert not torch.allclose(losses[0], losses[1])  # different seeds, different runs


def test_train_together_rejects_mismatched_inputs() -> None:
    def make_batch(rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return first_minus_previous(2, 4, 5, rng)

    models = [TinyAttentionModel(5, 4, 8, 2), TinyAttentionModel(5, 4, 16, 2)]
    with pytest.raises(ValueError, match="one configuration"):
        train_together(models, make_batch, token_loss, steps=2, seeds=(0, 1))
    with pytest.raises(ValueError, match="2 models and 1 seeds"):
        train_together(models, make_batch, token_loss, steps=2, seeds=(0,))
    with pytest.raises(ValueError, match="steps=0"):
        train_together(models[:1], make_batch, token_loss, steps=0, seeds=(0,))
    dropping = TinyAttentionModel(5, 4, 8, 2)
    dropping.attention.dropout = 0.1
    with pytest.raises(ValueError, match="dropout=0.1"):
        train_together([dropping], make_batch, token_loss, steps=2, seeds=(0,))


@pytest.mark.parametrize("causal", [False, True])
def test_an_ensemble_computes_what_each_member_computes(causal: bool) -> None:
    models = [TinyAttentionModel(7, 6, 16, 4, causal=causal) for _ in range(3)]
    ensemble = TinyAttentionEnsemble(models)
    tokens = torch.randint(7, (3, 5, 6))  # (E, B, T)
    logits = ensemble(tokens)  # (E, B, T, V)
    assert logits.shape == (3, 5, 6, 7)
    for e, model in enumerate(models):
        torch.testing.assert_close(logits[e], model(tokens[e]))
