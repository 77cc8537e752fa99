"""The loss registry: for every loss you can pick by name, what data it trains on and which knobs a learner turns.

`REGISTRY` maps a loss class name to a `LossEntry`; `build_loss(name, kind, **arguments)` builds one. Everything
that lists losses is derived from it: the command line's and `labkit.experiment`'s `LOSSES_FOR` (which losses fit
which kind of data), the loss playground's menu (`labkit.course.playground.LOSSES`), and the comparison's settings
(`labkit.course.compare.DEFAULT_HYPERPARAMETERS`).

Data kinds
----------
A data kind is what one training row looks like, i.e. which columns a dataset needs for the loss to train on it
(`DATA_KINDS` describes each):

* ``labelled``: single texts with a class label (``text``, ``label``). Batch losses get P×K batches and mine their
  own triplets; `MultipleNegativesRankingLoss` trains on same-class pairs built from them
  (`labkit.experiment.same_class_pairs`).
* ``scored_pairs``: (``text``, ``text_pair``, ``score`` in 0..1), e.g. STS-B.
* ``binary_pairs``: (``text``, ``text_pair``, ``label`` 0/1): similar or not.
* ``positive_pairs``: (anchor, positive) pairs such as (question, answer); the other pairs' positives are the
  negatives.
* ``triplets``: (anchor, positive, negative) rows.
* ``unlabelled``: single texts without labels (Contrastive Tension: each text is its own positive).
* ``teacher_embeddings`` / ``teacher_scores``: distillation; the label is what a teacher model made of the row,
  precomputed (its embeddings; its scores of the candidates, or their margins).

`labkit.experiment.data_kind` recognises the first three from a DataFrame's columns; those are the kinds the
command line trains on (``LOSSES_FOR``). A loss may fit several kinds; ``data_kinds`` lists them.

An entry also says how the loss is called (``inputs``, see `INPUTS`): on a labelled batch, on triplets, on pairs
with a label or score, on (anchor, positive, *negatives) columns, or on two encodings of the same texts.

Knobs
-----
A knob is a hyperparameter a learner tunes: the ``margin`` of the margin losses and the ``scale`` (1 / temperature)
of the softmax losses. A `Knob` holds the value the course uses (``default``), the constructor argument that takes
it (``keyword``: TripletLoss calls its margin ``triplet_margin``), and sentence-transformers' own default, read from
the class's signature (labkit's losses take sentence-transformers' defaults, so the class is the one place it is
written). The two differ for the triplet losses: the course uses margin 0.5, which fits unit-length embeddings
(Euclidean distances lie in [0, 2]); sentence-transformers' 5 keeps every triplet active. The scaled losses keep
sentence-transformers' scale 20; the contrastive losses its margin 0.5. `build_loss` itself applies no knob
default: what you do not pass takes sentence-transformers' default, as it always has; the course's values are
applied by whoever chooses them (`labkit.course.compare`).

Losses that run a model
-----------------------
The cached (GradCache) losses and GIST run a model themselves (GIST also a guide model), so their entries say what
they ``need`` (``("model",)``, ``("model", "guide")``) and are called on tokenized columns (``inputs="runs the
model"``): ``build_loss("CachedMultipleNegativesRankingLoss", "positive_pairs", model=model)``. No list that builds
losses without a model (the command line's kinds, the playground, the comparison) offers them.

Losses not registered
---------------------
Some classes of `labkit.losses` are left out, because their constructors need more than knobs: something only a
training run has, or another loss (`NOT_REGISTERED` says why for each). Nothing builds them by name; their
notebooks build them by hand.

* `MatryoshkaLoss`, `AdaptiveLayerLoss` and `Matryoshka2dLoss` are modifiers: they wrap a loss you have built
  (the last two also run the model). `DenoisingAutoEncoderLoss` (TSDAE) runs the model and a decoder built from it.
* `SoftmaxLoss` (NLI pairs) and `ClassificationLoss` (labelled texts) own a trainable classifier head sized by the
  model's embedding dimension and the number of labels.

Adding a loss
-------------
Write the class in its module and export it from `labkit.losses`, then add **one** `LossEntry` to `REGISTRY` below:
its data kinds, how it is called, its knobs with the course's values. Everything else follows: the command line
and `labkit.experiment` accept it for those kinds, `build_loss` builds it, `compare_losses` runs it with its knobs,
and the playground offers it if it can build its inputs from a point cloud. The order of `REGISTRY` is the order
of every list derived from it (the playground puts batch-hard and semi-hard first). `tests/test_loss_registry.py`
fails if an exported loss is neither registered nor in `NOT_REGISTERED`.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from labkit.losses.cached import CachedMultipleNegativesRankingLoss, CachedMultipleNegativesSymmetricRankingLoss
from labkit.losses.distillation import DistillKLDivLoss, EmbedDistillLoss, MarginMSELoss, MSELoss
from labkit.losses.gist import CachedGISTEmbedLoss, GISTEmbedLoss
from labkit.losses.megabatch import MegaBatchMarginLoss
from labkit.losses.pairs import ContrastiveLoss, OnlineContrastiveLoss
from labkit.losses.ranking import (
    ContrastiveTensionLossInBatchNegatives,
    MultipleNegativesRankingLoss,
    MultipleNegativesSymmetricRankingLoss,
)
from labkit.losses.regression import AnglELoss, CoSENTLoss, CosineSimilarityLoss
from labkit.losses.regularization import GlobalOrthogonalRegularizationLoss
from labkit.losses.unsupervised import ContrastiveTensionLoss
from labkit.losses.triplets import (
    BatchAllTripletLoss,
    BatchHardSoftMarginTripletLoss,
    BatchHardTripletLoss,
    BatchSemiHardTripletLoss,
    TripletLoss,
)

__all__ = ["DATA_KINDS", "INPUTS", "Knob", "LossEntry", "REGISTRY", "NOT_REGISTERED", "LossArgumentError",
           "losses_for", "build_loss"]

DATA_KINDS = {
    "labelled": "single texts with a class label (text, label)",
    "scored_pairs": "pairs with a similarity score in 0..1 (text, text_pair, score)",
    "binary_pairs": "pairs labelled 1 (similar) or 0 (not) (text, text_pair, label)",
    "positive_pairs": "(anchor, positive) pairs, e.g. (question, answer); no label",
    "triplets": "(anchor, positive, negative) rows",
    "unlabelled": "single texts without labels",
    "teacher_embeddings": "texts (or parallel texts) labelled with a teacher model's embedding",
    "teacher_scores": "(query, positive, negative...) rows labelled with a teacher's scores or score margins",
}

INPUTS = {
    "batch": "loss(embeddings, labels): one labelled batch; the loss mines its own triplets",
    "triplets": "loss(anchor, positive, negative)",
    "pairs": "loss(emb_a, emb_b, labels): a 0/1 label or a score per pair",
    "in-batch negatives": "loss(anchor, positive, *negatives): the other rows' positives are the negatives",
    "two encodings": "loss(emb_1, emb_2): the same texts through two encoders",
    "two encodings, labelled": "loss(emb_1, emb_2, labels): two encoders; label 1 where both saw the same text",
    "anchor-positive pairs": "loss(anchor, positive): the other rows' positives are the negatives; no negative columns",
    "columns": "loss(*columns): any number of embedding columns, each regularised on its own; no labels",
    "teacher embeddings": "loss(*columns, labels): labels are the teacher's embeddings, (B, D_t) or (B, columns, D_t)",
    "teacher scores": "loss(query, *candidates, labels): labels are the teacher's scores (B, candidates) or "
                      "margins (B, negatives)",
    "runs the model": "loss(features): tokenized columns [anchor, positive, *negatives]; the loss runs the model "
                      "(and any guide) itself",
}


@dataclass(frozen=True)
class Knob:
    """A hyperparameter a learner tunes: its common ``name`` ("margin", "scale", "temperature", ...) and the
    course's ``default``.

    ``argument`` is the constructor keyword when it is not ``name`` (TripletLoss: ``triplet_margin``).
    """

    name: str
    default: float
    argument: str | None = None

    @property
    def keyword(self) -> str:
        """The loss constructor's keyword for this knob."""
        return self.argument or self.name


