"""Building, normalising, saving and loading the identified models.

Every model is a :class:`Normalised` wrapper around a core sequence model (REN or baseline) that sees
standardised signals ``(u − ū)/s_u`` and ``(y − ȳ)/s_y`` (statistics of the training set, per channel);
the wrapper maps physical ``u`` (batch, steps, n_u) to physical ``y`` (batch, steps, n_y).
Saved as ``models/<name>.pt``: ``{"kind", "kwargs", "state_dict"}`` (plain types, loadable with
``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deqlab.errors import ConfigError, require_path
from deqlab.models.baselines import ElmanRNN, LinearStateSpace, LSTMModel
from deqlab.models.ren import ContractingREN, LipschitzREN

KINDS = ("ren", "lipschitz_ren", "lstm", "rnn", "linear")


def build_core(kind: str, n_u: int, n_y: int, **kw) -> nn.Module:
    """``ren``: ContractingREN(n_x, n_v, activation); ``lipschitz_ren``: LipschitzREN(n_x, n_v, gamma, activation);
    ``lstm``/``rnn``: hidden ``n_h``; ``linear``: state ``n_x``."""
    if kind == "ren":
        return ContractingREN(n_u, kw["n_x"], kw["n_v"], n_y, activation=kw.get("activation", "tanh"),
                              alpha_bar=kw.get("alpha_bar", 1.0), init_scale=kw.get("init_scale", 1.0),
                              init_rho=kw.get("init_rho"))
    if kind == "lipschitz_ren":
        return LipschitzREN(n_u, kw["n_x"], kw["n_v"], n_y, gamma=kw["gamma"], activation=kw.get("activation", "tanh"),
                            init_scale=kw.get("init_scale", 1.0), init_rho=kw.get("init_rho"))
    if kind == "lstm":
        return LSTMModel(n_u, kw["n_h"], n_y)
    if kind == "rnn":
        return ElmanRNN(n_u, kw["n_h"], n_y)
    if kind == "linear":
        return LinearStateSpace(n_u, kw["n_x"], n_y)
    raise ConfigError(f"unknown model kind {kind!r}; choose one of: {', '.join(KINDS)}")


class Normalised(nn.Module):
    """Physical signals in and out around a core model on standardised signals."""

    def __init__(self, core: nn.Module, u_mean, u_std, y_mean, y_std):
        super().__init__()
        self.core = core
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64).reshape(-1))  # noqa: E731
        self.register_buffer("u_mean", t(u_mean))
        self.register_buffer("u_std", t(u_std))
        self.register_buffer("y_mean", t(y_mean))
        self.register_buffer("y_std", t(y_std))

    @property
    def n_u(self) -> int:
        return self.u_mean.numel()

    @property
    def n_y(self) -> int:
        return self.y_mean.numel()

    def forward_normalised(self, u_n: torch.Tensor, state=None):
        return self.core(u_n, state)

    def forward(self, u: torch.Tensor, state=None):
        y_n, state = self.core((u - self.u_mean) / self.u_std, state)
        return y_n * self.y_std + self.y_mean, state

    def lipschitz_bound(self) -> float | None:
        """Guaranteed ``‖Δy‖_ℓ₂/‖Δu‖_ℓ₂`` in physical units: ``γ · max s_y / min s_u`` (None if not a Lipschitz REN)."""
        g = self.core.lipschitz_bound()
        return None if g is None else float(g * self.y_std.max() / self.u_std.min())


def make_model(kind: str, kwargs: dict, u_train: np.ndarray, y_train: np.ndarray) -> Normalised:
    """A fresh model normalised with the training set's per-channel mean and std (std floored at 1e-12)."""
    n_u, n_y = u_train.shape[-1], y_train.shape[-1]
    u_mean, y_mean = u_train.reshape(-1, n_u).mean(0), y_train.reshape(-1, n_y).mean(0)
    u_std = np.maximum(u_train.reshape(-1, n_u).std(0), 1e-12)
    y_std = np.maximum(y_train.reshape(-1, n_y).std(0), 1e-12)
    return Normalised(build_core(kind, n_u, n_y, **kwargs), u_mean, u_std, y_mean, y_std)


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters (for a REN: the free parameters of the direct parametrisation)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_model(model: Normalised, kind: str, kwargs: dict, path: str | Path) -> None:
    """Write ``model`` with what rebuilds it (its ``kind`` and constructor ``kwargs``) to ``path``
    (a ``torch.save`` dict of tensors and plain values, read back by :func:`load_model` with
    ``weights_only=True``).

    Serialised in memory, then written by Python: torch's zip writer reported a full disk as a RuntimeError
    ('[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0'), which the CLI could only show as a
    traceback; Python's write raises the OSError (ENOSPC) it reports as 'cannot write model.pt: No space left'."""
    buffer = io.BytesIO()
    torch.save({"kind": kind, "kwargs": dict(kwargs), "n_u": model.n_u, "n_y": model.n_y,
                "state_dict": model.state_dict()}, buffer)
    with open(path, "wb") as f:
        f.write(buffer.getbuffer())


