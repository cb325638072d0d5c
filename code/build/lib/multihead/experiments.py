"""Recorded training experiments, for runs longer than a reader waits (chapters 1 and 8).

A chapter's headline experiment trains one model per seed and head count for thousands of
Adam steps, until the answer no longer changes: minutes on a 2-core CPU. An `Experiment`
names every setting of such a run. `record` trains it and `save` writes the result into the
package's `records/` folder (`make records` rewrites them all). A chapter calls `load`, which
refuses a record made with other settings and rebuilds the trained models, and `replay`,
which re-trains the first steps on the reader's machine: equal losses show that the record
is this code's output.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch

from .data import first_minus_previous, first_plus_previous, generator
from .training import TinyAttentionModel, token_loss, train_together

RECORDS = Path(__file__).parent / "records"
TASKS = {"difference": first_minus_previous, "sum": first_plus_previous}  # y[t] from x[t-1] and x[0]


@dataclass(frozen=True)
class Experiment:
    """Chapter 1's task trained for each head count and seed. Introduced in chapter 1."""

    name: str  # the record's file: records/{name}.pt
    n_vocab: int  # tokens 0 .. n_vocab - 1
    seq_len: int  # T, tokens per sequence
    d_model: int  # the same for every head count
    heads: tuple[int, ...]  # the head counts h to train
    seeds: tuple[int, ...]  # one model per seed: its initial weights and its batches
    steps: int  # Adam steps, each on a fresh batch
    batch_size: int = 64  # sequences per step
    lr: float = 3e-3  # Adam's learning rate, constant
    block: int = 10  # the record keeps the mean loss of each block of this many steps
    task: str = "difference"  # (x[t-1] - x[0]) mod n_vocab; "sum": (x[t-1] + x[0]) mod n_vocab

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r} is not one of {sorted(TASKS)}")
        bad = [h for h in self.heads if h <= 0 or self.d_model % h]
        if bad or not self.heads:
            raise ValueError(f"heads={self.heads} must be positive divisors of d_model={self.d_model}")
        if not self.seeds or self.block <= 0 or self.steps % self.block:
            raise ValueError(
                f"need seeds (got {self.seeds}) and steps={self.steps} divisible by block={self.block}"
            )

    def models(self, num_heads: int) -> list[TinyAttentionModel]:
        """Fresh models, model i initialised under torch.manual_seed(seeds[i]); the global generator is kept."""
        with torch.random.fork_rng():
            models = []
            for seed in self.seeds:
                torch.manual_seed(seed)
                models.append(TinyAttentionModel(self.n_vocab, self.seq_len, self.d_model, num_heads))
        return models

    def train(self, num_heads: int, steps: int) -> tuple[list[TinyAttentionModel], torch.Tensor]:
        """Train every seed's model for `steps` steps; -> models, block-mean losses (seeds, steps // block)."""
        if steps <= 0 or steps % self.block:
            raise ValueError(f"steps={steps} must be a positive multiple of block={self.block}")
        models = self.models(num_heads)
        make_batch = partial(TASKS[self.task], self.batch_size, self.seq_len, self.n_vocab)
        losses = train_together(models, make_batch, token_loss, steps=steps, seeds=self.seeds, lr=self.lr)
        return models, losses.unflatten(1, (-1, self.block)).mean(-1)  # (seeds, steps) -> (seeds, blocks)

    def test_set(self, size: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out sequences and targets, (size, T) each, from their own seed."""
        return TASKS[self.task](size, self.seq_len, self.n_vocab, generator(1234))


HEADS = Experiment("ch1_heads", n_vocab=12, seq_len=10, d_model=32, heads=(1, 4), seeds=tuple(range(10)), steps=6000)
SWEEP = Experiment(
    "ch8_sweep", n_vocab=8, seq_len=8, d_model=32, heads=(1, 2, 4, 8, 16, 32), seeds=tuple(range(8)), steps=2000
)
EXPERIMENTS = (HEADS, SWEEP)


@dataclass
class Run:
    """A trained experiment: per head count, the models and their block-mean losses. Introduced in chapter 1."""

    experiment: Experiment
    models: dict[int, list[TinyAttentionModel]]  # h -> one model per seed, in eval mode
    losses: dict[int, torch.Tensor]  # h -> (seeds, steps // block)
    made_on: str  # the machine and library that trained it


def machine() -> str:
    """This CPU, its thread count and the PyTorch build, in words. Introduced in chapter 1."""
    model = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        model = names[0] if names else model
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{model}, {torch.get_num_threads()} threads, {capability} kernels, torch {torch.__version__}"


def record(experiment: Experiment) -> Run:
    """Train every head count of the experiment for its full number of steps. Introduced in chapter 1."""
    models, losses = {}, {}
    for h in experiment.heads:
        models[h], losses[h] = experiment.train(h, experiment.steps)
    return Run(experiment, models, losses, machine())


def save(run: Run, folder: Path = RECORDS) -> Path:
    """Write the run's settings, losses and stacked weights to folder/{name}.pt. Introduced in chapter 1."""
    weights = {
        h: {name: torch.stack([m.state_dict()[name] for m in models]) for name in models[0].state_dict()}
        for h, models in run.models.items()
    }  # h -> parameter name -> (seeds, ...)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run.experiment.name}.pt"
    contents = {"experiment": asdict(run.experiment), "made_on": run.made_on, "losses": run.losses}
    torch.save({**contents, "weights": weights}, path)
    return path


def load(experiment: Experiment, folder: Path = RECORDS) -> Run:
    """The recorded run of this experiment, with its models rebuilt; refuses a record of other settings. Introduced in chapter 1."""
    path = folder / f"{experiment.name}.pt"
    if not path.exists():
        raise ValueError(f"no record {path}: run `make records` to train it")
    saved = torch.load(path, weights_only=True)
    if saved["experiment"] != asdict(experiment):
        raise ValueError(
            f"{path} was made with {saved['experiment']}, not {asdict(experiment)}: run `make records`"
        )
    models = {}
    for h, weights in saved["weights"].items():
        models[h] = experiment.models(h)
        for i, model in enumerate(models[h]):
            model.load_state_dict({name: stacked[i] for name, stacked in weights.items()})
            model.eval()
    return Run(experiment, models, saved["losses"], saved["made_on"])


def first_step_below(curve: torch.Tensor, level: float, block: int, window: int = 5) -> int | None:
    """The first step at which the mean of `window` block-mean losses is below level, or None. Introduced in chapter 1.

    curve (blocks,) holds the mean loss of each block of `block` steps; the step returned is
    the last step of the first window below level.
    """
    smooth = curve.unfold(0, window, 1).mean(-1)  # (blocks - window + 1,)
    below = (smooth < level).nonzero()
    return (int(below[0]) + window) * block if len(below) else None


def replay(experiment: Experiment, steps: int) -> dict[int, torch.Tensor]:
    """Re-train the first `steps` steps here; -> h -> block-mean losses (seeds, steps // block). Introduced in chapter 1."""
    return {h: experiment.train(h, steps)[1] for h in experiment.heads}


if __name__ == "__main__":  # make records
    for experiment in EXPERIMENTS:
        print(f"recording {experiment.name}: {len(experiment.heads)} head counts x {len(experiment.seeds)} seeds")
        print(f"  wrote {save(record(experiment))}", flush=True)
