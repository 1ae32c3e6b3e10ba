"""Training of the ``mlp`` adapter's residual with torch; applying it is numpy (adapters.py).

The linear part is the closed-form affine fit and stays fixed; the residual
``gelu(x @ W1 + b1) @ W2 + b2`` starts at zero (``W2 = b2 = 0``), so training starts from the
affine adapter and early stopping on a validation slice can only keep something better.
All randomness (initialisation, the validation slice, batch order) comes from one seeded
generator, and training runs on one thread, so a seed gives the same adapter.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["default_epochs", "train_residual"]

BATCH_SIZE = 128
LEARNING_RATE = 1e-2  # with cosine decay; 1e-3 stalls for hundreds of steps on a warp
WEIGHT_DECAY = 1e-4
PATIENCE = 5  # epochs without a better validation loss before stopping
VALIDATION_FRACTION = 0.1
#: the default epochs show the model about this many training pairs in all, whatever n is
EXAMPLES_SEEN = 160_000


def default_epochs(n_train: int) -> int:
    """About :data:`EXAMPLES_SEEN` pairs in all: 8 epochs of 20k pairs, more for small sets."""
    return max(8, min(200, math.ceil(EXAMPLES_SEEN / max(n_train, 1))))


def train_residual(
    new: np.ndarray,
    old: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    *,
    hidden: int,
    epochs: int | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(hidden_weight, hidden_bias, output_weight, output_bias)`` minimising ``1 - cos``.

    The parameters kept are those of the epoch with the lowest validation loss, the untrained
    (affine) ones included.
    """
    import torch

    # One thread: these matmuls are small, so on a busy machine thread hand-offs cost more than
    # they save (30x slower measured at load 3 on 2 cores), and one thread gives the same
    # floating-point sums, so the same adapter, whatever the machine's thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(new, old, weight, bias, hidden=hidden, epochs=epochs, seed=seed)
    finally:
        torch.set_num_threads(threads)


def _train(
    new: np.ndarray,
    old: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    *,
    hidden: int,
    epochs: int | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(new, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(old, dtype=np.float32))
    base = x @ torch.from_numpy(weight) + torch.from_numpy(bias)  # the fixed linear part
    # The hidden layer sees standardised features (unit rows have entries near 1/sqrt(d), where
    # GELU is nearly linear); the scaling is folded into its weights at the end.
    mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
    x = (x - mean) / std
    n, in_dim = x.shape
    out_dim = y.shape[1]

    order = torch.randperm(n, generator=generator)
    n_val = max(1, round(n * VALIDATION_FRACTION))
    val, train = order[:n_val], order[n_val:]
    n_epochs = default_epochs(len(train)) if epochs is None else epochs

    bound = 1.0 / math.sqrt(in_dim)  # torch.nn.Linear's initialisation
    params = [
        ((torch.rand(in_dim, hidden, generator=generator) * 2 - 1) * bound).requires_grad_(),
        ((torch.rand(hidden, generator=generator) * 2 - 1) * bound).requires_grad_(),
        torch.zeros(hidden, out_dim, requires_grad=True),
        torch.zeros(out_dim, requires_grad=True),
    ]

    def loss_of(rows: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = params
        residual = F.gelu(x[rows] @ w1 + b1, approximate="tanh") @ w2 + b2
        return (1 - F.cosine_similarity(base[rows] + residual, y[rows], dim=1)).mean()

    def validation_loss() -> float:
        with torch.no_grad():
            return float(loss_of(val))

    steps_per_epoch = math.ceil(len(train) / BATCH_SIZE)
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, n_epochs * steps_per_epoch)
    )
    # ``best`` may stay the untrained (affine) start; patience counts from the best trained
    # epoch, since the first epochs move away from the linear fit before improving on it.
    best_loss, best = validation_loss(), [p.detach().clone() for p in params]
    best_trained, stale = math.inf, 0
    for _ in range(n_epochs):
        shuffled = train[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(shuffled), BATCH_SIZE):
            optimizer.zero_grad(set_to_none=True)
            loss_of(shuffled[start : start + BATCH_SIZE]).backward()
            optimizer.step()
            schedule.step()
        current = validation_loss()
        if current < best_loss:
            best_loss, best = current, [p.detach().clone() for p in params]
        if current < best_trained:
            best_trained, stale = current, 0
        else:
            stale += 1
            if stale >= PATIENCE:
                break
    w1, b1, w2, b2 = best
    return (w1 / std[:, None]).numpy(), (b1 - (mean / std) @ w1).numpy(), w2.numpy(), b2.numpy()
