"""Checkers for the chapters' coding exercises: run the reader's function, say what is wrong.

Each checker compares the reader's function with the package's reference on several shapes and
returns a `CheckReport`; its text is what the notebook shows. Introduced in chapter 2.
"""

from __future__ import annotations

import copy
import functools
import itertools
import numbers
import os
import textwrap
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .data import IGNORE, first_minus_previous, generator
from .heads import merge_heads, split_heads
from .masks import causal_mask, padding_mask, sliding_window_mask, to_torch_key_padding_mask
from .module import MultiHeadAttention

SPLIT_CASES = [(4, 16, 512, 4), (2, 5, 12, 3), (1, 7, 8, 8), (3, 1, 6, 1)]  # (B, T, d_model, h)


@dataclass
class CheckReport:
    """The outcome of one checker: how many cases passed and what went wrong. Introduced in chapter 2."""

    name: str
    passed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, problem: str) -> None:
        self.problems.append(problem)

    def __repr__(self) -> str:
        if self.ok:
            return f"{self.name}: all {self.passed} checks passed."
        return f"{self.name}: not yet.\n" + "\n".join(f"  - {problem}" for problem in self.problems)


# Error messages that have a known cause in these exercises, and the hint for each.
_ERROR_HINTS = {
    "view size is not compatible": "view needs contiguous memory: call .contiguous() first, or use reshape",
    "Boolean value of Tensor with more than one value": "a tensor of several values has no single truth value",
    "but got float": "sizes must be whole numbers: use //, as in d_model // num_heads",
}


def _hint_for(error: BaseException) -> str | None:
    """The hint of _ERROR_HINTS whose text the error's message contains, or None."""
    return next((hint for text, hint in _ERROR_HINTS.items() if text in str(error)), None)


def _where(error: BaseException) -> str:
    """' at line N: <code>' for the innermost frame of the reader's own code, or ''."""
    ours = (os.path.dirname(__file__), os.path.dirname(torch.__file__))  # this package and torch
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(ours)]
    if not frames:
        return ""
    frame = frames[-1]
    return f" at line {frame.lineno}" + (f": {frame.line.strip()}" if frame.line else "")


def _first_line(error: BaseException, width: int = 100) -> str:
    """The error's first line, cut to width characters."""
    text = (str(error).splitlines() or [""])[0]
    return text if len(text) <= width else text[: width - 3] + "..."


def _snapshot(value: object) -> object:
    """A copy of an input to compare with after the call: tensors keep their shape, strides and values."""
    if isinstance(value, torch.Tensor):
        return (value.detach().clone(), value.shape, value.stride(), value.dtype)
    return copy.deepcopy(value)


def _unchanged(before: object, value: object) -> bool:
    if isinstance(value, torch.Tensor):
        data, shape, stride, dtype = before
        return (value.shape, value.stride(), value.dtype) == (shape, stride, dtype) and torch.equal(value, data)
    return before == value


def _call(report: CheckReport, label: str, fn: Callable, **inputs: object) -> object:
    """fn(*inputs.values()), or None after recording why not: it raised, or it changed an input."""
    before = {name: _snapshot(value) for name, value in inputs.items()}
    try:
        got = fn(*inputs.values())
    except NotImplementedError:
        report.fail("the function still raises NotImplementedError: fill in its body")
        return None
    except Exception as error:  # the reader's code may fail in any way; report it, never crash
        hint = _hint_for(error)
        report.fail(
            f"{label}: calling it raised {type(error).__name__}: {_first_line(error)}{_where(error)}"
            + (f". Hint: {hint}." if hint else "")
        )
        return None
    changed = [name for name, value in inputs.items() if not _unchanged(before[name], value)]
    if changed:
        report.fail(f"{label}: your function changed its input {', '.join(changed)}; work on a copy or out of place")
        return None
    return got


def _compare(
    report: CheckReport,
    label: str,
    got: object,
    want: torch.Tensor,
    hint: Callable[[torch.Tensor], str],
    atol: float | None = None,
    any_float: bool = False,
) -> None:
    """Record a pass, or what is wrong: not a tensor, the wrong shape or dtype, or other values.

    Values are compared exactly, or within atol. With any_float, a result of another floating
    dtype (a float64 statistic) is compared in want's dtype.
    """
    if not isinstance(got, torch.Tensor):
        report.fail(f"{label}: expected a tensor, got {type(got).__name__}")
        return
    if got.shape != want.shape:
        report.fail(f"{label}: expected shape {tuple(want.shape)}, got {tuple(got.shape)}")
        return
    if any_float and got.is_floating_point() and want.is_floating_point():
        got = got.to(want.dtype)
    if got.dtype != want.dtype:
        report.fail(f"{label}: expected dtype {want.dtype}, got {got.dtype}")
    elif not (torch.equal(got, want) if atol is None else torch.allclose(got, want, atol=atol)):
        report.fail(f"{label}: the shape is right but the values differ. {hint(got)}")
    else:
        report.passed += 1