@dataclass(frozen=True)
class LossEntry:
    """One registered loss: its class, how it is called (`INPUTS`), the data it trains on (`DATA_KINDS`), its knobs,
    and what it ``needs`` besides them (``("model",)`` for the cached losses, ``("model", "guide")`` for GIST):
    `build_loss` refuses to build it without those."""

    loss_class: type
    inputs: str
    data_kinds: tuple[str, ...]
    knobs: tuple[Knob, ...] = ()
    needs: tuple[str, ...] = ()  # constructor arguments only a training run has: the model it runs, a guide

    @property
    def name(self) -> str:
        return self.loss_class.__name__

    @property
    def knob_defaults(self) -> dict:
        """The course's knob values as constructor arguments, e.g. ``{"margin": 0.5}`` (``{}``: no knobs)."""
        return {knob.keyword: knob.default for knob in self.knobs}

    @property
    def sentence_transformers_defaults(self) -> dict:
        """Sentence-transformers' defaults for the same knobs, from the class's signature, e.g. ``{"margin": 5}``."""
        parameters = inspect.signature(self.loss_class).parameters
        return {knob.keyword: parameters[knob.keyword].default for knob in self.knobs}


_MARGIN = Knob("margin", 0.5)  # fits unit vectors: Euclidean distances lie in [0, 2]
_SCALE = Knob("scale", 20.0)
_GIST_KNOBS = (Knob("temperature", 0.01), Knob("margin", 0.0))  # sentence-transformers' values