def _check_sizes(path, kind: str, n_u, n_y, kwargs: dict, state_dict: dict) -> None:
    """Refuse a file whose sizes (``n_u``, ``n_y``, ``kwargs``) are not those of its weights, before the model
    is built: the model is built first on the ``meta`` device (shapes only, no memory) and its parameters'
    shapes compared with the saved ones. A file of a few kB whose ``n_v`` read 30000 built a 7 GB REN (and
    ``n_u`` = 10⁹ a 64 GB one) before ``load_state_dict`` found the mismatch: minutes, or the OOM killer."""
    with torch.device("meta"):
        core = build_core(kind, n_u, n_y, **kwargs)
    expected = {f"core.{k}": tuple(v.shape) for k, v in core.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in state_dict.items() if k.startswith("core.")}
    if expected != saved:
        wrong = sorted(k for k in expected.keys() | saved.keys() if expected.get(k) != saved.get(k))
        raise ConfigError(f"{path}: not a deqlab sysid model (its sizes n_u={n_u}, n_y={n_y}, {kwargs} do not match "
                          f"its saved weights: {', '.join(k.removeprefix('core.') for k in wrong[:3])}"
                          f"{' …' if len(wrong) > 3 else ''})")


def load_model(path: str | Path) -> tuple[str, Normalised]:
    """Inverse of :func:`save_model`; returns ``(kind, model)`` on the CPU (a model saved from a GPU loads
    on a machine without one; move it with ``model.to(device)``)."""
    path = require_path(path, "saved model")   # (torch.load of a FIFO waited for a writer forever)
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")
        kind, kwargs = blob["kind"], blob["kwargs"]
        sd = blob["state_dict"]
        _check_sizes(path, kind, blob["n_u"], blob["n_y"], kwargs, sd)
        core = build_core(kind, blob["n_u"], blob["n_y"], **kwargs)
        model = Normalised(core, sd["u_mean"], sd["u_std"], sd["y_mean"], sd["y_std"])
        model.load_state_dict(sd)
        bad = [k for k, v in sd.items() if torch.is_floating_point(v) and not bool(torch.isfinite(v).all())]
        if bad:
            raise ConfigError(f"{path}: the saved model has NaN or infinite values in {', '.join(bad[:4])}"
                              f"{' …' if len(bad) > 4 else ''}; it cannot be evaluated")
    except ConfigError:
        raise
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, which would run whatever the file holds
        raise ConfigError(f"{path}: not a deqlab sysid model (not a weights-only torch file; deqlab never unpickles "
                          "objects from a file)") from None
    except Exception as exc:
        raise ConfigError(f"{path}: not a deqlab sysid model ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    model.eval()
    return kind, model
