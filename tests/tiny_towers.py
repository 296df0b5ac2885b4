"""The stand-in text tower of the contrastive objective tests (one process and two gloo ranks)."""

from __future__ import annotations

import torch
from torch import nn


class TinyTextModel(nn.Module):
    """The ``encode_text`` surface :class:`~text4vis.engine.contrastive.OnlineTextTower` uses:
    token embeddings averaged over each prompt, then a linear map.

    Args:
        dim: embedding width D.
        tanh: squash the averaged embeddings before the map (a nonlinear tower, for the
            gradient checks).
    """

    def __init__(self, dim: int, *, tanh: bool = False) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(20, dim)
        self.proj = nn.Linear(dim, dim)
        self.tanh = tanh

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        pooled = self.token_embedding(tokens).mean(dim=1)
        return self.proj(torch.tanh(pooled) if self.tanh else pooled)  # [n, D]
