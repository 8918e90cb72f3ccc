"""``deqlab train digits`` and ``deqlab bench curvature``."""

from __future__ import annotations

from typing import Optional

import typer

from deqlab.cli.execute import execute
from deqlab.cli.options import DEVICE_OPTION, INTEGER, NUMBER, OVERRIDES, bench_help, option_help, option_overrides, preset_overrides, split_list


def register(app: typer.Typer, bench: typer.Typer) -> None:
    train = typer.Typer(help="Training studies on real data.", no_args_is_help=True)
    app.add_typer(train, name="train")

    @train.command("digits", context_settings=OVERRIDES)
    def digits(
        ctx: typer.Context,
        device: Optional[str] = DEVICE_OPTION,
        epochs: Optional[int] = typer.Option(None, **INTEGER, help=option_help("train_digits", "epochs", "Training epochs (one Adam + cosine schedule for every model).")),
        n_z: Optional[int] = typer.Option(None, "--n-z", **INTEGER, help=option_help("train_digits", "n_z", "Width of the tanh DEQ; the monotone DEQ and the MLP match its parameter count.")),
        lr: Optional[float] = typer.Option(None, **NUMBER, help=option_help("train_digits", "lr", "Adam's initial learning rate, cosine-annealed to 0.")),
        batch: Optional[int] = typer.Option(None, **INTEGER, help=option_help("train_digits", "batch", "Training batch size.")),
        models: Optional[str] = typer.Option(None, help=option_help("train_digits", "models", "Comma-separated models from tanh_deq,monotone_deq,mlp.")),
        checkpoints: Optional[int] = typer.Option(None, **INTEGER, help=option_help("train_digits", "checkpoints", "Loss-Hessian checkpoints, epoch 0 to the last (0: none).")),
        seed: Optional[int] = typer.Option(None, **INTEGER, help=option_help("train_digits", "seed", "Torch seed of the weights and the batch order.")),
        tiny: bool = typer.Option(False, "--tiny", help="Seconds-long configuration (deqlab.settings.train_digits.TINY)."),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 if a monotone DEQ forward solve did not converge (the tanh DEQ's failures are the study: a note)."),
    ) -> None:
        """A tanh DEQ, a monotone DEQ (Peaceman-Rachford) and an MLP trained alike on scikit-learn's digits, with the
        loss Hessian at checkpoints (needs scikit-learn: pip install "deqlab\\[data]")."""
        from deqlab.settings.train_digits import TINY

        overrides = [*option_overrides(epochs=epochs, n_z=n_z, lr=lr, batch=batch, models=split_list(models, "--models"),
                                       checkpoints=checkpoints, seed=seed, strict=strict or None), *ctx.args]
        preset = preset_overrides(TINY, overrides) if tiny else []
        execute("train_digits", overrides, folder="train/digits", device=device, preset=preset)

    @bench.command("curvature", context_settings=OVERRIDES,
                   help=bench_help("bench_curvature", "One HVP through a DEQ wrapping a user nn.Module against one gradient; "
                                   "top-5 eigenvalues of a DEQ classifier's loss Hessian at P ~ 1e5.", "about 2 minutes"))
    def bench_curvature(ctx: typer.Context, device: Optional[str] = DEVICE_OPTION) -> None:
        execute("bench_curvature", ctx.args, folder="bench/curvature", device=device)
