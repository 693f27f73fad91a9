"""The multi-task classifier: one shared encoder, a regression head each for quality and structured_data, and a
classification head for content_type. A plain nn.Module: it knows nothing of Lightning or Hydra."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from curator.labels import QUALITY, STRUCTURED_DATA
from curator.models.encoder import pool

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class RegressionHead(nn.Module):
    def __init__(self, hidden: int, center: float, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden, 1)
        # Start at the middle of the scale, so the first steps learn the ranking, not the offset.
        nn.init.constant_(self.proj.bias, center)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(x)).squeeze(-1)


class ClassificationHead(nn.Module):
    def __init__(self, hidden: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(x))


class CuratorClassifier(nn.Module):
    """encoder -> pooled vector -> {quality, structured_data, content_type}.

    forward returns a dict: `quality` and `structured_data` are float scores of shape (batch,) on the rubric's
    scales; `content_type` holds logits of shape (batch, num_content_types).
    """

    def __init__(
        self, encoder: PreTrainedModel, num_content_types: int, pooling: str = "cls", dropout: float = 0.1
    ):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        hidden = encoder.config.hidden_size
        self.quality = RegressionHead(hidden, (QUALITY.lo + QUALITY.hi) / 2, dropout)
        self.structured_data = RegressionHead(hidden, (STRUCTURED_DATA.lo + STRUCTURED_DATA.hi) / 2, dropout)
        self.content_type = ClassificationHead(hidden, num_content_types, dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.heads(pool(hidden, attention_mask, self.pooling))

    def heads(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three heads on pooled vectors (batch, hidden), however the encoder ran (padded or packed)."""
        # Heads run in fp32: the regression outputs are compared at a 0.5 level edge.
        pooled = pooled.float()
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            return {
                "quality": self.quality(pooled),
                "structured_data": self.structured_data(pooled),
                "content_type": self.content_type(pooled),
            }
