"""Every loss of the course, named and parameterised exactly as in sentence-transformers, and the registry of them.

They take embedding tensors (not a model), so they can be taught, plotted and tested on their own:
pairs `loss(emb_a, emb_b, labels)`, triplets `loss(anchor, positive, negative)`, labelled batches
`loss(embeddings, labels)`, in-batch negatives `loss(anchor, positive, *negatives)`, regularisers
`loss(*columns)` (`GlobalOrthogonalRegularizationLoss`), distillation `loss(*columns, labels)` with the teacher's
embeddings or scores as labels, Contrastive Tension `loss(emb_1, emb_2, labels)` (two encoders).
`MatryoshkaLoss` is a modifier: it wraps any of them. The exceptions must run a model themselves and take
tokenized columns and the model(s) explicitly: the cached (GradCache) losses run the model twice, GIST
(`GISTEmbedLoss`, `CachedGISTEmbedLoss`) also runs a guide model, the modifiers `AdaptiveLayerLoss` /
`Matryoshka2dLoss` need every layer's output, and TSDAE (`DenoisingAutoEncoderLoss`) runs a decoder built from it.
`ClassificationLoss` (a linear head + cross-entropy on labelled batches) is not a sentence-transformers loss:
it is the "classification fine-tuning" baseline of notebook 12.

`REGISTRY` (`labkit.losses.registry`) says, for every loss you can pick by name, which kinds of data it trains
on (`DATA_KINDS`), how it is called (`INPUTS`) and its knobs (margin, scale) with the values the course uses;
`build_loss(name, kind, **arguments)` builds one after checking that it fits the data, and `losses_for(kind)`
lists the losses for a kind. The command line, `labkit.experiment`, the loss playground and the loss comparison
all take their lists of losses from it: to add a loss, add one entry there.
"""
from labkit.losses.adaptive_layer import AdaptiveLayerLoss, Matryoshka2dLoss
from labkit.losses.cached import CachedMultipleNegativesRankingLoss, CachedMultipleNegativesSymmetricRankingLoss
from labkit.losses.classification import ClassificationLoss
from labkit.losses.distillation import DistillKLDivLoss, EmbedDistillLoss, MarginMSELoss, MSELoss
from labkit.losses.gist import CachedGISTEmbedLoss, GISTEmbedLoss
from labkit.losses.matryoshka import MatryoshkaLoss
from labkit.losses.megabatch import MegaBatchMarginLoss
from labkit.losses.pairs import ContrastiveLoss, OnlineContrastiveLoss, SiameseDistanceMetric
from labkit.losses.ranking import (
    ContrastiveTensionLossInBatchNegatives,
    MultipleNegativesRankingLoss,
    MultipleNegativesSymmetricRankingLoss,
)
from labkit.losses.unsupervised import ContrastiveTensionLoss, DenoisingAutoEncoderLoss
from labkit.losses.regression import AnglELoss, CoSENTLoss, CosineSimilarityLoss, SoftmaxLoss
from labkit.losses.regularization import GlobalOrthogonalRegularizationLoss
from labkit.losses.triplets import (
    BatchHardTripletLossDistanceFunction,
    TripletDistanceMetric,
    BatchAllTripletLoss,
    BatchHardSoftMarginTripletLoss,
    BatchHardTripletLoss,
    BatchSemiHardTripletLoss,
    TripletLoss,
)
from labkit.losses.registry import (
    DATA_KINDS, INPUTS, NOT_REGISTERED, REGISTRY, Knob, LossArgumentError, LossEntry, build_loss, losses_for,
)

__all__ = [
    "ContrastiveLoss", "OnlineContrastiveLoss", "CosineSimilarityLoss", "CoSENTLoss", "AnglELoss", "SoftmaxLoss",
    "TripletLoss",
    "BatchAllTripletLoss", "BatchHardTripletLoss", "BatchHardSoftMarginTripletLoss", "BatchSemiHardTripletLoss",
    "MultipleNegativesRankingLoss", "MultipleNegativesSymmetricRankingLoss", "ContrastiveTensionLossInBatchNegatives",
    "CachedMultipleNegativesRankingLoss", "CachedMultipleNegativesSymmetricRankingLoss", "GISTEmbedLoss",
    "CachedGISTEmbedLoss", "MegaBatchMarginLoss", "GlobalOrthogonalRegularizationLoss", "MSELoss",
    "EmbedDistillLoss", "MarginMSELoss", "DistillKLDivLoss", "MatryoshkaLoss", "Matryoshka2dLoss", "AdaptiveLayerLoss",
    "ContrastiveTensionLoss", "DenoisingAutoEncoderLoss", "ClassificationLoss", "SiameseDistanceMetric",
    "TripletDistanceMetric", "BatchHardTripletLossDistanceFunction",
    "REGISTRY", "NOT_REGISTERED", "DATA_KINDS", "INPUTS", "LossEntry", "Knob", "LossArgumentError", "build_loss",
    "losses_for",
]
