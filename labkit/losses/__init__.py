"""Every loss of the course, named and parameterised exactly as in sentence-transformers.

They take embedding tensors (not a model), so they can be taught, plotted and tested on their own:
pairs `loss(emb_a, emb_b, labels)`, triplets `loss(anchor, positive, negative)`, labelled batches
`loss(embeddings, labels)`, in-batch negatives `loss(anchor, positive, *negatives)`. The one exception,
`CachedMultipleNegativesRankingLoss`, must run the model itself (GradCache) and takes tokenized inputs.
`ClassificationLoss` (a linear head + cross-entropy on labelled batches) is not a sentence-transformers loss:
it is the "classification fine-tuning" baseline of notebook 12.
"""
from labkit.losses.cached import CachedMultipleNegativesRankingLoss
from labkit.losses.classification import ClassificationLoss
from labkit.losses.pairs import ContrastiveLoss, OnlineContrastiveLoss, SiameseDistanceMetric
from labkit.losses.ranking import (
    ContrastiveTensionLossInBatchNegatives,
    MultipleNegativesRankingLoss,
    MultipleNegativesSymmetricRankingLoss,
)
from labkit.losses.regression import AnglELoss, CoSENTLoss, CosineSimilarityLoss, SoftmaxLoss
from labkit.losses.triplets import (
    BatchHardTripletLossDistanceFunction,
    TripletDistanceMetric,
    BatchAllTripletLoss,
    BatchHardSoftMarginTripletLoss,
    BatchHardTripletLoss,
    BatchSemiHardTripletLoss,
    TripletLoss,
)

PAIR_LOSSES = ("ContrastiveLoss", "OnlineContrastiveLoss", "CosineSimilarityLoss", "CoSENTLoss", "AnglELoss", "SoftmaxLoss")
TRIPLET_LOSSES = ("TripletLoss",)
BATCH_LOSSES = ("BatchAllTripletLoss", "BatchHardTripletLoss", "BatchHardSoftMarginTripletLoss", "BatchSemiHardTripletLoss")
IN_BATCH_NEGATIVES_LOSSES = (
    "MultipleNegativesRankingLoss", "MultipleNegativesSymmetricRankingLoss", "ContrastiveTensionLossInBatchNegatives",
)

__all__ = [*PAIR_LOSSES, *TRIPLET_LOSSES, *BATCH_LOSSES, *IN_BATCH_NEGATIVES_LOSSES,
           "CachedMultipleNegativesRankingLoss", "ClassificationLoss", "SiameseDistanceMetric", "TripletDistanceMetric",
           "BatchHardTripletLossDistanceFunction"]