REGISTRY: dict[str, LossEntry] = {entry.name: entry for entry in (
    LossEntry(BatchAllTripletLoss, "batch", ("labelled",), (_MARGIN,)),
    LossEntry(BatchHardTripletLoss, "batch", ("labelled",), (_MARGIN,)),
    LossEntry(BatchHardSoftMarginTripletLoss, "batch", ("labelled",)),  # no margin: log(1 + exp(d_ap - d_an))
    LossEntry(BatchSemiHardTripletLoss, "batch", ("labelled",), (_MARGIN,)),
    LossEntry(TripletLoss, "triplets", ("triplets",), (Knob("margin", 0.5, argument="triplet_margin"),)),
    LossEntry(ContrastiveLoss, "pairs", ("binary_pairs",), (_MARGIN,)),
    LossEntry(OnlineContrastiveLoss, "pairs", ("binary_pairs",), (_MARGIN,)),
    LossEntry(CosineSimilarityLoss, "pairs", ("scored_pairs",)),  # MSE between cosine similarity and the score
    LossEntry(CoSENTLoss, "pairs", ("scored_pairs",), (_SCALE,)),
    LossEntry(AnglELoss, "pairs", ("scored_pairs",), (_SCALE,)),
    LossEntry(MultipleNegativesRankingLoss, "in-batch negatives", ("labelled", "positive_pairs", "triplets"), (_SCALE,)),
    LossEntry(MultipleNegativesSymmetricRankingLoss, "in-batch negatives", ("positive_pairs",), (_SCALE,)),
    LossEntry(ContrastiveTensionLossInBatchNegatives, "two encodings", ("unlabelled",), (_SCALE,)),
    LossEntry(ContrastiveTensionLoss, "two encodings, labelled", ("unlabelled",)),  # pairs: contrastive_tension_pairs
    LossEntry(MegaBatchMarginLoss, "anchor-positive pairs", ("positive_pairs",),
              (Knob("positive_margin", 0.8), Knob("negative_margin", 0.3))),  # sentence-transformers' values
    LossEntry(GlobalOrthogonalRegularizationLoss, "columns", ("positive_pairs", "triplets")),  # add to a main loss
    LossEntry(MSELoss, "teacher embeddings", ("teacher_embeddings",)),
    LossEntry(EmbedDistillLoss, "teacher embeddings", ("teacher_embeddings",)),
    LossEntry(MarginMSELoss, "teacher scores", ("teacher_scores",)),
    LossEntry(DistillKLDivLoss, "teacher scores", ("teacher_scores",), (Knob("temperature", 1.0),)),
    LossEntry(CachedMultipleNegativesRankingLoss, "runs the model", ("positive_pairs", "triplets"), (_SCALE,),
              needs=("model",)),
    LossEntry(CachedMultipleNegativesSymmetricRankingLoss, "runs the model", ("positive_pairs",), (_SCALE,),
              needs=("model",)),
    LossEntry(GISTEmbedLoss, "runs the model", ("positive_pairs", "triplets"), _GIST_KNOBS, needs=("model", "guide")),
    LossEntry(CachedGISTEmbedLoss, "runs the model", ("positive_pairs", "triplets"), _GIST_KNOBS,
              needs=("model", "guide")),
)}

