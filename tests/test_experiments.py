"""Claims of the chapters' exercise solutions that need a training run too long for a notebook cell.

Chapter 1's exercise "A symmetric task" asks whether the gap between one head and four shrinks
when the task's answer, (x[t-1] + x[0]) mod n_vocab, no longer depends on which token plays
which role. The solution says what this test measures, with chapter 1's protocol: five seeds,
1,500 Adam steps on batches of 64, 2,048 held-out sequences, a task counted as solved at 0.99.
"""

from functools import partial

import torch

from multihead.data import IGNORE, first_minus_previous, generator
from multihead.training import TinyAttentionModel, token_accuracy, token_loss, train_together

N_VOCAB, T, D_MODEL, STEPS, SEEDS, SOLVED = 12, 10, 32, 1500, (0, 1, 2, 3, 4), 0.99


def first_plus_previous(
    batch_size: int, seq_len: int, n_vocab: int, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chapter 1's task with a sum: y[t] = (x[t-1] + x[0]) mod n_vocab, y[0] ignored."""
    x = torch.randint(n_vocab, (batch_size, seq_len), generator=rng)  # (B, T)
    y = torch.full_like(x, IGNORE)  # (B, T)
    y[:, 1:] = (x[:, :-1] + x[:, :1]) % n_vocab  # (B, T-1)
    return x, y


def solved_seeds(task, num_heads: int) -> int:
    """How many of the five seeds reach test accuracy SOLVED on the task."""
    models = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        models.append(TinyAttentionModel(N_VOCAB, T, D_MODEL, num_heads))
    train_together(models, partial(task, 64, T, N_VOCAB), token_loss, steps=STEPS, seeds=SEEDS)
    test_x, test_y = task(2048, T, N_VOCAB, generator(1234))
    with torch.no_grad():
        return sum(token_accuracy(m(test_x), test_y) >= SOLVED for m in models)


def test_one_head_solves_the_symmetric_task_on_more_seeds() -> None:
    difference, symmetric = solved_seeds(first_minus_previous, 1), solved_seeds(first_plus_previous, 1)
    assert symmetric >= 3, f"one head solved the sum task on {symmetric} of {len(SEEDS)} seeds"
    assert symmetric > difference, f"one head: {symmetric} seeds (sum) vs {difference} (difference)"
