"""Claims that need training runs too long for a notebook cell, and the records that hold such runs.

Chapter 1's exercise "A symmetric task" asks whether the gap between one head and four shrinks
when the task's answer, (x[t-1] + x[0]) mod n_vocab, no longer depends on which token plays
which role. The solution says what the first test measures, with chapter 1's protocol (its
recorded experiment: ten seeds, 6,000 Adam steps, a task counted as solved at 0.99).
The tests after it check the records themselves, and re-train each recorded experiment to
check that the chapters' conclusions hold on the machine that runs the tests.
"""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from multihead.experiments import (
    EXPERIMENTS,
    HEADS,
    SWEEP,
    Experiment,
    Run,
    first_step_below,
    load,
    machine,
    record,
    replay,
    save,
)
from multihead.training import token_accuracy

SOLVED = 0.99  # the test accuracy that counts as solving the task, as in chapters 1 and 8


def solved(run: Run, h: int) -> list[bool]:
    """Per seed: did the model with h heads reach SOLVED on the experiment's held-out set?"""
    x, y = run.experiment.test_set()
    with torch.no_grad():
        return [token_accuracy(m(x), y) >= SOLVED for m in run.models[h]]


def test_one_head_solves_the_symmetric_task_on_more_seeds() -> None:
    difference = sum(solved(load(HEADS), 1))
    symmetric = sum(solved(record(replace(HEADS, name="sum", task="sum", heads=(1,))), 1))  # minutes
    assert symmetric >= 8, f"one head solved the sum task on {symmetric} of {len(HEADS.seeds)} seeds"
    assert symmetric > difference, f"one head: {symmetric} seeds (sum) vs {difference} (difference)"


# The recorded experiments of chapters 1 and 8 (multihead.experiments).

TINY = replace(HEADS, name="tiny", seeds=(0, 1), steps=30)  # trains in a second


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda e: e.name)
def test_each_record_holds_every_run_of_its_experiment(experiment: Experiment) -> None:
    run = load(experiment)
    assert sorted(run.models) == sorted(experiment.heads)
    for h in experiment.heads:
        assert len(run.models[h]) == len(experiment.seeds)
        assert [m.attention.num_heads for m in run.models[h]] == [h] * len(experiment.seeds)
        assert run.losses[h].shape == (len(experiment.seeds), experiment.steps // experiment.block)


def test_a_saved_run_loads_back_with_the_same_models_and_losses(tmp_path: Path) -> None:
    original = record(TINY)
    save(original, tmp_path)
    loaded = load(TINY, tmp_path)
    x, _ = TINY.test_set(8)
    for h in TINY.heads:
        torch.testing.assert_close(loaded.losses[h], original.losses[h], rtol=0, atol=0)
        for a, b in zip(original.models[h], loaded.models[h]):
            torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
    assert loaded.made_on == original.made_on == machine()


def test_load_refuses_a_missing_record_and_one_of_other_settings(tmp_path: Path) -> None:
    save(record(TINY), tmp_path)
    with pytest.raises(ValueError, match=r"lr.*make records"):
        load(replace(TINY, lr=1e-2), tmp_path)
    with pytest.raises(ValueError, match="no record .*missing.pt"):
        load(replace(TINY, name="missing"), tmp_path)


def test_replay_gives_the_first_steps_of_a_full_run() -> None:
    full, first = record(TINY), replay(TINY, 10)
    for h in TINY.heads:
        torch.testing.assert_close(first[h], full.losses[h][:, :1], rtol=0, atol=0)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"heads": (3,)}, r"heads=\(3,\) must be positive divisors of d_model=32"),
        ({"heads": ()}, r"heads=\(\)"),
        ({"steps": 25}, "steps=25 divisible by block=10"),
        ({"seeds": ()}, r"need seeds \(got \(\)\)"),
        ({"task": "product"}, "task='product' is not one of"),
    ],
)
def test_an_experiment_names_impossible_settings(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(TINY, **settings)


def test_train_refuses_steps_that_are_not_whole_blocks() -> None:
    with pytest.raises(ValueError, match="steps=15 must be a positive multiple of block=10"):
        TINY.train(1, 15)


def test_first_step_below_reports_the_end_of_the_first_window_below_the_level() -> None:
    curve = torch.tensor([3.0, 3.0, 1.0, 0.0, 0.0, 0.0, 0.0])  # block means
    assert first_step_below(curve, 0.5, block=10, window=2) == 50  # blocks 2-3 average 0.5, not below; 3-4: 0
    assert first_step_below(curve, 2.5, block=10, window=2) == 30  # blocks 1-2 average 2.0
    assert first_step_below(curve, -1.0, block=10, window=2) is None


def test_chapter_1_conclusion_holds_when_the_experiment_is_trained_again() -> None:
    run = record(HEADS)  # minutes: the whole recorded experiment, on this machine
    four, one = sum(solved(run, 4)), sum(solved(run, 1))
    assert four == len(HEADS.seeds), f"four heads solved {four} of {len(HEADS.seeds)} seeds"
    assert one <= len(HEADS.seeds) - 2, f"one head solved {one} of {len(HEADS.seeds)} seeds"


def test_chapter_7_conclusions_hold_when_the_sweep_is_trained_again() -> None:
    run = record(SWEEP)  # minutes
    steps = {h: [first_step_below(c, 0.1, SWEEP.block) for c in run.losses[h]] for h in SWEEP.heads}
    assert None not in steps[4] + steps[32], steps
    assert min(steps[32]) > max(steps[4]), steps
    for h in SWEEP.heads[1:]:
        assert all(solved(run, h)), f"h={h} fell short of {SOLVED} on some seed"
    assert not all(solved(run, 1)), "a single head solved the sweep's task on every seed"