def _keeps_random_state(checker: Callable[..., CheckReport]) -> Callable[..., CheckReport]:
    """Run a checker without touching the reader's global random state."""

    @functools.wraps(checker)
    def run(*args: object, **kwargs: object) -> CheckReport:
        with torch.random.fork_rng(devices=[]):
            return checker(*args, **kwargs)

    return run


@_keeps_random_state
def check_split_heads(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> CheckReport:
    """Check a reader's split_heads(x, num_heads) -> (B, h, T, d_k). Introduced in chapter 2."""
    report = CheckReport("split_heads")
    for B, T, d_model, h in SPLIT_CASES:
        x = torch.arange(B * T * d_model, dtype=torch.float32).view(B, T, d_model)  # (B, T, d_model)
        label = f"x {tuple(x.shape)}, h={h}"
        want = split_heads(x.clone(), h)  # (B, h, T, d_k)
        got = _call(report, label, fn, x=x, num_heads=h)
        if not report.ok:
            break

        def hint(got: torch.Tensor, x: torch.Tensor = x) -> str:
            if torch.equal(got, x.view(got.shape)):
                return "It looks like a view to (B, h, T, d_k) without the transpose: view first to (B, T, h, d_k)."
            return "Check which axis you split and which two you swap."

        _compare(report, label, got, want, hint)
    return report


@_keeps_random_state
def check_merge_heads(fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckReport:
    """Check a reader's merge_heads(x) -> (B, T, d_model). Introduced in chapter 2.

    The heads come both as split_heads returns them (a transposed view) and as `attn @ v`
    returns them (contiguous), where a view without contiguous() fails.
    """
    report = CheckReport("merge_heads")
    rng = generator(2)
    for (B, T, d_model, h), contiguous in itertools.product(SPLIT_CASES, (False, True)):
        x = split_heads(torch.randn(B, T, d_model, generator=rng), h)  # (B, h, T, d_k), a transposed view
        x = x.contiguous() if contiguous else x
        label = f"heads {tuple(x.shape)}{', contiguous' if contiguous else ''}"
        want = merge_heads(x)  # (B, T, d_model)
        got = _call(report, label, fn, x=x)
        if not report.ok:
            break

        def hint(got: torch.Tensor, x: torch.Tensor = x) -> str:
            if torch.equal(got, x.reshape(got.shape)):
                return "It looks like a reshape without transposing back: transpose(1, 2) first."
            return "Transpose back to (B, T, h, d_k) before joining the last two axes."

        _compare(report, label, got, want, hint)
    return report


@_keeps_random_state
def check_head_rows(fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> CheckReport:
    """Check a reader's head_rows(W, num_heads, i): the rows of a fused weight that head i uses. Introduced in chapter 2."""
    report = CheckReport("head_rows")
    rng = generator(1)
    for d_model, h in [(512, 4), (12, 3), (8, 8), (6, 2)]:
        d_k = d_model // h
        W = torch.randn(d_model, d_model, generator=rng)  # nn.Linear weight: (out = d_model, in = d_model)
        x = torch.randn(2, 5, d_model, generator=rng)  # (B, T, d_model)
        for i in range(h):
            label = f"d_model={d_model}, h={h}, head {i}"
            got = _call(report, label, fn, W=W, num_heads=h, i=i)
            if not report.ok:
                return report
            want = W[i * d_k : (i + 1) * d_k]  # (d_k, d_model)

            def hint(got: torch.Tensor, W: torch.Tensor = W, d_k: int = d_k, i: int = i) -> str:
                if torch.equal(got, W[:, i * d_k : (i + 1) * d_k].T):
                    return "You took columns; nn.Linear stores (out, in), so head i owns a block of rows."
                return f"Head {i} owns output features {i * d_k} to {(i + 1) * d_k - 1}."

            _compare(report, label, got, want, hint)
            if report.ok:  # the slice must reproduce head i of the fused projection
                fused = split_heads(x @ W.T, h)[:, i]  # (B, T, d_k)
                torch.testing.assert_close(x @ got.T, fused)
    return report


@_keeps_random_state
def check_task_targets(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> CheckReport:
    """Check a reader's targets for chapter 1's task, (x[t-1] - x[0]) mod V. Introduced in chapter 1."""
    report = CheckReport("task_targets")
    for B, T, V in [(2, 10, 12), (3, 2, 5), (1, 7, 3), (4, 5, 20)]:
        x, want = first_minus_previous(B, T, V, generator(B * 100 + T))  # (B, T) each
        label = f"x {tuple(x.shape)}, V={V}"
        got = _call(report, label, fn, x=x, vocab_size=V)
        if not report.ok:
            break

        def hint(got: torch.Tensor, x: torch.Tensor = x, V: int = V, want: torch.Tensor = want) -> str:
            if got[:, 0].ne(IGNORE).any():
                return f"Position 0 has no answer: it should hold IGNORE ({IGNORE})."
            if torch.equal(got[:, 1:], (x[:, :-1] + x[:, :1]) % V):
                return "You added the first token; the task subtracts it."
            if torch.equal(got[:, 1:], (x[:, :1] - x[:, :-1]) % V):
                return "The order is swapped: previous token minus first token."
            if torch.equal(got[:, 1:], x[:, :-1] - x[:, :1]):
                return "Some targets are negative: take the difference modulo vocab_size."
            if torch.equal(got[:, 1:], (x[:, 1:] - x[:, :1]) % V):
                return "You used token t; the task uses the previous token, x[:, t-1]."
            return "Compare position t with (x[:, t-1] - x[:, 0]) % vocab_size."

        _compare(report, label, got, want, hint)
    return report


@_keeps_random_state
def check_attention_weights(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> CheckReport:
    """Check a reader's attention_weights(q, k) = softmax(q k^T / sqrt(d_k)) over keys. Introduced in chapter 3."""
    report = CheckReport("attention_weights")
    rng = generator(3)
    for B, h, T_q, T_k, d_k in [(2, 4, 5, 5, 16), (1, 2, 3, 7, 64), (3, 1, 4, 2, 8), (2, 3, 6, 4, 2)]:
        q = torch.randn(B, h, T_q, d_k, generator=rng)  # (B, h, T_q, d_k)
        k = torch.randn(B, h, T_k, d_k, generator=rng)  # (B, h, T_k, d_k)
        label = f"q {tuple(q.shape)}, k {tuple(k.shape)}"
        raw = q @ k.transpose(-2, -1)  # (B, h, T_q, T_k), before the reader's function runs
        want = (raw / d_k**0.5).softmax(dim=-1)
        got = _call(report, label, fn, q=q, k=k)
        if not report.ok:
            break

        def hint(got: torch.Tensor, raw: torch.Tensor = raw, d_k: int = d_k) -> str:
            if torch.allclose(got, raw.softmax(dim=-1)):
                return "The scores are not scaled: divide by sqrt(d_k) before the softmax."
            if torch.allclose(got, (raw / d_k).softmax(dim=-1)):
                return "You divided by d_k; divide by its square root."
            if raw.shape[-1] == raw.shape[-2] and torch.allclose(got, (raw / d_k**0.5).softmax(dim=-2)):
                return "The softmax runs over the query axis; it must run over the keys (dim=-1)."
            if torch.allclose(got, raw / d_k**0.5):
                return "These are the scaled scores; apply the softmax over the keys."
            return "Compute softmax(q @ k.transpose(-2, -1) / sqrt(d_k), dim=-1)."

        _compare(report, label, got, want, hint, atol=1e-6)
    return report


@_keeps_random_state
def check_causal_mask(fn: Callable[[int], torch.Tensor]) -> CheckReport:
    """Check a reader's causal_mask(T): (T, T) booleans, True = may attend. Introduced in chapter 3.

    T = 1 comes last: there every wrong triangle looks alike, so its hint would mislead.
    """
    report = CheckReport("causal_mask")
    for T in (4, 9, 2, 1):
        label = f"T={T}"
        got = _call(report, label, fn, T=T)
        if not report.ok:
            break
        want = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T)
        if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
            report.fail(f"{label}: expected a boolean mask, got dtype {got.dtype}; the convention is True = may attend")
            break

        def hint(got: torch.Tensor, want: torch.Tensor = want) -> str:
            if torch.equal(got, want.tril(-1)):
                return "The diagonal is False: a token may attend to itself."
            if torch.equal(got, ~want):
                return "True marks the blocked keys here, as in nn.MultiheadAttention; the course's masks say True = may attend."
            if torch.equal(got, want.T):
                return "This mask lets queries see the future. Query i may see keys 0..i: the lower triangle."
            return "Entry [i, j] is True when j <= i."

        _compare(report, label, got, want, hint)
    return report


@_keeps_random_state
def check_head_term(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> CheckReport:
    """Check a reader's head_term(heads, W_o_weight, i): head i's share of the output, bias excluded.

    heads (B, h, T, d_k) and an nn.Linear weight (d_model, d_model); the answer is
    heads[:, i] @ W_o_weight[:, i*d_k:(i+1)*d_k].T, shape (B, T, d_model). Introduced in chapter 4.
    """
    report = CheckReport("head_term")
    rng = generator(4)
    for B, h, T, d_k in [(2, 4, 5, 8), (1, 3, 2, 4), (3, 2, 4, 3)]:
        heads = torch.randn(B, h, T, d_k, generator=rng)  # (B, h, T, d_k)
        W = torch.randn(h * d_k, h * d_k, generator=rng)  # (out, in), as nn.Linear stores it
        for i in range(h):
            label = f"heads {tuple(heads.shape)}, head {i}"
            block = slice(i * d_k, (i + 1) * d_k)
            want = heads[:, i] @ W[:, block].T  # (B, T, d_k) @ (d_k, d_model) -> (B, T, d_model)
            got = _call(report, label, fn, heads=heads, W_o_weight=W, i=i)
            if not report.ok:
                return report

            def hint(got: torch.Tensor, heads: torch.Tensor = heads, W: torch.Tensor = W, i: int = i) -> str:
                if torch.allclose(got, heads[:, i] @ W[i * d_k : (i + 1) * d_k, :]):
                    return "You took rows of the weight; nn.Linear stores (out, in), so head i meets columns."
                return "Multiply head i by the columns of W_o.weight that read its block, transposed."

            _compare(report, label, got, want, hint, atol=1e-5)
    return report


def _probe_module(*zero: str, d_model: int = 16, num_heads: int = 4) -> MultiHeadAttention:
    """The probes' module, d_model=16 and h=4 unless told, fixed weights, the named parameters set to 0."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mha = MultiHeadAttention(d_model, num_heads).eval()
    with torch.no_grad():
        for name in zero:
            mha.get_parameter(name).zero_()
    return mha


def _bad_output(got: object, shape: torch.Size) -> str | None:
    """Why got cannot be a forward pass's float32 output of this shape, or None."""
    if not isinstance(got, torch.Tensor):
        return f"expected a tensor, got {type(got).__name__}"
    if got.shape != shape:
        return f"expected shape {tuple(shape)}, got {tuple(got.shape)}"
    if got.dtype != torch.float32:
        return f"expected dtype torch.float32, like x, got {got.dtype}"
    if not torch.isfinite(got).all():
        return "the output holds NaN or inf"
    return None


def _probe_reference(fn: Callable[..., torch.Tensor]) -> str | None:
    """One sequence, no mask, random input, two module sizes: the output must equal the module's."""
    for (d_model, h), T in [((16, 4), 5), ((12, 3), 7)]:  # d_k = 4, T != d_k
        mha = _probe_module(d_model=d_model, num_heads=h)
        x = torch.randn(1, T, d_model, generator=generator(50))  # (B, T, d_model)
        got, want = fn(mha, x, None), mha(x)
        if problem := _bad_output(got, want.shape):
            return problem
        if torch.allclose(got, want, atol=1e-5):
            continue
        if torch.allclose(got - want, x, atol=1e-5):
            return "output = correct output + x"
        return f"differs from MultiHeadAttention with h={h} (largest error {(got - want).abs().max():.2f})"
    return None


def _probe_masks() -> dict[str, torch.Tensor]:
    """The mask probe's masks, True = may attend: causal for one sequence, and key padding that
    differs per sequence, with blocked keys before visible ones (a causal triangle lets them in)."""
    padding = torch.tensor([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]], dtype=torch.bool)  # (B, T)
    return {"causal mask": causal_mask(5), "padding mask": padding[:, None, None]}  # (T, T), (B, 1, 1, T)


def _probe_mask(fn: Callable[..., torch.Tensor]) -> str | None:
    """Zero queries (every score 0), two masks: the tokens a query may not see must not change its output."""
    mha = _probe_module("W_q.weight", "W_q.bias")  # every query is 0
    rng = generator(51)
    for kind, mask in _probe_masks().items():
        B, T = 1 if mask.dim() == 2 else mask.shape[0], mask.shape[-1]
        sees = mask.expand(B, 1, T, T)[:, 0]  # (B, T, T): may query i see key j?
        x = torch.randn(B, T, 16, generator=rng)  # (B, T, d_model)
        got = fn(mha, x, mask)
        if problem := _bad_output(got, x.shape):
            return f"{problem} ({kind})"
        for i in range(T):
            hidden = ~sees[:, i, :, None]  # (B, T, 1): the tokens query i may not see
            other = torch.where(hidden, torch.randn(B, T, 16, generator=rng), x)  # (B, T, d_model)
            got_other = fn(mha, other, mask)
            if problem := _bad_output(got_other, x.shape):
                return f"{problem} ({kind})"
            moved = [b for b in range(B) if not torch.allclose(got[b, i], got_other[b, i], atol=1e-5)]
            if moved:
                where = f"query {i}" if B == 1 else f"query {i} of sequence {moved[0]}"
                return f"{where} reads a token it may not see ({kind})"
    return None


def _probe_padding(fn: Callable[..., torch.Tensor]) -> str | None:
    """Padding mask (3 of 5 keys), every value the same vector: any weights that sum to 1 give the module's output."""
    mha = _probe_module("W_v.weight")  # every token's value is W_v's bias
    x = torch.randn(1, 5, 16, generator=generator(52))  # (B, T, d_model)
    mask = padding_mask([3], 5)  # (B, 1, 1, T)
    got, want = fn(mha, x, mask), mha(x, mask=mask)
    if problem := _bad_output(got, want.shape):
        return problem
    if not torch.allclose(got, want, atol=1e-5):
        return "all values are equal, yet the output is not that value"
    return None


def _probe_batch(fn: Callable[..., torch.Tensor]) -> str | None:
    """Two sequences, no mask: changing sequence 1 must not change the output of sequence 0."""
    mha = _probe_module()
    rng = generator(53)
    x = torch.randn(2, 5, 16, generator=rng)  # (B, T, d_model)
    other = x.clone()
    other[1] = torch.randn(5, 16, generator=rng)  # a new sequence 1
    got, got_other = fn(mha, x, None), fn(mha, other, None)
    if problem := _bad_output(got, x.shape) or _bad_output(got_other, x.shape):
        return problem
    if not torch.allclose(got[0], got_other[0], atol=1e-5):
        return "changing sequence 1 changed the output of sequence 0"
    return None


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run the probes' tiny tensors on one thread: waking a thread pool costs more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


_Probe = Callable[[Callable[..., torch.Tensor]], str | None]  # probe(forward) -> None, or the problem

# check_forward's probes, by name. Each catches at least one of chapter 5's bugs that no other catches.
FORWARD_PROBES: dict[str, _Probe] = {
    "reference": _probe_reference,
    "mask": _probe_mask,
    "padding": _probe_padding,
    "batch": _probe_batch,
}


class _InputChanged(Exception):
    """The reader's forward pass changed one of its inputs."""


def _guarded(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """fn(mha, x, mask), raising _InputChanged if the call changed x, the mask or the module's weights."""

    def run(mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        inputs = {"x": x, "mask": mask, **{f"mha.{n}": p for n, p in mha.state_dict().items()}}
        before = {name: _snapshot(value) for name, value in inputs.items()}
        got = fn(mha, x, mask)
        changed = [name for name, value in inputs.items() if not _unchanged(before[name], value)]
        if changed:
            raise _InputChanged(", ".join(changed))
        return got

    return run


def _raised(error: BaseException) -> str:
    """A probe's report of a forward pass that raised; in the reader's own code, also its line and a hint."""
    text = f"raised {type(error).__name__}: {_first_line(error, 30)}"
    where, hint = _where(error).strip(), _hint_for(error)
    if not where:  # raised inside the package, as chapter 5's puzzles do: they are read, not fixed here
        return text
    hint = "\n" + textwrap.fill(f"Hint: {hint}.", 80, initial_indent="    ", subsequent_indent="    ") if hint else ""
    return text + f"\n    {where[:76]}" + hint


def _run_probe(probe: _Probe, fn: Callable[..., torch.Tensor]) -> str | None:
    """probe(fn) without gradients, on one thread: None if it passed, else the problem, raising answers included."""
    try:
        with torch.no_grad(), _one_thread():
            return probe(_guarded(fn))
    except _InputChanged as changed:
        return f"your function changed its input {changed}"
    except NotImplementedError:
        return "the function still raises NotImplementedError: fill in its body"
    except Exception as error:  # the reader's code may fail in any way; report it, never crash
        return _raised(error)


@_keeps_random_state
def run_forward_probes(fn: Callable[..., torch.Tensor]) -> dict[str, str | None]:
    """Run each probe on forward(mha, x, mask): name -> None if it passed, else the problem. Introduced in chapter 5."""
    if not callable(fn):
        raise ValueError(f"expected a function forward(mha, x, mask), got {fn!r}")
    return {name: _run_probe(probe, fn) for name, probe in FORWARD_PROBES.items()}


def _masked_reference(fn: Callable[..., torch.Tensor]) -> str | None:
    """Two sequences, random weights, head widths other than the probes' 4, each kind of mask:
    the output must equal the module's. It catches what no probe's property names, such as a
    mistake on the masked path only."""
    T = 6
    masks = {
        "causal mask": causal_mask(T),  # (T, T)
        "padding mask": padding_mask([T, 3], T),  # (B, 1, 1, T)
        "causal and padding mask": causal_mask(T) & padding_mask([T, 3], T),  # (B, 1, T, T)
    }
    for d_model, h in [(24, 3), (12, 2)]:  # d_k = 8 and 6
        mha = _probe_module(d_model=d_model, num_heads=h)
        x = torch.randn(2, T, d_model, generator=generator(54))  # (B, T, d_model)
        for kind, mask in masks.items():
            got, want = fn(mha, x, mask), mha(x, mask=mask)
            if problem := _bad_output(got, want.shape):
                return f"{problem} (h={h}, {kind})"
            if not torch.allclose(got, want, atol=1e-5):
                return f"differs from MultiHeadAttention with h={h}, d_k={d_model // h} and a {kind}"
    return None


@_keeps_random_state
def check_forward(fn: Callable[..., torch.Tensor]) -> CheckReport:
    """Run a forward(mha, x, mask) through the probes of FORWARD_PROBES and report the ones it fails.

    reference: one sequence, no mask, two module sizes, output equal to MultiHeadAttention's.
    mask: with zero queries, under a causal mask and under a per-sequence padding mask, no query's
    output may depend on a token it may not see. padding: with a padding mask and equal values,
    the output must be that value. batch: sequences must not affect each other. When all four
    pass, one more comparison with the module, on two sequences under each kind of mask and at
    head widths other than 4, catches what no probe's property names. Introduced in chapter 5.
    """
    report = CheckReport("forward")
    results = run_forward_probes(fn)
    if all(r is not None and "NotImplementedError" in r for r in results.values()):
        report.fail(next(iter(results.values())))
        return report
    for name, problem in results.items():
        if problem is None:
            report.passed += 1
        else:
            report.fail(f"{name}: {problem}")
    if report.ok:  # the probes pass: compare with the module once more, under masks
        problem = _run_probe(_masked_reference, fn)
        if problem is None:
            report.passed += 1
        else:
            report.fail(f"with masks: {problem}")
    return report


@_keeps_random_state
def check_previous_token_score(fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckReport:
    """Check a reader's previous_token_score(attn): mean weight on key t-1 per head, (h,). Introduced in chapter 6."""
    report = CheckReport("previous_token_score")
    rng = generator(6)
    for B, h, T in [(3, 4, 6), (1, 2, 3), (2, 3, 5), (4, 1, 2)]:
        scores = torch.randn(B, h, T, T, generator=rng).masked_fill(~causal_mask(T), float("-inf"))
        attn = scores.softmax(dim=-1)  # (B, h, T, T), causal
        label = f"attn {tuple(attn.shape)}"
        t = torch.arange(1, T)
        want = attn[:, :, t, t - 1].mean(dim=(0, 2))  # (h,)
        got = _call(report, label, fn, attn=attn)
        if not report.ok:
            break

        def hint(got: torch.Tensor, attn: torch.Tensor = attn, t: torch.Tensor = t) -> str:
            if torch.allclose(got, attn[:, :, t - 1, t].mean(dim=(0, 2))):
                return "You read above the diagonal: query t, key t-1 is attn[..., t, t-1]."
            if torch.allclose(got, attn.diagonal(offset=-1, dim1=-2, dim2=-1).sum(dim=(0, 2)) / attn.shape[0] / T):
                return "You divided by T; only the T - 1 queries t >= 1 have a previous token."
            if torch.allclose(got, attn.diagonal(dim1=-2, dim2=-1)[..., 1:].mean(dim=(0, 2))):
                return "That is the weight on the query's own position; the previous token is key t-1."
            return "Average attn[b, i, t, t-1] over b and t >= 1, separately for each head i."

        _compare(report, label, got, want, hint, atol=1e-6, any_float=True)
    return report


@_keeps_random_state
def check_cls_share(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> CheckReport:
    """Check a reader's cls_share(weights, lengths): mean weight on key 0 over real queries, (layers, h). Introduced in chapter 7."""
    report = CheckReport("cls_share")
    rng = generator(10)
    for L, B, h, T, lengths in [(2, 3, 4, 6, [6, 2, 4]), (1, 1, 2, 3, [3]), (3, 2, 1, 5, [1, 5]), (2, 4, 3, 4, [4, 1, 3, 2])]:
        lengths = torch.tensor(lengths)
        keys = padding_mask(lengths, T)  # (B, 1, 1, T): True = a real key
        scores = torch.randn(L, B, h, T, T, generator=rng).masked_fill(~keys, float("-inf"))
        weights = scores.softmax(dim=-1)  # (L, B, h, T, T), padded keys get 0
        label = f"weights {tuple(weights.shape)}, lengths {lengths.tolist()}"
        real = keys[:, 0, 0]  # (B, T): the real queries
        want = weights[..., 0].mul(real[:, None]).sum(dim=(1, 3)) / real.sum()  # (L, h)
        got = _call(report, label, fn, weights=weights, lengths=lengths)
        if not report.ok:
            break

        def hint(got: torch.Tensor, weights: torch.Tensor = weights, real: torch.Tensor = real) -> str:
            if torch.allclose(got, weights[..., 0].mean(dim=(1, 3))):
                return "You averaged over padded queries too: count only positions t < lengths[b]."
            if torch.allclose(got, weights[..., 0, :].mul(real[:, None]).sum(dim=(1, 3)) / real.sum()):
                return "weights[..., 0, :] is what [CLS] attends to; the weight on [CLS] is column 0."
            per_sequence = weights[..., 0].mul(real[:, None]).sum(dim=3) / real.sum(dim=1)[:, None]  # (L, B, h)
            if torch.allclose(got, per_sequence.mean(dim=1)):
                return "You averaged each sequence first; pool all real queries of all sequences."
            return "Sum weights[l, b, i, t, 0] over b and real t < lengths[b], then divide by lengths.sum()."

        _compare(report, label, got, want, hint, atol=1e-6, any_float=True)
    return report


def _as_count(got: object) -> int | str:
    """got as an int, or why it is not a count."""
    if isinstance(got, bool):
        return f"expected a number, got {got}"
    if isinstance(got, numbers.Integral):  # int, and NumPy's integers
        return int(got)
    if isinstance(got, numbers.Real):
        return f"expected a whole number, got {type(got).__name__} {got}"
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            return (f"expected a number, got a tensor of shape {tuple(got.shape)}: "
                    "count its distinct entries with len(...) or .numel()")
        if got.is_floating_point() or got.dtype == torch.bool:
            return f"expected a whole number, got a {got.dtype} tensor"
        return int(got.item())
    return f"expected a number, got {type(got).__name__}"


def _wrong_count(report: CheckReport, label: str, got: object, want: int) -> int | None:
    """Record a pass when got is the count want, or why got is no count; return got's count only when it is wrong."""
    count = _as_count(got)
    if isinstance(count, str):
        report.fail(f"{label}: {count}")
    elif count == want:
        report.passed += 1
    else:
        return count
    return None


@_keeps_random_state
def check_favourite_keys(fn: Callable[[torch.Tensor, torch.Tensor], int]) -> CheckReport:
    """Check a reader's count_favourite_keys(q, k): distinct arg-max keys over queries. Introduced in chapter 8."""
    report = CheckReport("count_favourite_keys")
    rng = generator(7)
    for T_q, T_k, d_k in [(16, 16, 1), (8, 12, 4), (5, 3, 2), (12, 20, 3)]:
        q, k = torch.randn(T_q, d_k, generator=rng), torch.randn(T_k, d_k, generator=rng)
        label = f"q {tuple(q.shape)}, k {tuple(k.shape)}"
        scores = q @ k.T  # (T_q, T_k)
        want = len(scores.argmax(dim=-1).unique())
        got = _call(report, label, fn, q=q, k=k)
        if not report.ok:
            break
        count = _wrong_count(report, label, got, want)
        if count is None:
            continue
        if count == len(scores.argmax(dim=0).unique()):
            report.fail(f"{label}: you took each key's favourite query; take the arg-max over keys (dim=-1)")
        elif count == T_q:
            report.fail(f"{label}: expected {want}, got {count}, the number of queries: count distinct keys (unique)")
        else:
            report.fail(f"{label}: expected {want}, got {count}")
    return report


@_keeps_random_state
def check_key_padding_mask(fn: Callable[[list[int], int], torch.Tensor]) -> CheckReport:
    """Check a reader's key_padding_mask_from_lengths(lengths, T): (B, T), True = padding. Introduced in chapter 9."""
    report = CheckReport("key_padding_mask_from_lengths")
    for lengths, T in [([3, 1, 4], 4), ([2], 5), ([0, 6], 6), ([5, 2, 2, 1], 7)]:
        label = f"lengths {lengths}, T={T}"
        want = to_torch_key_padding_mask(padding_mask(lengths, T))  # (B, T)
        got = _call(report, label, fn, lengths=lengths, T=T)
        if not report.ok:
            break
        if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
            report.fail(f"{label}: expected booleans, got dtype {got.dtype}")
            break

        def hint(got: torch.Tensor, want: torch.Tensor = want) -> str:
            if torch.equal(got, ~want):
                return "True marks padding in nn.MultiheadAttention: your mask is inverted."
            if torch.equal(got, want.flip(-1)):
                return "The padding is at the start of each row; these sequences are padded at the end."
            return "Position t of sequence b is padding when t >= lengths[b]."

        _compare(report, label, got, want, hint)
    return report


@_keeps_random_state
def check_repeat_kv(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> CheckReport:
    """Check a reader's repeat_kv(x, num_heads): (B, h_kv, T, d_k) -> (B, h, T, d_k), grouped. Introduced in chapter 10."""
    report = CheckReport("repeat_kv")
    rng = generator(9)
    for B, h_kv, h, T, d_k in [(2, 2, 8, 3, 4), (1, 1, 4, 2, 2), (1, 3, 6, 1, 2), (3, 4, 8, 5, 3), (2, 2, 2, 3, 2)]:
        x = torch.randn(B, h_kv, T, d_k, generator=rng)  # (B, h_kv, T, d_k)
        label = f"x {tuple(x.shape)}, h={h}"
        want = x.repeat_interleave(h // h_kv, dim=1)  # (B, h, T, d_k)
        got = _call(report, label, fn, x=x, num_heads=h)
        if not report.ok:
            break

        def hint(got: torch.Tensor, x: torch.Tensor = x, h: int = h, h_kv: int = h_kv) -> str:
            if torch.equal(got, x.repeat(1, h // h_kv, 1, 1)):
                return "That tiles the KV heads (0, 1, 0, 1, ...); query heads come in groups (0, 0, 1, 1, ...)."
            return "Query head i reads KV head i // (h / h_kv): use repeat_interleave on dim 1."

        _compare(report, label, got, want, hint)
    return report


def _post_norm_cases() -> list[tuple[str, torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
    """(label, x, context, mask): self-attention with no mask, causal and padding masks, and
    cross-attention over a context of another length with a padding mask over it."""
    rng = generator(12)
    x = torch.randn(2, 6, 12, generator=rng)  # (B, T, d_model)
    context = torch.randn(2, 9, 12, generator=rng)  # (B, T_src, d_model)
    return [
        ("self-attention, no mask", x, None, None),
        ("self-attention, causal mask", x, None, causal_mask(6)),
        ("self-attention, padding mask", x, None, padding_mask([6, 4], 6)),
        ("cross-attention, padding mask", x, context, padding_mask([9, 5], 9)),
    ]


@_keeps_random_state
def check_post_norm(layer_class: Callable[[int, int], torch.nn.Module]) -> CheckReport:
    """Check a reader's post-norm sublayer: forward(x, context, mask) = norm(x + attention(x, ...)).

    layer_class(d_model, num_heads) must build a layer with `norm` (a LayerNorm) and `attention`
    (a MultiHeadAttention), as chapter 9's Sublayer does; the checker gives the LayerNorm weights
    other than 1 and 0, so that a fresh LayerNorm cannot pass for the layer's own. Introduced in
    chapter 9.
    """
    report = CheckReport("post_norm")
    if isinstance(layer_class, torch.nn.Module):
        report.fail("pass the class itself, such as PostNormSublayer, not a layer built from it")
        return report
    try:
        torch.manual_seed(0)
        layer = layer_class(12, 3).eval()
    except Exception as error:  # the reader's class may fail in any way; report it, never crash
        report.fail(f"building layer_class(12, 3) raised {type(error).__name__}: {_first_line(error)}{_where(error)}")
        return report
    norm, attention = getattr(layer, "norm", None), getattr(layer, "attention", None)
    if not (isinstance(norm, torch.nn.LayerNorm) and isinstance(attention, MultiHeadAttention)):
        report.fail(
            "the layer needs the Sublayer's parts: self.norm, a LayerNorm, and self.attention, "
            "a multihead.MultiHeadAttention"
        )
        return report
    with torch.no_grad():  # LayerNorm weights other than 1 and 0, where it has them
        for weight, low, high in ((norm.weight, 0.5, 2.0), (norm.bias, -1.0, 1.0)):
            if weight is not None:
                weight.copy_(torch.linspace(low, high, 12))
    weights = {f"self.{name}": value for name, value in layer.state_dict().items()}
    for label, x, context, mask in _post_norm_cases():
        with torch.no_grad():
            attended = attention(x, context=context, mask=mask)  # (B, T, d_model)
            want = norm(x + attended)
            before = {name: _snapshot(value) for name, value in weights.items()}
            got = _call(report, label, layer, x=x, context=context, mask=mask)
        changed = [name for name, value in weights.items() if not _unchanged(before[name], value)]
        if changed:
            report.fail(f"{label}: your forward changed the layer's own {', '.join(changed)}")
        if not report.ok:
            break

        def hint(got: torch.Tensor, x: torch.Tensor = x, context=context, mask=mask, attended=attended) -> str:
            if torch.allclose(got, x + attention(norm(x), context=context, mask=mask), atol=1e-5):
                return "That is the pre-norm order, x + attention(norm(x)): normalise the sum instead."
            if torch.allclose(got, norm(attended), atol=1e-5):
                return "The residual is missing: add x to the attention's output before the norm."
            if torch.allclose(got, x + norm(attended), atol=1e-5):
                return "You normalised the attention's output alone; normalise the sum x + attention(x)."
            if norm.weight is not None and torch.allclose(got, F.layer_norm(x + attended, (12,)), atol=1e-5):
                return "That is a fresh LayerNorm with weights 1 and 0; use the layer's own, self.norm."
            if mask is not None and torch.allclose(got, norm(x + attention(x, context=context)), atol=1e-5):
                return "The mask does not reach the attention: pass mask=mask on."
            if torch.allclose(got, norm(x + attention(norm(x), context=context, mask=mask)), atol=1e-5):
                return "In the post-norm order the attention reads x itself, not norm(x)."
            return "Compute self.norm(x + self.attention(x, context=context, mask=mask))."

        with torch.no_grad():
            _compare(report, label, got, want, hint, atol=1e-5)
    return report


def _measured_reach(window: int, layers: int) -> int:
    """How many tokens back the last token reads after `layers` sliding-window layers, by composing masks."""
    T = layers * window + 2  # longer than any reach
    mask = sliding_window_mask(T, window=window).long()  # (T, T): 1 where query i reads key j
    reach = torch.linalg.matrix_power(mask, layers).clamp(max=1)  # (T, T): paths of `layers` steps
    return T - 1 - int(reach[-1].nonzero().min())


@_keeps_random_state
def check_window_reach(fn: Callable[[int, int], int]) -> CheckReport:
    """Check a reader's window_reach(window, layers): how far back the last token reads. Introduced in chapter 10.

    The answers come from composing `sliding_window_mask` over the layers, for windows and
    depths other than the chapter's example, a window of 1 among them.
    """
    report = CheckReport("window_reach")
    for W, L in [(3, 4), (2, 5), (5, 3), (8, 2), (1, 3), (3, 1)]:
        label = f"window={W}, layers={L}"
        want = _measured_reach(W, L)
        got = _call(report, label, fn, window=W, layers=L)
        if not report.ok:
            break
        count = _wrong_count(report, label, got, want)
        if count is None:
            continue
        if count == want + 1:
            report.fail(f"{label}: expected {want}, got {count}: that counts the last token itself")
        elif count == W - 1 and L > 1:
            report.fail(f"{label}: expected {want}, got {count}, one layer's reach: each layer adds W - 1")
        elif count == L * W and W > 1:
            report.fail(f"{label}: expected {want}, got {count}: a window of W tokens reaches W - 1 back, not W")
        else:
            report.fail(f"{label}: expected {want}, got {count}")
    return report
