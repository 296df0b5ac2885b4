"""Training and evaluation engine: distributed helpers, trainer, checkpoints, metrics."""
