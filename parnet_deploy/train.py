"""``parnet-train``: a real trained checkpoint without downloads (small-input ParNet on digits).

Not a general training recipe: enough to give the precision work (fp16, int8) real data
and real accuracy to protect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data import Dataset, load_source
from .errors import ConfigError
from .models import ParNet, create_model

DIGITS_PLANES = (16, 32, 64, 64)  # 0.35M parameters: ~99% held-out on digits in about a minute on 2 cores


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "parnet_cifar_s"
    planes: tuple[int, int, int, int] | None = DIGITS_PLANES
    act: str = "relu"
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int | None = None

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("epochs and batch size must be >= 1 and lr > 0")


def accuracy(model: ParNet, data: Dataset, batch: int = 256) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(data), batch):
            logits = model(torch.from_numpy(data.images[i:i + batch]))
            correct += int((logits.argmax(1).numpy() == data.labels[i:i + batch]).sum())
    return correct / len(data)


def train(config: TrainConfig = TrainConfig(), log: Callable[[str], None] = print) -> tuple[ParNet, float]:
    """Train on ``digits:train``; returns the model (eval mode) and its held-out top-1."""
    config.validate()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    train_set, heldout = load_source("digits:train"), load_source("digits:heldout")
    overrides = {"act": config.act, "num_classes": 10}
    if config.planes:
        overrides["planes"] = config.planes
    model = create_model(config.arch, **overrides)
    if model.config.input_multiple > 32 or not model.config.small_input:
        raise ConfigError(f"{config.arch} is not a small-input (32x32) variant; use parnet_cifar_s/m/l")
    x, y = torch.from_numpy(train_set.images), torch.from_numpy(train_set.labels)
    steps_per_epoch = -(-len(x) // config.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.epochs * steps_per_epoch)
    t0 = time.perf_counter()
    acc = 0.0
    for epoch in range(config.epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x), config.batch_size):
            idx = perm[i:i + config.batch_size]
            dy, dx = (int(v) for v in rng.integers(-2, 3, 2))  # random shifts: digits drawn off-centre
            xb = torch.roll(x[idx], shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = accuracy(model, heldout)
        log(f"epoch {epoch + 1}/{config.epochs}: loss {loss.item():.3f}, held-out top-1 {acc:.2%} "
            f"({time.perf_counter() - t0:.0f} s)")
    return model.eval(), acc
