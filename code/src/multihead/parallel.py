"""Heads across processes: tensor-parallel attention with torch.distributed (chapter 11).

Concatenation followed by W^O is a sum over heads (chapter 4), so p processes can each keep h/p
heads, with their rows of W^Q, W^K, W^V and their columns of W^O, compute their heads' share of
the output, and add the shares with one all-reduce (Megatron-LM, Shoeybi et al. 2019, section 3).

`Ranks` and `launch` run a function on p local processes over gloo, on the CPU.
`HeadParallelAttention` is one rank's part of a `MultiHeadAttention`, built from Megatron's two
conjugate operators `copy_to_ranks` (f) and `sum_over_ranks` (g); those would run unchanged in
an NCCL process group on GPUs (under torchrun, say).
"""

from __future__ import annotations

import io
import queue
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from .heads import is_positive_int, merge_heads, split_heads
from .module import MultiHeadAttention

GRACE = 5.0  # seconds a terminated rank gets before it is killed


def _rank_main(rank: int, world_size: int, port: int, timeout: float, tasks: Any, results: Any) -> None:
    """One rank: join the gloo group, then run each fn(rank, world_size, *args) it is sent, until None."""
    torch.set_num_threads(1)  # p ranks share the machine's cores
    try:
        wait = timedelta(seconds=timeout)
        store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=wait)  # the parent's store
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=wait)
        while (task := tasks.get()) is not None:
            fn, args = task
            buffer = io.BytesIO()
            torch.save(fn(rank, world_size, *args), buffer)  # bytes, not shared memory: the rank may exit
            results.put((rank, True, buffer.getvalue()))
    except BaseException:  # noqa: BLE001 - every failure must reach the parent
        results.put((rank, False, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


class Ranks:
    """p local processes in one gloo process group, kept for several calls. Introduced in chapter 11.

    The ranks meet at a TCP store that this object holds on 127.0.0.1, on a port the system
    picked (so no other program can take it first). `run(fn, *args)` runs fn(rank, world_size,
    *args) on every rank and returns their results, sent back with torch.save; fn must be
    importable (defined in a module, not in a notebook cell). When a rank raises, or the ranks
    have not all answered within `timeout` seconds, every rank is stopped, the error names the
    rank, and the group is closed. Use it in a `with` block, or call `close()`.
    """

    def __init__(self, world_size: int, *, timeout: float = 60.0) -> None:
        if not is_positive_int(world_size):
            raise ValueError(f"world_size={world_size!r} must be a positive integer (the number of ranks p)")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout={timeout!r} must be a positive number of seconds")
        self.world_size, self.timeout = world_size, float(timeout)
        wait = timedelta(seconds=timeout)
        self._store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=wait)
        context = mp.get_context("spawn")
        self._results = context.Queue()
        self._tasks = [context.Queue() for _ in range(world_size)]
        self._processes = [
            context.Process(
                target=_rank_main,
                args=(r, world_size, self._store.port, self.timeout, self._tasks[r], self._results),
                daemon=True,
            )
            for r in range(world_size)
        ]
        for process in self._processes:
            process.start()

    def run(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        """fn(rank, world_size, *args) on every rank -> the list of their results, rank 0 first."""
        if self._processes is None:
            raise RuntimeError("these ranks are closed: start new ones with Ranks(p)")
        for tasks in self._tasks:
            tasks.put((fn, args))
        try:
            return _collect(self._results, self._processes, self.timeout)
        except BaseException:
            self.close(at_once=True)
            raise

    def close(self, *, at_once: bool = False) -> None:
        """Let every rank leave the group and exit; stop the ones that do not."""
        if self._processes is None:
            return
        if not at_once:
            for tasks in self._tasks:
                tasks.put(None)
        _stop(self._processes, at_once=at_once)
        self._processes = None

    def __enter__(self) -> Ranks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(at_once=exc[0] is not None)


def launch(fn: Callable[..., Any], world_size: int, *args: Any, timeout: float = 60.0) -> list[Any]:
    """Run fn(rank, world_size, *args) on world_size new local processes; return every rank's result. Chapter 11.

    One call of `Ranks(world_size).run(fn, *args)`, then the ranks exit; see `Ranks` for errors.
    """
    with Ranks(world_size, timeout=timeout) as ranks:
        return ranks.run(fn, *args)


def _collect(results: Any, ranks: list[Any], timeout: float) -> list[Any]:
    """Wait for one message per rank; raise on the first error, or when the time is up."""
    deadline = time.monotonic() + timeout
    values: dict[int, Any] = {}
    while len(values) < len(ranks):
        left = deadline - time.monotonic()
        if left <= 0:
            missing = sorted(set(range(len(ranks))) - set(values))
            raise TimeoutError(f"ranks {missing} of {len(ranks)} did not finish within {timeout} s; all ranks stopped")
        try:
            rank, ok, payload = results.get(timeout=min(left, 0.5))
        except queue.Empty:
            dead = [r for r, p in enumerate(ranks) if p.exitcode not in (None, 0) and r not in values]
            if dead:
                raise RuntimeError(f"rank {dead[0]} died with exit code {ranks[dead[0]].exitcode}") from None
            continue
        if not ok:
            raise RuntimeError(f"rank {rank} of {len(ranks)} failed:\n{payload}")
        values[rank] = torch.load(io.BytesIO(payload), weights_only=False)
    return [values[r] for r in range(len(ranks))]


def _stop(ranks: list[Any], *, at_once: bool = False) -> None:
    """Join every rank; terminate (at once, after an error), then kill, any that is still running."""
    for process in ranks:
        process.join(timeout=0 if at_once else GRACE)
    for process in ranks:
        if process.is_alive():
            process.terminate()
            process.join(timeout=GRACE)
        if process.is_alive():
            process.kill()
            process.join()


class _CopyToRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _SumOverRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def copy_to_ranks(x: torch.Tensor) -> torch.Tensor:
    """Megatron's f: identity forward, all-reduce of the gradient backward. Introduced in chapter 11."""
    return _CopyToRanks.apply(x)


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """Megatron's g: all-reduce (sum) forward, identity backward. Introduced in chapter 11."""
    return _SumOverRanks.apply(x)


@dataclass(frozen=True)
class RankShare:
    """The heads one rank holds: query heads [q_start, q_stop), KV heads [kv_start, kv_stop). Chapter 11."""

    rank: int
    q_start: int
    q_stop: int
    kv_start: int
    kv_stop: int

    @property
    def num_heads(self) -> int:
        return self.q_stop - self.q_start

    @property
    def num_kv_heads(self) -> int:
        return self.kv_stop - self.kv_start


def check_parallel(num_heads: int, num_kv_heads: int, world_size: int) -> None:
    """Raise ValueError unless h heads and h_kv KV heads can be split over p ranks. Introduced in chapter 11.

    p must divide h; and either p divides h_kv (KV heads split with their query groups) or h_kv
    divides p (each KV head replicated on p / h_kv ranks), as in vLLM, whose wording the error keeps.
    """
    for name, value in (("num_heads", num_heads), ("num_kv_heads", num_kv_heads), ("world_size", world_size)):
        if not is_positive_int(value):
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if num_heads % num_kv_heads:
        raise ValueError(f"num_kv_heads={num_kv_heads} must divide num_heads={num_heads}")
    if num_heads % world_size:
        raise ValueError(
            f"Total number of attention heads ({num_heads}) must be divisible by tensor parallel size ({world_size})"
        )
    if num_kv_heads % world_size and world_size % num_kv_heads:
        raise ValueError(
            f"The number of KV heads ({num_kv_heads}) and the tensor parallel size ({world_size}) must divide "
            f"one another (num_heads={num_heads})"
        )


def head_layout(num_heads: int, num_kv_heads: int, world_size: int) -> list[RankShare]:
    """Which query and KV heads each of p ranks holds. Introduced in chapter 11.

    Rank r keeps query heads [r h/p, (r+1) h/p). With p <= h_kv it keeps the KV heads of those
    queries, h_kv / p of them; with p > h_kv it keeps a copy of the one KV head its queries share,
    which then lives on p / h_kv ranks (vLLM's num_kv_head_replicas).
    """
    check_parallel(num_heads, num_kv_heads, world_size)
    q_per_rank = num_heads // world_size
    shares = []
    for rank in range(world_size):
        if world_size <= num_kv_heads:
            kv_per_rank = num_kv_heads // world_size
            kv_start = rank * kv_per_rank
        else:
            kv_per_rank, kv_start = 1, rank // (world_size // num_kv_heads)
        shares.append(RankShare(rank, rank * q_per_rank, (rank + 1) * q_per_rank, kv_start, kv_start + kv_per_rank))
    return shares


def _rows(layer: nn.Linear, start: int, stop: int) -> nn.Linear:
    """A copy of rows [start, stop) of a Linear layer: output features start..stop-1."""
    part = nn.Linear(layer.in_features, stop - start, bias=layer.bias is not None)
    with torch.no_grad():
        part.weight.copy_(layer.weight[start:stop])  # (stop - start, in_features)
        if layer.bias is not None:
            part.bias.copy_(layer.bias[start:stop])
    return part


class HeadParallelAttention(nn.Module):
    """One rank's part of a MultiHeadAttention: its heads' slices of W_q, W_k, W_v and W_o. Chapter 11.

    Call it on every rank of a process group with the same input: each rank computes its heads'
    share of the output, one all-reduce adds the shares, and every rank returns the full output,
    equal to the whole module's. Gradients flow back through the same two operators (f and g),
    so each weight's gradient is the rank's slice of the whole module's gradient; a replicated KV
    head's gradient is split among its replicas and sums to the whole one. Dropout draws the same
    masks on every rank (Megatron-LM keeps one random generator per rank for this).
    """

    def __init__(self, mha: MultiHeadAttention, rank: int, world_size: int) -> None:
        super().__init__()
        if not isinstance(mha, MultiHeadAttention):
            raise ValueError(f"mha must be a multihead.MultiHeadAttention, got {type(mha).__name__}")
        if not (isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"rank={rank!r} must be an integer in [0, world_size={world_size})")
        self.share = head_layout(mha.num_heads, mha.num_kv_heads, world_size)[rank]
        d_k, s = mha.head_dim, self.share
        self.head_dim, self.dropout = d_k, mha.dropout
        self.W_q = _rows(mha.W_q, s.q_start * d_k, s.q_stop * d_k)  # (h/p d_k, d_model)
        self.W_k = _rows(mha.W_k, s.kv_start * d_k, s.kv_stop * d_k)  # (h_kv/p d_k, d_model), or one head
        self.W_v = _rows(mha.W_v, s.kv_start * d_k, s.kv_stop * d_k)
        self.W_o = nn.Linear(s.num_heads * d_k, mha.d_model, bias=False)  # W_o's columns of these heads
        with torch.no_grad():
            self.W_o.weight.copy_(mha.W_o.weight[:, s.q_start * d_k : s.q_stop * d_k])  # (d_model, h/p d_k)
        self.b_o = None if mha.W_o.bias is None else nn.Parameter(mha.W_o.bias.detach().clone())  # added once

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, d_model), the same on every rank -> (B, T, d_model), the whole module's output.

        `mask` is boolean, broadcastable to (B, h/p, T, T), True where a query may attend.
        """
        x = copy_to_ranks(x)  # f: backward sums the input's gradient over ranks
        q = split_heads(self.W_q(x), self.share.num_heads)  # (B, h/p, T, d_k)
        k, v = (split_heads(W(x), self.share.num_kv_heads) for W in (self.W_k, self.W_v))  # (B, h_kv/p, T, d_k)
        dropout = self.dropout if self.training else 0.0
        gqa = k.shape[1] != q.shape[1]
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, enable_gqa=gqa)
        partial = self.W_o(merge_heads(heads))  # (B, T, d_model): these heads' terms of the sum over heads
        out = sum_over_ranks(partial)  # g: all-reduce, every rank gets the whole sum
        return out if self.b_o is None else out + self.b_o


def make_problem(
    d_model: int, num_heads: int, num_kv_heads: int, seed: int, *, batch_size: int = 2, seq_len: int = 5
) -> tuple[MultiHeadAttention, torch.Tensor]:
    """The same module and input on every rank and in the notebook: seeded. Introduced in chapter 11."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mha = MultiHeadAttention(d_model, num_heads, num_kv_heads=num_kv_heads)
    x = torch.randn(batch_size, seq_len, d_model, generator=generator)  # (B, T, d_model)
    return mha, x


def run_head_parallel(rank: int, world_size: int, problems: list[tuple[int, int, int, int]]) -> list[dict[str, Any]]:
    """On one rank: for each (d_model, h, h_kv, seed), this rank's output, input gradient and weight gradients.

    The loss is the sum of squares of the output, the same on every rank. Introduced in chapter 11.
    """
    found = []
    for d_model, num_heads, num_kv_heads, seed in problems:
        mha, x = make_problem(d_model, num_heads, num_kv_heads, seed)
        part = HeadParallelAttention(mha, rank, world_size)
        x.requires_grad_(True)
        out = part(x)  # (B, T, d_model)
        out.pow(2).sum().backward()
        grads = {name: p.grad for name, p in part.named_parameters()}
        found.append({"share": part.share, "out": out.detach(), "x_grad": x.grad, "grads": grads})
    return found


def run_dtensor(rank: int, world_size: int, problem: tuple[int, int, int, int]) -> dict[str, Any]:
    """The same split with PyTorch's own API: a device mesh, ColwiseParallel and RowwiseParallel. Chapter 11.

    W_q, W_k and W_v are split by output features (their rows), W_o by input features (its
    columns). The module still splits its projections into heads with its own head counts, which
    must become the local ones, h / p and h_kv / p. Returns this rank's output, and the
    collectives of the forward and the backward pass as CommDebugMode counts them.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.debug import CommDebugMode
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    d_model, num_heads, num_kv_heads, seed = problem
    if num_kv_heads % world_size:
        raise ValueError(f"run_dtensor splits KV heads without copies: p={world_size} must divide h_kv={num_kv_heads}")
    mha, x = make_problem(d_model, num_heads, num_kv_heads, seed)
    mesh = init_device_mesh("cpu", (world_size,))
    plan = {"W_q": ColwiseParallel(), "W_k": ColwiseParallel(), "W_v": ColwiseParallel(), "W_o": RowwiseParallel()}
    parallelize_module(mha, mesh, plan)
    mha.num_heads, mha.num_kv_heads = num_heads // world_size, num_kv_heads // world_size  # local heads
    x.requires_grad_(True)
    with CommDebugMode() as forward:
        out = mha(x)  # (B, T, d_model), every rank the whole output
    with CommDebugMode() as backward:
        out.pow(2).sum().backward()
    count = lambda mode: {str(op).split(".")[-1]: n for op, n in mode.get_comm_counts().items()}  # noqa: E731
    return {"out": out.detach(), "x_grad": x.grad, "forward": count(forward), "backward": count(backward)}


def _median_seconds(step: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        dist.barrier()  # every rank starts each repeat together
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measure_costs(
    rank: int, world_size: int, sizes: list[tuple[int, int, int, int]], repeats: int = 7
) -> list[dict[str, Any]]:
    """On one rank, for each (B, T, d_model, h): its heads' compute time, one all-reduce's, the whole module's.

    Times are medians over `repeats`, on one thread per rank. Introduced in chapter 11. Also checks, on the output's share,
    that an all-reduce is a reduce-scatter followed by an all-gather (sequence parallelism keeps
    the tokens split between the two).
    """
    found = []
    for batch_size, seq_len, d_model, num_heads in sizes:
        mha, x = make_problem(d_model, num_heads, num_heads, 0, batch_size=batch_size, seq_len=seq_len)
        part = HeadParallelAttention(mha, rank, world_size)
        share = part.share

        def compute() -> torch.Tensor:  # this rank's heads, up to its term of the sum over heads
            q = split_heads(part.W_q(x), share.num_heads)  # (B, h/p, T, d_k)
            k, v = (split_heads(W(x), share.num_kv_heads) for W in (part.W_k, part.W_v))
            return part.W_o(merge_heads(F.scaled_dot_product_attention(q, k, v)))  # (B, T, d_model)

        with torch.no_grad():
            partial = compute()
            summed = partial.clone()
            dist.all_reduce(summed)
            by_position = partial.transpose(0, 1).contiguous()  # (T, B, d_model): split along T
            pieces = torch.empty(seq_len // world_size, batch_size, d_model)
            dist.reduce_scatter_single(pieces, by_position)  # each rank: T/p positions of every sequence
            gathered = torch.empty(seq_len, batch_size, d_model)
            dist.all_gather_single(gathered, pieces)
            found.append(
                {
                    "size": (batch_size, seq_len, d_model, num_heads),
                    "compute_s": _median_seconds(compute, repeats),
                    "all_reduce_s": _median_seconds(lambda: dist.all_reduce(partial.clone()), repeats),
                    "whole_1_thread_s": _median_seconds(lambda: mha(x), repeats),
                    "split_equals_all_reduce": torch.equal(gathered.transpose(0, 1), summed),
                }
            )
    return found
