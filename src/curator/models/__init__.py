from curator.models.classifier import CuratorClassifier
from curator.models.encoder import build_encoder, build_tokenizer, max_model_tokens, pool

__all__ = ["CuratorClassifier", "build_encoder", "build_tokenizer", "max_model_tokens", "pool"]
