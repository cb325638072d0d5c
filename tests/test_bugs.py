"""Chapter 5's ten bugs and the probes of check_forward: every bug is wrong, the probes isolate them."""

import difflib
import inspect
import linecache
import math

import pytest
import torch

from multihead import MultiHeadAttention, bugs, causal_mask, padding_mask
from multihead.exercises import FORWARD_PROBES, check_forward, run_forward_probes

FORWARDS = [bug.forward for bug in bugs.ALL]
IDS = [bug.name for bug in bugs.ALL]


def caught_by() -> dict[str, set[str]]:
    """Bug name -> the probes that catch it."""
    return {
        bug.name: {probe for probe, problem in run_forward_probes(bug.forward).items() if problem}
        for bug in bugs.ALL
    }


def test_ten_anonymous_bugs_numbered_in_order() -> None:
    assert [fn.__name__ for fn in FORWARDS] == [f"forward_{n}" for n in range(1, 11)]
    assert len({bug.name for bug in bugs.ALL}) == len(bugs.ALL)
    assert all(bug.why.endswith(".") for bug in bugs.ALL)


@pytest.mark.parametrize("forward", FORWARDS, ids=IDS)
def test_printed_source_gives_nothing_away(forward) -> None:
    text = bugs.source(forward)
    lines = text.splitlines()
    assert lines[0] == f"def {forward.__name__}(mha, x, mask=None):"
    assert '"""' not in text and max(map(len, lines)) <= 80
    # The comments are the same in every bug and in the correct pass.
    comments = [line.split("#", 1)[1] for line in lines if "#" in line]
    reference = [line.split("#", 1)[1] for line in bugs.source(bugs.reference_forward).splitlines() if "#" in line]
    assert comments == reference
    # The docstring, hidden from the print anyway, is the same for every bug.
    assert inspect.getdoc(forward) == inspect.getdoc(bugs.forward_1)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("B", "T", "d_model", "h"), [(2, 5, 16, 4), (3, 7, 24, 3), (1, 4, 8, 2)])
@pytest.mark.parametrize("mask_kind", [None, "causal", "padding"])
def test_reference_forward_equals_the_module(seed: int, B: int, T: int, d_model: int, h: int, mask_kind) -> None:
    torch.manual_seed(seed)
    mha = MultiHeadAttention(d_model, h).eval()
    x = torch.randn(B, T, d_model)
    mask = {None: None, "causal": causal_mask(T), "padding": padding_mask([T - i % T for i in range(B)], T)}[mask_kind]
    with torch.no_grad():
        torch.testing.assert_close(bugs.reference_forward(mha, x, mask), mha(x, mask=mask))


def _differs_from_the_module(forward, x: torch.Tensor, mha: MultiHeadAttention, mask) -> bool:
    try:
        got = forward(mha, x, mask)
    except RuntimeError:
        return True
    want = mha(x, mask=mask)
    return got.shape != want.shape or not torch.allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("forward", FORWARDS, ids=IDS)
def test_every_bug_fails_the_reference_comparison(forward) -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 6, 16)
    masks = [None, causal_mask(6), padding_mask([6, 3], 6)]
    with torch.no_grad():
        assert any(_differs_from_the_module(forward, x, mha, mask) for mask in masks)


def test_probes_pass_on_the_correct_module() -> None:
    for correct in (lambda mha, x, mask: mha(x, mask=mask), bugs.reference_forward):
        assert run_forward_probes(correct) == dict.fromkeys(FORWARD_PROBES)


def test_probes_do_not_touch_the_global_random_state() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    check_forward(bugs.reference_forward)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("forward", FORWARDS, ids=IDS)
def test_reports_fit_the_page(forward) -> None:
    assert max(map(len, repr(check_forward(forward)).splitlines())) <= 80


def test_probes_restore_the_thread_count() -> None:
    threads = torch.get_num_threads()
    check_forward(bugs.forward_6)  # raises inside every probe
    assert torch.get_num_threads() == threads


def test_every_bug_is_caught_and_every_probe_isolates_a_bug() -> None:
    caught = caught_by()
    assert all(caught.values()), caught
    for probe in FORWARD_PROBES:
        alone = [name for name, probes in caught.items() if probes == {probe}]
        assert alone, f"no bug is caught by {probe!r} alone: {caught}"


def test_the_table_the_chapter_shows() -> None:
    caught = caught_by()
    numbers = {bug.name: n for n, bug in enumerate(bugs.ALL, start=1)}
    alone = {probe: sorted(numbers[name] for name, c in caught.items() if c == {probe}) for probe in FORWARD_PROBES}
    assert alone == {"reference": [3], "mask": [2, 8], "padding": [5], "batch": [10]}
    assert caught["missing contiguous()"] == set(FORWARD_PROBES)  # it crashes everywhere
    assert caught["mask after the softmax"] == {"padding"}


