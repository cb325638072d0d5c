import pytest
import torch
from torch import nn

from multihead.data import CAT_SENTENCE, generator, word_tokens
from multihead.training import train


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
