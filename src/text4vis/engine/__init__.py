"""Training and evaluation engine: trainer, checkpoints, evaluation loops, metrics."""
