from curator.models.classifier import CuratorClassifier
from curator.models.encoder import build_encoder, max_model_tokens, pool

__all__ = ["CuratorClassifier", "build_encoder", "max_model_tokens", "pool"]