NOT_REGISTERED = {
    "MatryoshkaLoss": "a modifier: it wraps another loss (MatryoshkaLoss(loss, matryoshka_dims)), so it is built "
                      "around the loss you pick, for that loss's data",
    "DenoisingAutoEncoderLoss": "it runs the model and owns a decoder built from it (TSDAE): "
                                "DenoisingAutoEncoderLoss(model), on denoising_pairs(sentences)",
    "AdaptiveLayerLoss": "a modifier that runs the model (every layer's output): "
                         "AdaptiveLayerLoss(model, MultipleNegativesRankingLoss())",
    "Matryoshka2dLoss": "a modifier that runs the model: Matryoshka2dLoss(model, loss, [384, 128, 32])",
    "SoftmaxLoss": "its classifier head needs embedding_dimension and num_labels, from the model and the (premise, "
                   "hypothesis, label) NLI data, not knobs (notebook 06)",
    "ClassificationLoss": "its classifier head needs embedding_dimension and num_labels, from the model and the "
                          "labelled data, not knobs (notebook 12)",
}


class LossArgumentError(TypeError, ValueError):
    """A loss argument the loss does not take: a TypeError (a wrong keyword), and a ValueError for the command line."""


def losses_for(kind: str) -> tuple[str, ...]:
    """The names of the registered losses that train on `kind` of data, in registry order."""
    if kind not in DATA_KINDS:
        raise ValueError(f"unknown data kind {kind!r}; the kinds are: {', '.join(DATA_KINDS)}.")
    return tuple(name for name, entry in REGISTRY.items() if kind in entry.data_kinds)


def build_loss(name: str, kind: str, **loss_kwargs):
    """The loss class `name` with `loss_kwargs` (sentence-transformers' defaults for the rest), after checking
    that it fits `kind` of data."""
    fitting = losses_for(kind)
    if name not in fitting:
        raise ValueError(f"{name} does not fit {kind.replace('_', ' ')} data; use one of: {', '.join(fitting)}.")
    entry = REGISTRY[name]
    missing = [need for need in entry.needs if loss_kwargs.get(need) is None]
    if missing:
        raise LossArgumentError(
            f"{name} runs a model itself, so it needs {' and '.join(missing)}: "
            f"build_loss({name!r}, {kind!r}, {', '.join(f'{need}=...' for need in entry.needs)})."
        )
    loss_class = entry.loss_class
    try:
        return loss_class(**loss_kwargs)
    except TypeError as error:
        accepted = [p for p in inspect.signature(loss_class).parameters if p != "self"]
        raise LossArgumentError(f"{name} does not accept {', '.join(map(repr, loss_kwargs))} ({error}); "
                                f"its arguments are: {', '.join(accepted)}.") from None
