"""Training a sequence model on input/output trajectories.

Adam on *truncated* sequences (truncated backpropagation through time): each batch of training
trajectories is run from the zero state in consecutive chunks of ``seq_len`` steps; after each chunk
the loss (mean squared error of the standardised output, steps before ``washout`` of the trajectory
excluded) is backpropagated, the gradient norm clipped to ``clip``, one Adam step taken (learning rate ``lr·lr_decay^epoch``) and the state
carried on detached. After each epoch the validation NRMSE (free run over whole trajectories, after the
washout) decides early stopping (``patience`` epochs without improvement); the best parameters are
restored at the end. ``torch.manual_seed(seed)`` fixes the batch order, so runs repeat.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from deqlab.sysid.metrics import nrmse, simulate


@dataclass
class TrainSettings:
    """How :func:`train` fits a model: Adam on mini-batches of ``batch_size`` whole trajectories (a new
    random order every epoch), each simulated in consecutive windows of ``seq_len`` steps with the state
    carried across windows but detached (truncated backpropagation through time), one optimiser step
    per window; the first ``washout`` steps of every trajectory are left out of the loss; gradient norm
    clipped to ``clip``; training stops after ``patience`` epochs without a better validation NRMSE
    and keeps the best epoch's weights."""

    epochs: int = 50
    batch_size: int = 8
    seq_len: int = 100
    lr: float = 1e-2
    lr_decay: float = 1.0  # learning rate multiplied by this after every epoch
    clip: float = 1.0
    patience: int = 10
    washout: int = 50
    seed: int = 0
    time_limit: float | None = None  # seconds; stop after the epoch that crosses it


@dataclass
class TrainHistory:
    """What :func:`train` recorded: per-epoch training loss and validation NRMSE, the epoch whose weights
    were kept (``best_epoch``, 0-based; −1 before the first) and its NRMSE, and the wall seconds."""

    train_loss: list[float] = field(default_factory=list)  # mean standardised MSE per epoch
    val_nrmse: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = float("inf")
    seconds: float = 0.0
    stopped: str = "epochs"  # epochs | early_stopping | time_limit | non_finite


def train(model, u_train: np.ndarray, y_train: np.ndarray, u_val: np.ndarray, y_val: np.ndarray,
          settings: TrainSettings, progress: Callable[[int, dict], None] | None = None) -> TrainHistory:
    """Train ``model`` (a :class:`~deqlab.sysid.models.Normalised`) in place; returns its history.

    ``progress(epoch, info)`` is called after every epoch with ``train_loss``, ``val_nrmse``, ``best``.
    """
    s = settings
    torch.manual_seed(s.seed)
    device = model.u_mean.device  # train where the model lives; the batch order is drawn on the CPU
    u = (torch.as_tensor(u_train, device=device) - model.u_mean) / model.u_std
    y = (torch.as_tensor(y_train, device=device) - model.y_mean) / model.y_std
    n, steps = u.shape[:2]
    mask = (torch.arange(steps, device=device) >= s.washout).to(torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=s.lr_decay)
    hist = TrainHistory()
    best_state = copy.deepcopy(model.state_dict())
    t0 = time.perf_counter()
    bad_epochs = 0
    for epoch in range(s.epochs):
        model.train()
        order = torch.randperm(n, device="cpu")
        total, count = 0.0, 0
        for b in range(0, n, s.batch_size):
            idx = order[b:b + s.batch_size]
            ub, yb = u[idx], y[idx]
            state = None
            for k in range(0, steps, s.seq_len):
                y_hat, state = model.forward_normalised(ub[:, k:k + s.seq_len], state)
                state = model.core.detach_state(state)
                m = mask[k:k + s.seq_len]
                if m.sum() == 0:
                    continue
                err = ((y_hat - yb[:, k:k + s.seq_len]) ** 2).mean(dim=(0, 2))
                loss = (err * m).sum() / m.sum()
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), s.clip)
                opt.step()
                total += float(loss.detach()) * float(m.sum())
                count += float(m.sum())
        schedule.step()
        model.eval()
        y_val_hat = simulate(model, u_val)
        val = nrmse(y_val_hat, y_val, s.washout) if np.isfinite(y_val_hat).all() else float("inf")
        hist.train_loss.append(total / max(count, 1.0))
        hist.val_nrmse.append(val)
        if val < hist.best_val:
            hist.best_val, hist.best_epoch, bad_epochs = val, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        if progress is not None:
            progress(epoch, {"train_loss": hist.train_loss[-1], "val_nrmse": val, "best": hist.best_val})
        if not np.isfinite(hist.train_loss[-1]):
            hist.stopped = "non_finite"
            break
        if bad_epochs >= s.patience:
            hist.stopped = "early_stopping"
            break
        if s.time_limit is not None and time.perf_counter() - t0 > s.time_limit:
            hist.stopped = "time_limit"
            break
    model.load_state_dict(best_state)
    model.eval()
    hist.seconds = time.perf_counter() - t0
    return hist
