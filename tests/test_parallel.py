"""Tensor-parallel attention on real gloo process groups equals the whole module (chapter 11).

Ranks are started once per world size for the whole module, not once per test: starting them
costs a few seconds (each imports torch).
"""

from __future__ import annotations

import multiprocessing
import time

import pytest
import torch
import torch.distributed as dist

from multihead import parallel
from multihead.parallel import HeadParallelAttention, Ranks, check_parallel, head_layout, launch, make_problem

D_MODEL = 48  # divisible by 4, 8 and 12 heads
CLASSIC = {p: [(D_MODEL, h, h, 0) for h in (4, 8, 12) if h % p == 0] for p in (1, 2, 4)}
GQA = {p: [(D_MODEL, 8, kv, 1) for kv in (1, 2, 4)] for p in (2, 4)}  # p < h_kv, p = h_kv, p > h_kv
TIMEOUT = 120.0  # seconds: generous, a busy 2-core machine starts torch slowly in each rank


@pytest.fixture(scope="module")
def groups() -> dict[int, Ranks]:
    """One process group per world size, for every test of this module."""
    started = {p: Ranks(p, timeout=TIMEOUT) for p in (1, 2, 4)}
    yield started
    for ranks in started.values():
        ranks.close()


@pytest.fixture(scope="module")
def runs(groups: dict[int, Ranks]) -> dict[int, tuple[list, list]]:
    """world size p -> (problems, each rank's results for them)."""
    found = {}
    for p, ranks in groups.items():
        problems = CLASSIC[p] + GQA.get(p, [])
        found[p] = (problems, ranks.run(parallel.run_head_parallel, problems))
    return found


