"""Every loss of the course, named and parameterised exactly as in sentence-transformers.

They take embedding tensors (not a model), so they can be taught, plotted and tested on their own:
pairs `loss(emb_a, emb_b, labels)`, triplets `loss(anchor, positive, negative)`, labelled batches
`loss(embeddings, labels)`, in-batch negatives `loss(anchor, positive, *negatives)`. The one exception,
`CachedMultipleNegativesRankingLoss`, must run the model itself (GradCache) and takes tokenized inputs.
"""
# The loss classes are imported here once their modules exist (being written now).
