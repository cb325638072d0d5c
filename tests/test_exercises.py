import torch

from multihead import merge_heads, split_heads
from multihead.data import IGNORE
from multihead.exercises import check_head_rows, check_merge_heads, check_split_heads, check_task_targets


def test_reference_solutions_pass() -> None:
    for report in (
        check_split_heads(split_heads),
        check_merge_heads(merge_heads),
        check_head_rows(lambda W, h, i: W.view(h, -1, W.shape[1])[i]),
    ):
        assert report.ok, report
        assert "checks passed" in repr(report)


def test_split_without_transpose_gets_a_hint() -> None:
    report = check_split_heads(lambda x, h: x.view(x.shape[0], h, x.shape[1], -1))
    assert not report.ok
    assert "without the transpose" in repr(report)


def test_merge_without_transpose_gets_a_hint() -> None:
    report = check_merge_heads(lambda x: x.reshape(x.shape[0], x.shape[2], -1))
    assert "without transposing back" in repr(report)


def test_columns_instead_of_rows_gets_a_hint() -> None:
    report = check_head_rows(lambda W, h, i: W[:, i * (W.shape[0] // h) : (i + 1) * (W.shape[0] // h)].T)
    assert "You took columns" in repr(report)


def test_unfinished_and_crashing_functions_are_reported() -> None:
    def unfinished(x: torch.Tensor, h: int) -> torch.Tensor:
        raise NotImplementedError

    assert "NotImplementedError" in repr(check_split_heads(unfinished))
    assert "raised RuntimeError" in repr(check_split_heads(lambda x, h: x.view(-1, 7, 13)))
    assert "expected a tensor, got list" in repr(check_merge_heads(lambda x: [1]))
    assert "expected shape (4, 4, 16, 128), got (4, 16, 4, 128)" in repr(check_split_heads(lambda x, h: x.view(4, 16, 4, 128)))


def task_targets(x: torch.Tensor, vocab_size: int, sign: int = -1, first: int = IGNORE) -> torch.Tensor:
    y = torch.full_like(x, first)
    y[:, 1:] = (x[:, :-1] + sign * x[:, :1]) % vocab_size
    return y


def test_task_targets_checker() -> None:
    assert check_task_targets(task_targets).ok
    assert "You added the first token" in repr(check_task_targets(lambda x, v: task_targets(x, v, sign=1)))
    assert "Position 0 has no answer" in repr(check_task_targets(lambda x, v: task_targets(x, v, first=0)))


def test_check_forward_passes_the_reference_and_reports_each_probe() -> None:
    from multihead import bugs
    from multihead.exercises import FORWARD_PROBES, check_forward

    for correct in (lambda mha, x, mask: mha(x, mask=mask), bugs.reference_forward):
        report = check_forward(correct)
        assert report.ok, report
        assert report.passed == len(FORWARD_PROBES) + 1  # and the comparison under masks
        assert "all 5 checks passed" in repr(report)
    assert "output = correct output + x" in repr(check_forward(bugs.forward_9))
    assert "changing sequence 1 changed the output of sequence 0" in repr(check_forward(bugs.forward_10))
    assert "query 0 reads a token it may not see (causal mask)" in repr(check_forward(bugs.forward_2))
    assert "the output holds NaN or inf (causal mask)" in repr(check_forward(bugs.forward_8))
    assert "yet the output is not that value" in repr(check_forward(bugs.forward_5))
    assert "RuntimeError: view size is not compatible" in repr(check_forward(bugs.forward_6))


def test_check_forward_reports_unfinished_and_wrong_shapes_once_per_problem() -> None:
    from multihead.exercises import check_forward

    def unfinished(mha, x, mask=None):
        raise NotImplementedError

    report = check_forward(unfinished)
    assert report.problems == ["the function still raises NotImplementedError: fill in its body"]
    wrong_shape = check_forward(lambda mha, x, mask: x[:, :1])
    assert len(wrong_shape.problems) == 4 and "expected shape" in repr(wrong_shape)
    assert "expected a tensor, got list" in repr(check_forward(lambda mha, x, mask: [1]))


def test_previous_token_checker() -> None:
    from multihead.exercises import check_previous_token_score

    assert check_previous_token_score(lambda a: a.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 2))).ok
    above = check_previous_token_score(lambda a: a.diagonal(offset=1, dim1=-2, dim2=-1).mean(dim=(0, 2)))
    assert "above the diagonal" in repr(above)


def test_cls_share_checker() -> None:
    from multihead.exercises import check_cls_share

    def right(weights, lengths):
        real = torch.arange(weights.shape[-1]) < lengths[:, None]  # (B, T)
        return (weights[..., 0] * real[:, None]).sum(dim=(1, 3)) / real.sum()

    def with_padding(weights, lengths):
        return weights[..., 0].mean(dim=(1, 3))

    def row_not_column(weights, lengths):
        return right(weights.transpose(-2, -1), lengths)

    def per_sequence(weights, lengths):
        real = torch.arange(weights.shape[-1]) < lengths[:, None]  # (B, T)
        return ((weights[..., 0] * real[:, None]).sum(dim=3) / lengths[:, None]).mean(dim=1)

    assert check_cls_share(right).ok
    assert check_cls_share(lambda w, n: right(w.double(), n)).ok  # float64 is right too
    assert "padded queries" in repr(check_cls_share(with_padding))
    assert "column 0" in repr(check_cls_share(row_not_column))
    assert "averaged each sequence first" in repr(check_cls_share(per_sequence))
    assert "expected shape (2, 4)" in repr(check_cls_share(lambda w, n: w[..., 0].mean(dim=(2, 3))))


def test_favourite_keys_checker() -> None:
    from multihead.exercises import check_favourite_keys

    assert check_favourite_keys(lambda q, k: len((q @ k.T).argmax(dim=-1).unique())).ok
    wrong_axis = check_favourite_keys(lambda q, k: len((q @ k.T).argmax(dim=0).unique()))
    assert not wrong_axis.ok and "arg-max over keys" in repr(wrong_axis)


def test_key_padding_mask_checker() -> None:
    from multihead.exercises import check_key_padding_mask

    assert check_key_padding_mask(lambda lengths, T: torch.arange(T)[None] >= torch.tensor(lengths)[:, None]).ok
    inverted = check_key_padding_mask(lambda lengths, T: torch.arange(T)[None] < torch.tensor(lengths)[:, None])
    assert "inverted" in repr(inverted)


def test_repeat_kv_checker() -> None:
    from multihead.exercises import check_repeat_kv

    assert check_repeat_kv(lambda x, h: x.repeat_interleave(h // x.shape[1], dim=1)).ok
    assert "tiles the KV heads" in repr(check_repeat_kv(lambda x, h: x.repeat(1, h // x.shape[1], 1, 1)))