def _fix(forward, wrong: str, right: str):
    """forward's source with one line replaced, compiled in the bugs module's namespace."""
    text = inspect.getsource(forward)
    assert text.count(wrong) == 1
    fixed = text.replace(wrong, right)
    filename = f"<fixed {forward.__name__}>"
    linecache.cache[filename] = (len(fixed), None, fixed.splitlines(keepends=True), filename)  # for getsource
    namespace = dict(vars(bugs))
    exec(compile(fixed, filename, "exec"), namespace)
    return namespace[forward.__name__]


ONE_LINE_FIXES = {
    "forward_1": ("W(x).view(B, h, T, d_k)", "W(x).view(B, T, h, d_k).transpose(1, 2)"),
    "forward_2": ("masked_fill(~mask, 0.0)", 'masked_fill(~mask, float("-inf"))'),
    "forward_3": ("math.sqrt(d_model)", "math.sqrt(d_k)"),
    "forward_4": ("view(T, B, h, d_k).transpose(0, 1)", "view(B, T, h, d_k).transpose(1, 2)"),
    "forward_6": ("transpose(1, 2).view(", "transpose(1, 2).contiguous().view("),
    "forward_7": ("softmax(dim=-2)", "softmax(dim=-1)"),
    "forward_8": ("masked_fill(mask,", "masked_fill(~mask,"),
    "forward_9": ("return x + mha.W_o", "return mha.W_o"),
    "forward_10": ("heads.permute(2, 0, 1, 3).reshape(", "heads.transpose(1, 2).reshape("),
}


@pytest.mark.parametrize(("name", "change"), ONE_LINE_FIXES.items())
def test_one_line_fixes_pass_every_probe(name: str, change: tuple[str, str]) -> None:
    forward = getattr(bugs, name)
    fixed = _fix(forward, *change)
    assert check_forward(fixed).ok
    changed = bugs.changed_lines(forward, fixed)
    assert len(changed) == 2 and changed[0].startswith("- ") and changed[1].startswith("+ ")
    # The same count, straight from difflib on inspect.getsource, def lines included.
    old, new = inspect.getsource(forward).splitlines(), inspect.getsource(forward).replace(*change).splitlines()
    assert sum(line[:2] in ("- ", "+ ") for line in difflib.ndiff(old, new)) == 2


def test_the_exercise_bug_has_a_one_line_fix_and_the_mask_bug_needs_more() -> None:
    assert "forward_4" in ONE_LINE_FIXES  # chapter 5's "Fix bug 4 by changing one line"
    assert len(bugs.changed_lines(bugs.reference_forward, bugs.forward_4)) == 2
    assert len(bugs.changed_lines(bugs.reference_forward, bugs.forward_5)) == 4  # two lines moved


def test_source_and_changed_lines_work_on_any_function() -> None:
    def scaled(a, b=2):
        """A docstring."""
        return a / math.sqrt(b)

    def halved(a, b=2):
        return a / b

    assert bugs.source(scaled) == "def scaled(a, b=2):\n    return a / math.sqrt(b)"
    assert bugs.changed_lines(scaled, halved) == ["-     return a / math.sqrt(b)", "+     return a / b"]
    assert bugs.changed_lines(halved, halved) == []


@pytest.mark.parametrize("bad", [None, 3, "forward_1", len, MultiHeadAttention])
def test_source_rejects_what_is_not_a_python_function(bad) -> None:
    with pytest.raises(ValueError, match="needs a Python function"):
        bugs.source(bad)
    with pytest.raises(ValueError, match="needs a Python function"):
        bugs.changed_lines(bugs.forward_1, bad)


@pytest.mark.parametrize("bad", [None, 3, "forward"])
def test_run_forward_probes_rejects_what_is_not_callable(bad) -> None:
    with pytest.raises(ValueError, match="expected a function forward"):
        run_forward_probes(bad)
    with pytest.raises(ValueError, match="expected a function forward"):
        check_forward(bad)


def test_broken_attention_runs_the_bug_on_the_layers_own_weights() -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4)
    x, mask = torch.randn(2, 8, 32), causal_mask(8)
    reference = bugs.BrokenAttention(mha, bugs.reference_forward)
    torch.testing.assert_close(reference(x, mask=mask), mha(x, mask=mask))
    broken = bugs.BrokenAttention(mha, bugs.forward_1)
    torch.testing.assert_close(broken(x, mask=mask), bugs.forward_1(mha, x, mask))
    assert {name for name, _ in broken.named_parameters()} == {f"attention.{n}" for n, _ in mha.named_parameters()}
    broken(x, mask=mask).sum().backward()  # the gradient reaches the layer's weights
    assert mha.W_q.weight.grad is not None and mha.W_q.weight.grad.abs().sum() > 0


def test_broken_attention_rejects_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="wraps a MultiHeadAttention, got Linear"):
        bugs.BrokenAttention(torch.nn.Linear(4, 4), bugs.forward_1)
    with pytest.raises(ValueError, match="forward must be a function"):
        bugs.BrokenAttention(MultiHeadAttention(8, 2), "forward_1")
    broken = bugs.BrokenAttention(MultiHeadAttention(8, 2), bugs.forward_1)
    with pytest.raises(ValueError, match="no head_mask"):
        broken(torch.randn(1, 3, 8), head_mask=torch.ones(2))
