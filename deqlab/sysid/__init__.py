"""System identification (issue 5): data sets (:mod:`.data`; the F-16 GVT benchmark reader :mod:`.f16`),
training (:mod:`.training`), metrics (:mod:`.metrics`), lower bounds of a model's incremental ℓ₂ gain
(:mod:`.gain`) and saved models (:mod:`.models`) for ``deqlab sysid``. Library code: no Hydra, Typer or
rich here (progress goes through a callback)."""
