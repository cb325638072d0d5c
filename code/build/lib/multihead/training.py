"""A small, seeded training loop for the CPU (chapters 1, 4, 6, 8).

`train` trains one model. `train_together` trains several `TinyAttentionModel`s of one
configuration at once (one per seed): `TinyAttentionEnsemble` stacks their parameters along a
leading axis E and runs all of them as one batched computation. Adam's update is elementwise,
so each model takes the steps it would take alone, up to floating-point rounding (batched
matmuls add in another order, and training amplifies such differences over many steps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .attention import scaled_dot_product_attention
from .data import IGNORE, StoryCorpus, generator, next_token_windows
from .heads import merge_heads, split_heads
from .masks import causal_mask
from .module import MultiHeadAttention

Batch = tuple[torch.Tensor, torch.Tensor]


def train(
    model: nn.Module,
    make_batch: Callable[[torch.Generator], Batch],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    steps: int,
    lr: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    """Train with Adam on fresh batches from make_batch; return the loss of every step. Introduced in chapter 1."""
    if steps <= 0 or lr <= 0:
        raise ValueError(f"steps={steps} and lr={lr} must be positive")
    rng = generator(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        inputs, targets = make_batch(rng)
        loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


class TinyAttentionModel(nn.Module):
    """Embeddings, one multi-head attention layer with a residual, and an MLP readout. Introduced in chapter 1.

    For a fixed d_model, the parameter count does not depend on num_heads.
    """

    def __init__(self, vocab_size: int, seq_len: int, d_model: int, num_heads: int, *, causal: bool = False) -> None:
        super().__init__()
        self.causal = causal  # a language model: position t sees tokens 0..t only
        self.token = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(seq_len, d_model)
        self.attention = MultiHeadAttention(d_model, num_heads)
        self.norm = nn.LayerNorm(d_model)
        self.readout = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, vocab_size))

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> (B, T, d_model)."""
        return self.token(tokens) + self.position(torch.arange(tokens.shape[1], device=tokens.device))

    def attention_mask(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """The causal mask for these tokens, or None."""
        return causal_mask(tokens.shape[1], device=tokens.device) if self.causal else None

    def forward(self, tokens: torch.Tensor, head_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T) -> logits (B, T, vocab_size); head_mask (h,) switches heads off."""
        x = self.embed(tokens)  # (B, T, d_model)
        x = x + self.attention(x, mask=self.attention_mask(tokens), head_mask=head_mask)  # (B, T, d_model)
        return self.readout(self.norm(x))  # (B, T, vocab_size)

    def attention_weights(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> the layer's attention weights (B, h, T, T)."""
        with torch.no_grad():
            _, attn = self.attention(self.embed(tokens), mask=self.attention_mask(tokens), return_attention=True)
        return attn


def train_together(
    models: Sequence[TinyAttentionModel],
    make_batch: Callable[[torch.Generator], Batch],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    steps: int,
    seeds: Sequence[int],
    lr: float = 3e-3,
) -> torch.Tensor:
    """Train models[i] as `train(models[i], ..., seed=seeds[i])` would, all in one batched pass. Introduced in chapter 1.

    The models must share one configuration. They are updated in place; the result holds the
    loss of every model at every step, shape (len(models), steps).
    """
    if steps <= 0 or lr <= 0:
        raise ValueError(f"steps={steps} and lr={lr} must be positive")
    if len(models) == 0 or len(models) != len(seeds):
        raise ValueError(f"need one seed per model, got {len(models)} models and {len(seeds)} seeds")
    ensemble = TinyAttentionEnsemble(models)
    rngs = [generator(seed) for seed in seeds]
    optimizer = torch.optim.Adam(ensemble.parameters(), lr=lr)
    losses = torch.empty(len(models), steps)
    for step in range(steps):
        batches = [make_batch(rng) for rng in rngs]
        inputs = torch.stack([x for x, _ in batches])  # (E, B, T)
        logits = ensemble(inputs)  # (E, B, T, V)
        loss = torch.stack([loss_fn(logits[e], y) for e, (_, y) in enumerate(batches)])  # (E,)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # the models share no parameter, so each gets its own gradient
        optimizer.step()
        losses[:, step] = loss.detach()
    ensemble.write_back(models)
    return losses


def token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over (B, T, V) logits and (B, T) targets; IGNORE targets are skipped. Introduced in chapter 1."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # (B*T, V) vs (B*T,)


@torch.no_grad()
def token_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of non-ignored positions whose arg-max prediction is right. Introduced in chapter 1."""
    keep = targets != IGNORE
    return (logits.argmax(-1)[keep] == targets[keep]).float().mean().item()


class TinyAttentionEnsemble(nn.Module):
    """E TinyAttentionModels of one configuration, run as one batched model. Introduced in chapter 1.

    Every parameter of the members is stacked along a new leading axis E; `forward` takes
    (E, B, T) tokens, one batch per member, and returns (E, B, T, vocab_size) logits, each
    member's own. The attention is the member's: heads split from its own projections, the
    E * B sequences side by side in one call of the explicit attention (matmuls and a
    softmax), which is faster than PyTorch's fused CPU kernel at these tiny sizes.
    """

    def __init__(self, models: Sequence[TinyAttentionModel]) -> None:
        super().__init__()
        configs = {_config(m) for m in models}
        if len(configs) != 1:
            raise ValueError(f"an ensemble needs models of one configuration, got {sorted(configs)}")
        (self.vocab_size, self.seq_len, self.d_model, self.num_heads, self.causal) = configs.pop()
        names = [name for name, _ in models[0].named_parameters()]
        self.names = {name: name.replace(".", "_") for name in names}
        for name, key in self.names.items():
            stacked = torch.stack([dict(m.named_parameters())[name].detach() for m in models])  # (E, ...)
            self.register_parameter(key, nn.Parameter(stacked.clone()))

    def p(self, name: str) -> torch.Tensor:
        """The stacked parameter (E, ...) of the members' parameter `name`."""
        return getattr(self, self.names[name])

    def linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Each member's nn.Linear `name`: (E, B, T, d_in) -> (E, B, T, d_out)."""
        weight, bias = self.p(f"{name}.weight"), self.p(f"{name}.bias")  # (E, d_out, d_in), (E, d_out)
        return torch.einsum("ebti,eoi->ebto", x, weight) + bias[:, None, None]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (E, B, T) -> logits (E, B, T, vocab_size)."""
        E, B, T = tokens.shape
        members = torch.arange(E, device=tokens.device)[:, None, None]  # (E, 1, 1)
        x = self.p("token.weight")[members, tokens] + self.p("position.weight")[:, None, :T]  # (E, B, T, d_model)
        q, k, v = (self.linear(x, f"attention.W_{n}").flatten(0, 1) for n in "qkv")  # (E*B, T, d_model) each
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))  # (E*B, h, T, d_k)
        mask = causal_mask(T, device=tokens.device) if self.causal else None  # (T, T) or None
        heads, _ = scaled_dot_product_attention(q, k, v, mask)  # (E*B, h, T, d_k)
        attended = merge_heads(heads).view(E, B, T, self.d_model)  # (E, B, T, d_model)
        x = x + self.linear(attended, "attention.W_o")  # (E, B, T, d_model)
        x = F.layer_norm(x, (self.d_model,))  # (E, B, T, d_model), before each member's own scale and shift
        x = x * self.p("norm.weight")[:, None, None] + self.p("norm.bias")[:, None, None]
        x = F.gelu(self.linear(x, "readout.0"))  # (E, B, T, 4 * d_model)
        return self.linear(x, "readout.2")  # (E, B, T, vocab_size)

    @torch.no_grad()
    def write_back(self, models: Sequence[TinyAttentionModel]) -> None:
        """Copy member i's parameters into models[i] and put the models in eval mode."""
        for i, model in enumerate(models):
            for name, param in model.named_parameters():
                param.copy_(self.p(name)[i])
            model.eval()


def _config(model: TinyAttentionModel) -> tuple[int, int, int, int, bool]:
    """The settings that fix a TinyAttentionModel's parameter shapes and its computation."""
    if not isinstance(model, TinyAttentionModel):
        raise ValueError(f"an ensemble holds TinyAttentionModels, got {type(model).__name__}")
    if model.attention.W_q.bias is None or model.attention.num_kv_heads != model.attention.num_heads:
        raise ValueError("an ensemble holds models with biased, classic multi-head attention")
    if model.attention.dropout:
        raise ValueError(f"an ensemble runs no dropout, got dropout={model.attention.dropout}")
    vocab_size, d_model = model.token.weight.shape
    return (vocab_size, model.position.weight.shape[0], d_model, model.attention.num_heads, model.causal)


def train_story_models(
    corpus: StoryCorpus,
    seeds: Sequence[int],
    *,
    steps: int = 400,
    batch_size: int = 32,
    seq_len: int = 16,
    d_model: int = 32,
    num_heads: int = 4,
    lr: float = 1e-2,
) -> tuple[list[TinyAttentionModel], torch.Tensor]:
    """Chapter 6's causal language models, one per seed, trained together. Introduced in chapter 6.

    Model i is initialised under torch.manual_seed(seeds[i]) (the global generator is restored
    afterwards) and trained on windows of seq_len tokens of the corpus's training stream.
    Returns the models (in eval mode) and the losses, (len(seeds), steps).
    """
    with torch.random.fork_rng():
        models = []
        for seed in seeds:
            torch.manual_seed(seed)
            models.append(TinyAttentionModel(len(corpus.vocab.words), seq_len, d_model, num_heads, causal=True))
    make_batch = partial(next_token_windows, corpus.streams["train"], batch_size, seq_len)
    losses = train_together(models, make_batch, token_loss, steps=steps, seeds=seeds, lr=lr)
    return models, losses
