"""The roofline of one cached decoding step (chapter 10): how close it runs to the machine's limits.

A decoding step must read every key and value in the cache and every weight of the layer, and
do a few FLOPs per number read. Its floor is the larger of two times: the bytes it must read at
the machine's read bandwidth, and its FLOPs at the machine's matmul rate. Both rates are
measured in the same process as the step. Run `python -m multihead.roofline`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import timeit
from dataclasses import dataclass

import torch

from .bench import interleave
from .decoding import KVCache, StaticKVCache, attend_with_cache, attend_with_static_cache, decode_linear
from .heads import check_positive
from .module import MultiHeadAttention

LAST_LEVEL_CACHE = 32 * 2**20  # bytes; read from /sys where Linux exposes it


def last_level_cache_bytes() -> int:
    """The CPU's largest cache in bytes, or 32 MiB where the system does not say. Introduced in chapter 10."""
    sizes = []
    for index in range(8):
        try:
            text = open(f"/sys/devices/system/cpu/cpu0/cache/index{index}/size").read().strip()
        except OSError:
            break
        unit = {"K": 2**10, "M": 2**20}.get(text[-1], 1)
        sizes.append(int(text.rstrip("KM")) * unit)
    return max(sizes, default=LAST_LEVEL_CACHE)


def read_bandwidth(nbytes: int = 512 * 2**20, repeats: int = 5) -> float:
    """Bytes per second of summing a float32 tensor of `nbytes`, the median of `repeats` sums. Introduced in chapter 10."""
    big = torch.ones(nbytes // 4)
    big.sum()  # warm-up: pages touched once
    seconds = statistics.median(timeit.repeat(big.sum, number=1, repeat=repeats))
    return nbytes / seconds


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """FLOPs per second of an (n, n) by (n, n) float32 product, the median of `repeats`. Introduced in chapter 10."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    seconds = statistics.median(timeit.repeat(lambda: a @ b, number=1, repeat=repeats))
    return 2 * n**3 / seconds


def grouped_scores_rate(
    group: int = 16, head_dim: int = 64, cache_len: int = 4096, *, repeats: int = 5, min_bytes: int | None = None
) -> float:
    """FLOPs per second of one group's scores, (group, d_k) by (d_k, T). Introduced in chapter 10.

    These small products make up an MQA step's attention. The keys of enough layers to read
    `min_bytes` (default: 4x the last-level cache) are multiplied in turn, so they come from
    memory as in a decoding step; the median of `repeats` passes.
    """
    check_positive(group=group, head_dim=head_dim, cache_len=cache_len, repeats=repeats)
    min_bytes = 4 * last_level_cache_bytes() if min_bytes is None else min_bytes
    q = torch.randn(group, head_dim)  # (g, d_k): one group's queries
    keys = [torch.randn(cache_len, head_dim) for _ in range(max(2, math.ceil(min_bytes / (4 * cache_len * head_dim))))]

    def scores() -> None:
        for k in keys:
            q @ k.T  # (g, T)

    scores()  # warm-up
    seconds = statistics.median(timeit.repeat(scores, number=1, repeat=repeats))
    return 2 * group * head_dim * cache_len * len(keys) / seconds


def projection_bandwidth(
    d_in: int = 1024, d_out: int = 3072, *, rounds: int = 5, min_run_time: float = 0.02, min_bytes: int | None = None
) -> dict[str, float]:
    """Bytes of weight per second that one token's projection reads, per way of computing it. Introduced in chapter 10.

    Times `nn.Linear` and `decode_linear` on one row, over enough layers of (d_out, d_in)
    weights to read `min_bytes` (default: 4x the last-level cache), interleaved over `rounds`.
    Returns the median rate of each, keyed "linear" and "decode_linear".
    """
    min_bytes = 4 * last_level_cache_bytes() if min_bytes is None else min_bytes
    layer_bytes = 4 * d_out * (d_in + 1)
    layers = [torch.nn.Linear(d_in, d_out) for _ in range(max(2, math.ceil(min_bytes / layer_bytes)))]
    token = torch.randn(1, 1, d_in)  # (B=1, T_new=1, d_in)
    with torch.no_grad():
        times = interleave(
            {"linear": lambda: [layer(token) for layer in layers],
             "decode_linear": lambda: [decode_linear(layer, token) for layer in layers]},
            rounds=rounds, min_run_time=min_run_time,
        )
    return {name: len(layers) * layer_bytes / (statistics.median(ms) / 1e3) for name, ms in times.items()}


def prefill_flops(d_model: int, num_heads: int, tokens: int) -> int:
    """FLOPs of one layer taking a prompt of `tokens` at once: projections and causal attention. Introduced in chapter 10.

    Every weight does a multiply-add per token; each query does one per key it may see (the
    t + 1 keys up to its own position), for the scores and again for the weighted sum.
    """
    check_positive(d_model=d_model, num_heads=num_heads, tokens=tokens)
    pairs = tokens * (tokens + 1) // 2  # (query, key) pairs under a causal mask
    return 2 * tokens * 4 * d_model * d_model + 2 * 2 * pairs * d_model


def prefill_rate(d_model: int = 1024, num_heads: int = 16, tokens: int = 512, repeats: int = 5) -> float:
    """FLOPs per second of a prefill: `tokens` tokens through one MHA layer into an empty cache. Introduced in chapter 10.

    The median of `repeats` runs of `attend_with_static_cache`; compare it with `matmul_rate`.
    """
    mha = MultiHeadAttention(d_model, num_heads).eval()
    prompt = torch.randn(1, tokens, d_model)  # (B=1, P, d_model)
    cache = StaticKVCache.for_module(mha, 1, tokens)

    @torch.no_grad()
    def prefill() -> None:
        cache.truncate(0)
        attend_with_static_cache(mha, prompt, cache)

    prefill()  # warm-up
    seconds = statistics.median(timeit.repeat(prefill, number=1, repeat=repeats))
    return prefill_flops(d_model, num_heads, tokens) / seconds


@dataclass(frozen=True)
class Step:
    """One decoding step of one layer: B sequences, one new token each, T cached. Introduced in chapter 10."""

    d_model: int
    num_heads: int  # h
    num_kv_heads: int  # h_kv
    cache_len: int  # T
    batch_size: int = 1  # B
    bytes_per_number: int = 4  # float32

    def __post_init__(self) -> None:
        check_positive(d_model=self.d_model, num_heads=self.num_heads, num_kv_heads=self.num_kv_heads,
                       cache_len=self.cache_len, batch_size=self.batch_size)
        if self.d_model % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(f"need num_heads={self.num_heads} to divide d_model={self.d_model} "
                             f"and num_kv_heads={self.num_kv_heads} to divide num_heads")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    def weight_numbers(self) -> int:
        """W_q and W_o (d_model x d_model), W_k and W_v (h_kv d_k x d_model), and their biases."""
        kv = self.num_kv_heads * self.head_dim
        return 2 * self.d_model * (self.d_model + kv) + 2 * self.d_model + 2 * kv

    def cache_numbers(self) -> int:
        """Keys and values of the T cached tokens, per sequence and KV head."""
        return 2 * self.batch_size * self.num_kv_heads * self.cache_len * self.head_dim

    def bytes_read(self) -> int:
        return (self.weight_numbers() + self.cache_numbers()) * self.bytes_per_number

    def flops(self) -> int:
        """A multiply-add (2 FLOPs) per weight per sequence, and per cached number per query head of its group."""
        group = self.num_heads // self.num_kv_heads
        return 2 * self.batch_size * self.weight_numbers() + 2 * group * self.cache_numbers()

    def floor_seconds(self, bandwidth: float, rate: float) -> tuple[float, str]:
        """The roofline floor and which limit sets it: 'memory' or 'compute'."""
        memory, compute = self.bytes_read() / bandwidth, self.flops() / rate
        return (memory, "memory") if memory >= compute else (compute, "compute")


class DecodeStack:
    """Layers of one configuration, caches filled to T, enough to overflow the CPU's caches. Introduced in chapter 10.

    `step()` runs one new token per sequence through every layer and then forgets it again, so
    it can be timed repeatedly at the same cache length.
    """

    def __init__(self, step: Step, *, static: bool = True, min_bytes: int | None = None) -> None:
        min_bytes = 4 * last_level_cache_bytes() if min_bytes is None else min_bytes
        self.step_config = step
        self.num_layers = max(2, math.ceil(min_bytes / step.bytes_read()))
        self.static = static
        B, T, h_kv, d_k = step.batch_size, step.cache_len, step.num_kv_heads, step.head_dim
        self.layers, self.caches = [], []
        for _ in range(self.num_layers):
            mha = MultiHeadAttention(step.d_model, step.num_heads, num_kv_heads=h_kv).eval()
            k, v = torch.randn(B, h_kv, T, d_k), torch.randn(B, h_kv, T, d_k)  # a filled cache
            cache = StaticKVCache.for_module(mha, B, T + 1) if static else KVCache()
            cache.append(k, v)
            self.layers.append(mha)
            self.caches.append(cache)
        self.x = torch.randn(B, 1, step.d_model)  # (B, 1, d_model): the new token

    @torch.no_grad()
    def step(self) -> torch.Tensor:
        x = self.x
        for mha, cache in zip(self.layers, self.caches):
            x = (attend_with_static_cache if self.static else attend_with_cache)(mha, x, cache)  # (B, 1, d_model)
        for cache in self.caches:
            cache.truncate(len(cache) - 1)  # forget the new token again
        return x


@dataclass
class Row:
    """One configuration's step time per layer over the rounds, against its floor. Introduced in chapter 10."""

    step: Step
    num_layers: int
    times_ms: list[float]  # per layer, one per round
    floor_ms: float
    bound: str  # which limit sets the floor: "memory" or "compute"

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def fraction(self) -> float:
        """The floor over the median step time: 1.0 would be the machine's limit."""
        return self.floor_ms / self.median_ms


def measure(
    steps: list[Step], *, static: bool = True, rounds: int = 9, min_run_time: float = 0.05,
    bandwidth: float | None = None, rate: float | None = None, min_bytes: int | None = None,
) -> tuple[list[Row], float, float]:
    """Time each configuration's step in interleaved rounds. Introduced in chapter 10.

    Returns the rows, the read bandwidth (bytes/s) and the matmul rate (FLOP/s).

    Configurations with the same cache length are built and timed together, so the memory held at
    once stays that of one cache length. `min_bytes` is passed to each DecodeStack.
    """
    bandwidth = read_bandwidth() if bandwidth is None else bandwidth
    rate = matmul_rate() if rate is None else rate
    rows = []
    for T in sorted({s.cache_len for s in steps}):
        stacks = {s: DecodeStack(s, static=static, min_bytes=min_bytes) for s in steps if s.cache_len == T}
        times = interleave({s: stack.step for s, stack in stacks.items()}, rounds=rounds, min_run_time=min_run_time)
        for s, stack in stacks.items():
            floor, bound = s.floor_seconds(bandwidth, rate)
            per_layer = [t / stack.num_layers for t in times[s]]
            rows.append(Row(s, stack.num_layers, per_layer, floor * 1e3, bound))
        del stacks
    return rows, bandwidth, rate


def report(
    rows: list[Row], bandwidth: float, rate: float, *, baseline: list[Row] | None = None, flops: bool = False
) -> str:
    """The decode table: median step per layer, its range, bytes read, floor, bound, fraction. Introduced in chapter 10.

    With `baseline` (the same steps with the torch.cat cache), a column gives its median; with
    `flops`, a last column gives the FLOPs of a step in millions.
    """
    first = rows[0].step
    lines = [
        f"read bandwidth {bandwidth / 1e9:.1f} GB/s, matmul rate {rate / 1e9:.0f} GFLOP/s",
        f"float32, B={first.batch_size}, d_model={first.d_model}, h={first.num_heads}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"{'T':>6}{'h_kv':>5}{'layers':>7}{'step ms':>9}{'range':>12}{'MiB':>7}{'floor ms':>9}"
        f"{'bound':>8}{'fraction':>9}" + (f"{'cat ms':>8}" if baseline else "") + (f"{'MFLOP':>7}" if flops else ""),
    ]
    for i, r in enumerate(rows):
        spread = f"{min(r.times_ms):.2f}-{max(r.times_ms):.2f}"
        line = (
            f"{r.step.cache_len:>6}{r.step.num_kv_heads:>5}{r.num_layers:>7}{r.median_ms:>9.2f}{spread:>12}"
            f"{r.step.bytes_read() / 2**20:>7.1f}{r.floor_ms:>9.2f}{r.bound:>8}{r.fraction:>9.2f}"
        )
        if baseline:
            line += f"{baseline[i].median_ms:>8.2f}"
        if flops:
            line += f"{r.step.flops() / 1e6:>7.1f}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: the decode table for cache lengths 256 to 16384 and h_kv 16, 4, 1. Introduced in chapter 10."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=1024)
    parser.add_argument("--num-heads", type=int, default=16)
    parser.add_argument("--kv-heads", type=int, nargs="+", default=[16, 4, 1])
    parser.add_argument("--cache-lens", type=int, nargs="+", default=[256, 1024, 4096, 8192, 16384])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--min-mib", type=int, help="bytes each stack must read (default: 4x the last-level cache)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the torch.cat cache")
    args = parser.parse_args(argv)
    steps = [Step(args.d_model, args.num_heads, h_kv, T) for T in args.cache_lens for h_kv in args.kv_heads]
    min_bytes = None if args.min_mib is None else args.min_mib * 2**20
    rows, bandwidth, rate = measure(steps, rounds=args.rounds, min_bytes=min_bytes)
    baseline = None
    if not args.no_baseline:
        rounds = max(3, args.rounds // 3)
        baseline, _, _ = measure(steps, static=False, rounds=rounds, bandwidth=bandwidth, rate=rate, min_bytes=min_bytes)
    print(report(rows, bandwidth, rate, baseline=baseline, flops=True))
    rates = projection_bandwidth(args.d_model, 3 * args.d_model, min_bytes=min_bytes)
    print(f"one token's projection reads its weights at {rates['linear'] / 1e9:.1f} GB/s with nn.Linear, "
          f"{rates['decode_linear'] / 1e9:.1f} GB/s with decode_linear")
    prefill = prefill_rate(args.d_model, args.num_heads, 512)
    print(f"a prefill of 512 tokens (h_kv=h) runs at {prefill / 1e9:.0f} GFLOP/s, {prefill / rate:.0%} of the matmul rate")
    for T in args.cache_lens:
        flops = grouped_scores_rate(args.num_heads, args.d_model // args.num_heads, T, min_bytes=min_bytes)
        print(f"T={T}: the scores of {args.num_heads} query heads on one key head run at {flops / 1e9:.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
