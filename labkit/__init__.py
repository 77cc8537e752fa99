"""labkit: learn to fine-tune text embedding models with metric-learning losses.

Two wings. The **core** is this package's top level: what your own training script imports.

    data ─► sampling ─► collate ─► model (+ pooling) ─► losses (distances, mining) ─► train ─► evaluate, viz
    (env, world, validation, distributed, memory, experiment and cli around them)

The **course** is `labkit.course`: toy point clouds, the loss playground, the original article's code,
recipes, comparisons, cluster analysis, measurements and exercise checkers, everything that exists to teach.
The course imports the core; the core never imports the course (a test enforces it).

The names every notebook needs are here: `setup`, `load_model` and friends.
"""
from labkit.env import Budget, Lab, budget, current, pick_device, setup
from labkit.model import EmbeddingModel, ModelNotAvailableError, load_model, tiny_model

__version__ = "0.1.0"
__all__ = [
    "Budget", "Lab", "budget", "current", "pick_device", "setup",
    "EmbeddingModel", "ModelNotAvailableError", "load_model", "tiny_model",
]
