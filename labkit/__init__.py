"""labkit: learn to fine-tune text embedding models with metric-learning losses.

The names every notebook needs are here; the rest lives in small modules:
`labkit.data` (datasets), `labkit.sampling` (P×K batches), `labkit.losses`, `labkit.mining`,
`labkit.distances`, `labkit.pooling`, `labkit.model`.
"""
from labkit.env import Budget, Lab, budget, current, pick_device, setup
from labkit.model import EmbeddingModel, ModelNotAvailableError, load_model, tiny_model

__version__ = "0.1.0"
__all__ = [
    "Budget", "Lab", "budget", "current", "pick_device", "setup",
    "EmbeddingModel", "ModelNotAvailableError", "load_model", "tiny_model",
]