def whole(problem: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The single-process module on the same problem: output, input gradient, weight gradients."""
    mha, x = make_problem(*problem)
    x.requires_grad_(True)
    out = mha(x)
    out.pow(2).sum().backward()
    return out.detach(), x.grad, {name: p.grad for name, p in mha.named_parameters()}


@pytest.mark.parametrize("p", [1, 2, 4])
def test_every_rank_returns_the_whole_output_and_input_gradient(runs: dict, p: int) -> None:
    problems, ranks = runs[p]
    for i, problem in enumerate(problems):
        out, x_grad, _ = whole(problem)
        for rank in ranks:
            torch.testing.assert_close(rank[i]["out"], out)
            torch.testing.assert_close(rank[i]["x_grad"], x_grad)


@pytest.mark.parametrize("p", [1, 2, 4])
def test_each_weight_gradient_is_the_ranks_slice_of_the_whole_one(runs: dict, p: int) -> None:
    problems, ranks = runs[p]
    for i, problem in enumerate(problems):
        _, _, grads = whole(problem)
        d_k = problem[0] // problem[1]
        kv_sums: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
        for rank in ranks:
            share, got = rank[i]["share"], rank[i]["grads"]
            q = slice(share.q_start * d_k, share.q_stop * d_k)
            torch.testing.assert_close(got["W_q.weight"], grads["W_q.weight"][q])
            torch.testing.assert_close(got["W_q.bias"], grads["W_q.bias"][q])
            torch.testing.assert_close(got["W_o.weight"], grads["W_o.weight"][:, q])
            torch.testing.assert_close(got["b_o"], grads["W_o.bias"])
            kv = kv_sums.setdefault((share.kv_start, share.kv_stop), {})
            for name in ("W_k.weight", "W_k.bias", "W_v.weight", "W_v.bias"):
                kv[name] = kv.get(name, 0) + got[name]
        for (start, stop), summed in kv_sums.items():  # a replicated KV head: its replicas' gradients add up
            for name, grad in summed.items():
                torch.testing.assert_close(grad, grads[name][start * d_k : stop * d_k])


def test_the_layout_splits_kv_heads_or_replicates_them() -> None:
    assert [(s.q_start, s.q_stop, s.kv_start, s.kv_stop) for s in head_layout(8, 4, 2)] == [(0, 4, 0, 2), (4, 8, 2, 4)]
    assert [(s.kv_start, s.kv_stop) for s in head_layout(8, 2, 2)] == [(0, 1), (1, 2)]
    assert [(s.kv_start, s.kv_stop) for s in head_layout(8, 2, 4)] == [(0, 1), (0, 1), (1, 2), (1, 2)]
    assert [(s.kv_start, s.kv_stop) for s in head_layout(8, 1, 4)] == [(0, 1)] * 4
    assert all(s.num_heads == 2 for s in head_layout(8, 1, 4))


@pytest.mark.parametrize(
    ("h", "h_kv", "p", "named"),
    [(52, 52, 3, ["52", "3"]), (12, 3, 2, ["KV heads (3)", "size (2)"]), (8, 8, 0, ["world_size=0"]), (8, 3, 1, ["3", "8"])],
)
def test_impossible_splits_name_their_sizes(h: int, h_kv: int, p: int, named: list[str]) -> None:
    with pytest.raises(ValueError) as error:
        check_parallel(h, h_kv, p)
    assert all(word in str(error.value) for word in named), str(error.value)


def test_bad_ranks_and_world_sizes_are_refused() -> None:
    mha, _ = make_problem(D_MODEL, 4, 4, 0)
    with pytest.raises(ValueError, match="rank=2 must be an integer in"):
        HeadParallelAttention(mha, 2, 2)
    with pytest.raises(ValueError, match="world_size=0"):
        launch(parallel.run_head_parallel, 0, [])
    with pytest.raises(ValueError, match="timeout=0"):
        Ranks(2, timeout=0)


def test_pytorchs_own_tensor_parallel_api_gives_the_same_output(groups: dict[int, Ranks]) -> None:
    problem = (D_MODEL, 8, 4, 2)
    ranks = groups[2].run(parallel.run_dtensor, problem)
    out, x_grad, _ = whole(problem)
    for rank in ranks:
        torch.testing.assert_close(rank["out"], out)
        torch.testing.assert_close(rank["x_grad"], x_grad)
        assert rank["forward"] == {"all_reduce": 1}, rank["forward"]
        assert rank["backward"] == {"all_reduce": 3}, rank["backward"]  # one per Colwise layer: W_q, W_k, W_v


def fail_on_rank_one(rank: int, world_size: int) -> int:
    if rank == 1:
        raise ValueError("rank 1 cannot go on")
    dist.all_reduce(torch.ones(1))  # rank 0 waits here for a partner that never comes
    return rank


def rank_and_size(rank: int, world_size: int) -> tuple[int, int]:
    return rank, world_size


def hang_on_rank_one(rank: int, world_size: int) -> int:
    if rank == 1:
        time.sleep(3600)
    return rank


def test_a_failing_rank_stops_every_rank_and_shows_its_error() -> None:
    before = set(multiprocessing.active_children())  # the module's own groups
    with pytest.raises(RuntimeError) as error:
        launch(fail_on_rank_one, 2, timeout=TIMEOUT)
    assert "rank 1 of 2 failed" in str(error.value) and "rank 1 cannot go on" in str(error.value)
    assert set(multiprocessing.active_children()) <= before, "a rank is still running"


def test_ranks_answer_several_calls_and_refuse_work_once_closed() -> None:
    before = set(multiprocessing.active_children())
    ranks = Ranks(2, timeout=TIMEOUT)
    assert ranks.run(rank_and_size) == [(0, 2), (1, 2)]
    assert ranks.run(rank_and_size) == [(0, 2), (1, 2)]  # the same processes, a second time
    ranks.close()
    assert set(multiprocessing.active_children()) <= before, "a rank is still running"
    with pytest.raises(RuntimeError, match="closed"):
        ranks.run(rank_and_size)


def test_a_hanging_rank_is_stopped_at_the_timeout() -> None:
    before = set(multiprocessing.active_children())
    start = time.monotonic()
    with pytest.raises(TimeoutError) as error:
        launch(hang_on_rank_one, 2, timeout=5.0)
    assert "did not finish within 5.0 s" in str(error.value) and "1" in str(error.value).split("]")[0]
    assert time.monotonic() - start < 5.0 + 2 * parallel.GRACE + 5
    assert set(multiprocessing.active_children()) <= before, "a rank is still running"
