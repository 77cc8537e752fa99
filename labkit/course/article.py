"""The original hard-triplet-mining article's code, reconstructed faithfully, to compare labkit against.

Source: R. J. N. Clarke, "Fine-tune an embedding model with triplet margin loss in PyTorch" (Medium, 2024),
whose code is the notebook ``1.7_finetune_with_triplet_margin_loss/1.7.1_embedding_ft_train.ipynb`` of the
GitHub repository ``rjnclarke/101_notebooks`` (MIT licence). It fine-tunes ``thenlper/gte-base`` (mean
pooling, L2-normalised) on ~40-word passages of four Gutenberg books labelled by chapter (70 classes,
12,000 training passages), with batch-hard triplet mining and ``nn.TripletMarginLoss()`` (margin 1.0).

The code below follows that notebook line for line in behaviour. The only changes: names (the notebook's
``CustomTripletDataset`` / ``CustomBatchSampler`` / ``generate_batches`` / the loop inside ``train()``),
the global ``device`` and ``np.random`` became arguments (``device=``, ``seed=``; ``seed=None`` keeps the
global, unseeded RNG of the original), the loss loop became a function, and a clear error replaces two
crashes. Note on tokenization: the notebook tokenizes every passage *once, up front*, one sentence at a
time with ``padding='max_length'`` (:meth:`ArticleDataset.from_texts` does the same), and ``__getitem__``
moves each example's tensors to the device.

Nothing here is meant for your own training: notebooks 02, 05 and 12 and ``benchmarks/losses.py`` import it
to show, and time, what labkit does differently; :func:`train_like_the_article` runs the article's whole
training loop (with a step budget) so notebook 12 can compare its result with ``labkit.train.fit``'s. Each
docstring says what is wrong or slow and what labkit does instead.

Notebook 12's comparison lives here too: :func:`compare_with_article` trains the three contenders (the
article's loop, ``fit`` with the same batch-hard loss, ``fit`` with classification fine-tuning) from the same
weights for several seeds each and measures every run once on the test split; the :class:`ArticleComparison`
it returns reports mean ± sd over seeds and tests the article's conclusions, stated as :data:`HYPOTHESES`,
against the seed-to-seed spread. Collapse is measured on the embeddings (:func:`mean_pairwise_cosine`,
:func:`effective_rank`), not read off a loss value.
Two further slips of the notebook are not reproduced as code but worth knowing: ``validate()`` iterates
``train_loader`` instead of ``dev_loader`` (the "dev loss" is a training loss), and the summary takes
``np.argmin(dev_loss)`` of a scalar, so it always reports epoch 1 as the best.

Taught in notebooks/02_dataset_and_sampler.ipynb (dataset and sampler), notebooks/05_triplet_losses.ipynb
(the loss) and notebooks/12_reproducing_the_article.ipynb (the training loop and the full comparison).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset, SequentialSampler

__all__ = [
    "ArticleDataset", "ArticleWeightedSampler", "article_validation_batches", "article_batch_hard_loss",
    "train_like_the_article", "ARTICLE_SETTINGS", "mean_pairwise_cosine", "effective_rank", "measure_on",
    "Hypothesis", "HYPOTHESES", "ArticleComparison", "compare_with_article", "METHODS", "ARTICLE_LOOP",
    "FIT_BATCH_HARD", "FIT_CLASSIFICATION", "BEFORE",
]


class ArticleDataset(Dataset):
    """The article's dataset: pre-padded token tensors, a ``label_dict``, and a device copy per example.

    Behaviour (as in the article): ``labels`` are stored as a *float* tensor (``torch.Tensor(labels)``);
    ``label_dict`` maps each label (as int) to the list of its example indices, ``unique_classes`` lists
    the labels; ``__getitem__(i)`` returns ``(input_ids, attention_mask, label)`` after moving each of the
    three tensors to ``device``.

    What is wrong or slow, and what labkit does instead:

    - ``padding='max_length'`` pads every passage to the tokenizer's maximum (512 for gte-base) although a
      40-word passage is ~53 tokens: ~10× more token positions than real tokens, and model time follows positions (attention is quadratic
      in length). labkit tokenizes per batch with dynamic padding (``labkit.collate``), optionally sorting by
      length, so a batch is only as long as its longest text.
    - Moving each example to the GPU inside ``__getitem__`` makes one small host-to-device copy per tensor
      per example (96 per batch of 32) instead of one per batch, and breaks ``num_workers > 0`` (CUDA in
      worker processes) and ``pin_memory``. labkit datasets return CPU data; the training loop moves the
      collated batch once.
    - Labels become float32 (exact only up to 2**24, and ``labels == label`` compares floats). labkit
      keeps integer class codes.

    Args:
        tokens: list of 1-D ``input_ids`` tensors (already padded to equal length).
        attention_masks: list of 1-D attention-mask tensors.
        labels: one class label (int) per example.
        device: where ``__getitem__`` moves the tensors (the article's global ``device``).
    """

    def __init__(self, tokens, attention_masks, labels, device: str | torch.device = "cpu") -> None:
        if not (len(tokens) == len(attention_masks) == len(labels)):
            raise ValueError(
                f"tokens, attention_masks and labels must have the same length, got "
                f"{len(tokens)}, {len(attention_masks)} and {len(labels)}."
            )
        self.device = device
        self.tokens = tokens
        self.attention_masks = attention_masks
        self.labels = torch.Tensor(labels)  # float32, as in the article
        self.label_dict: dict[int, list[int]] = defaultdict(list)
        for i in range(len(tokens)):
            self.label_dict[int(self.labels[i])].append(i)
        self.unique_classes = list(self.label_dict.keys())

    @classmethod
    def from_texts(cls, texts: Sequence[str], labels, tokenizer, device: str | torch.device = "cpu",
                   max_length: int | None = None) -> "ArticleDataset":
        """Tokenize like the article: one sentence at a time, ``truncation=True, padding='max_length'``.

        ``max_length=None`` pads to the tokenizer's maximum (512 for gte-base), as the article does; a number
        pads (and truncates) every passage to that many tokens instead — still fixed-length padding.
        """
        tokens, attention_masks = [], []
        for sentence in texts:
            encoding = tokenizer(sentence, truncation=True, padding="max_length", max_length=max_length,
                                 return_tensors="pt")
            tokens.append(encoding["input_ids"].squeeze(0))
            attention_masks.append(encoding["attention_mask"].squeeze(0))
        return cls(tokens, attention_masks, list(labels), device=device)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index):
        ids = self.tokens[index].to(self.device)
        ams = self.attention_masks[index].to(self.device)
        y = self.labels[index].to(self.device)
        return ids, ams, y


class ArticleWeightedSampler(SequentialSampler):
    """The article's training batch sampler: 4 classes × (batch_size // 4) examples, each batch drawn afresh.

    Behaviour (as in the article): for each batch it draws 4 distinct classes with probability inversely
    proportional to how often each class was drawn so far this epoch (``weights`` start at 1 and count up),
    then ``batch_size // 4`` examples of each without replacement *within the batch*. It keeps yielding
    until it has handed out as many indices as the dataset holds. ``weights`` is indexed by the label
    value, so labels must be 0..C-1 (as the article's chapter indices are).

    What is wrong, and what labkit's :class:`~labkit.sampling.PKBatchSampler` does instead:

    - Every batch is drawn independently, so within one "epoch" some examples come 2, 3 or more times and
      others never (measure it with :func:`labkit.sampling.example_usage`). PKBatchSampler shuffles each
      class and deals it out: every example at most once per epoch.
    - With ``seed=None`` (the article) it uses NumPy's global RNG: batches cannot be reproduced (the
      article's author notes this and pickles pre-generated evaluation batches instead). PKBatchSampler
      derives each epoch from ``(seed, epoch)``.
    - ``len()`` says ``len(dataset) // batch_size`` but the loop stops only once the indices handed out reach
      ``len(dataset)``, so it can yield one batch more than it announces; a class with fewer than
      ``batch_size // 4`` examples makes a smaller batch. P and K are not parameters (4 is hard-coded).
    - Class choice is a Python ``while`` loop with rejection (redraw until the class is new).

    Args:
        dataset: an :class:`ArticleDataset` (needs ``label_dict``, ``unique_classes`` and ``len``).
        batch_size: examples per batch; ``batch_size // 4`` per class.
        seed: None uses ``np.random`` as the article does; an int uses a private ``RandomState(seed)``.
    """

    def __init__(self, dataset, batch_size: int, seed: int | None = None) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.unique_classes = sorted(dataset.unique_classes)
        if self.unique_classes != list(range(len(self.unique_classes))):
            raise ValueError(
                "The article's sampler indexes its class weights by label value, so labels must be 0..C-1; "
                f"got labels {self.unique_classes[:10]}…"
            )
        if len(self.unique_classes) < 4:
            raise ValueError(f"The article's sampler draws 4 distinct classes per batch; the data has {len(self.unique_classes)}.")
        self.label_dict = dataset.label_dict
        self.num_batches = len(self.dataset) // self.batch_size
        self.class_size = self.batch_size // 4
        self.random = np.random if seed is None else np.random.RandomState(seed)

    def __iter__(self) -> Iterator[list[int]]:
        total_samples_used = 0
        weights = np.repeat(1, len(self.unique_classes))

        while total_samples_used < len(self.dataset):
            batch = []
            classes = []
            for _ in range(4):
                next_selected_class = self._select_class(weights)
                while next_selected_class in classes:
                    next_selected_class = self._select_class(weights)
                weights[next_selected_class] += 1
                classes.append(next_selected_class)
                new_choices = self.label_dict[next_selected_class]
                remaining_samples = list(
                    self.random.choice(new_choices, min(self.class_size, len(new_choices)), replace=False)
                )
                batch.extend(int(i) for i in remaining_samples)

            total_samples_used += len(batch)

            yield batch

    def _select_class(self, weights) -> int:
        dist = 1 / weights
        dist = dist / np.sum(dist)
        selected = int(self.random.choice(self.unique_classes, p=dist))
        return selected

    def __len__(self) -> int:
        return self.num_batches


def article_validation_batches(dataset, seed: int = 42) -> list[list[int]]:
    """The article's fixed evaluation batches (its ``generate_batches``): 4 random classes × their last 8 examples.

    Behaviour (as in the article): seeds NumPy's *global* RNG with 42, then until as many indices as the
    dataset holds are handed out, draws 4 classes uniformly *with replacement* and adds the last 8
    examples of each (``label_dict[c][-8:]``).

    What is wrong, and what :class:`~labkit.sampling.FixedBatchSampler` does instead: only the last 8
    examples of each class are ever evaluated; a class drawn twice puts the same 8 examples twice in one
    batch (a positive at distance 0); and reseeding the global RNG changes every later random draw of the
    program. FixedBatchSampler deals every class out (each example at most once), has 4 *distinct* classes
    per batch, and uses a private generator.
    """
    np.random.seed(seed)
    batches = []
    total_samples = 0
    while total_samples < len(dataset):
        batch = []
        for _ in range(4):
            cat = int(np.random.choice(dataset.unique_classes))
            batch.extend(dataset.label_dict[cat][-8:])
        batches.append(batch)
        total_samples += len(batch)
    return batches


def article_batch_hard_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The article's batch-hard triplet loss: a Python loop over anchors, then ``nn.TripletMarginLoss``.

    Behaviour (as in the article's ``train()``): ``torch.cdist`` gives the batch's distance matrix; for each
    anchor i the loop finds the farthest example of its class (other than i) and the closest example of
    another class, appends the three embedding rows to lists, stacks them, and applies
    ``nn.TripletMarginLoss(margin=margin)`` (Euclidean, mean over anchors). The article uses the default
    margin 1.0, on L2-normalised embeddings.

    The value equals sentence-transformers' / labkit's ``BatchHardTripletLoss(margin=margin)`` with
    Euclidean distance, up to ``TripletMarginLoss``'s ``eps=1e-6``: it measures ``||a - p + eps||``, which
    differs from ``||a - p||`` by at most ``eps * sqrt(dim)`` (about 3e-5 for dim 768).

    What is slow, and what labkit does instead:

    - B iterations of Python, each launching ~10 small tensor operations, and 3·B row-indexing nodes in the
      autograd graph (``torch.stack`` of B single rows, three times). In the backward pass each of those
      3·B ``embeddings[i]`` selections writes its gradient into a full (B, D) tensor of zeros, and the 3·B
      of them are summed: O(B²·D) memory traffic (about 19 GB at B=2048, D=768), so the loop's time grows
      with D as well as with B. labkit masks the distance matrix and takes one ``max``/``min`` per row for
      all anchors at once, then builds the loss on the B gathered triplets (one gather, one backward).
    - The distance matrix is computed with gradient tracking but only used to *choose* indices; the loss
      then computes the distances a second time. labkit selects without gradient and differentiates only
      the distances that enter the loss.
    - An anchor without a positive in the batch (its class appears once) crashes the loop (``argmax`` of an
      empty tensor); here that is a ValueError. labkit's loss, like sentence-transformers', keeps such an
      anchor with its positive distance taken as 0 (so only its hardest negative acts on it).

    Args:
        embeddings: (B, D) batch of embeddings.
        labels: (B,) class labels.
        margin: the triplet margin (``nn.TripletMarginLoss``'s default 1.0 in the article).
    """
    criterion = nn.TripletMarginLoss(margin=margin)

    distance_matrix = torch.cdist(embeddings, embeddings, p=2)  # Create square distance matrix

    anchors = []
    positives = []
    negatives = []

    for i in range(len(labels)):

        anchor_label = labels[i].item()
        anchor_distance = distance_matrix[i]  # distance between anchor and all other points

        # Hardest positive (farthest in the same class)
        hardest_positive_idx = (labels == anchor_label).nonzero(as_tuple=True)[0]  # all same class indices
        hardest_positive_idx = hardest_positive_idx[hardest_positive_idx != i]  # disclude own label
        if len(hardest_positive_idx) == 0:  # the article crashes here (argmax of an empty tensor)
            raise ValueError(f"Anchor {i} (label {anchor_label}) has no positive in the batch; use P×K batches.")
        hardest_positive = hardest_positive_idx[anchor_distance[hardest_positive_idx].argmax()]

        # Hardest negative (closest from different class)
        hardest_negative_idx = (labels != anchor_label).nonzero(as_tuple=True)[0]  # all diff class indices
        if len(hardest_negative_idx) == 0:
            raise ValueError("The batch has a single class: no negatives; use P×K batches with P >= 2.")
        hardest_negative = hardest_negative_idx[anchor_distance[hardest_negative_idx].argmin()]

        # load selected
        anchors.append(embeddings[i])
        positives.append(embeddings[hardest_positive])
        negatives.append(embeddings[hardest_negative])

    # Convert lists to tensors
    anchors = torch.stack(anchors)
    positives = torch.stack(positives)
    negatives = torch.stack(negatives)

    return criterion(anchors, positives, negatives)


# The article's training settings, as far as its notebook states them (1.7.1_embedding_ft_train.ipynb).
ARTICLE_SETTINGS = {
    "model": "thenlper/gte-base",  # mean pooling, then F.normalize (its own EmbeddingModel class)
    "batch_size": 32,  # 4 classes x 8 passages (ArticleWeightedSampler)
    "lr": 5e-5,
    "weight_decay": 0.01,  # torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=alpha)
    "margin": 1.0,  # nn.TripletMarginLoss() defaults: margin 1.0, p=2, eps=1e-6, mean over anchors
    "warmup": "total_steps // 12",  # transformers.get_linear_schedule_with_warmup: linear up, then linear to 0
    "epochs": 15,  # of len(dataset) // 32 = 375 announced batches: ~5,600 optimizer steps
    "padding": "max_length (512 tokens for gte-base)",
    "gradient_clipping": None,
    "precision": "fp32",
}


def train_like_the_article(
    model: nn.Module,
    train_frame,
    steps: int,
    *,
    batch_size: int = 32,
    lr: float = 5e-5,
    weight_decay: float = 0.01,
    margin: float = 1.0,
    max_length: int | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    show_progress: bool = True,
):
    """Train ``model`` with the article's own loop for ``steps`` optimizer steps; return a ``TrainResult``.

    What runs, as in the article's ``tv_run()`` / ``train()`` (defaults are its settings, :data:`ARTICLE_SETTINGS`):

    1. every training passage is tokenized up front, one at a time, padded to a fixed length
       (:meth:`ArticleDataset.from_texts`), and kept in an :class:`ArticleDataset` that moves each example
       to the device in ``__getitem__``;
    2. batches come from :class:`ArticleWeightedSampler` (4 classes × ``batch_size // 4`` passages, each
       batch drawn afresh, so passages repeat within an epoch); a new pass over it starts when one ends;
    3. ``torch.optim.AdamW(model.parameters(), lr, weight_decay)`` (no fused kernel), with transformers'
       ``get_linear_schedule_with_warmup`` and ``total_steps // 12`` warm-up steps;
    4. per step: ``zero_grad``, embed (``model.train()``: dropout on), :func:`article_batch_hard_loss`
       (the per-anchor loop + ``nn.TripletMarginLoss``), ``loss.item()``, ``backward``, ``optimizer.step``,
       ``scheduler.step`` — no gradient clipping, fp32.

    Differences from the article, all forced by running it here and all kept small:

    - ``steps`` replaces ``epochs``, and the schedule's ``total_steps`` is ``steps``. (The article uses
      ``len(train_loader) * epochs``; its sampler can yield one batch more per epoch than ``len()`` says,
      so its schedule reaches 0 a few batches early and those train at learning rate 0. Not reproduced.)
    - ``max_length``: the article pads to the tokenizer's maximum, 512 for gte-base (``None`` here does the
      same); a number pads and truncates to that length instead — still one fixed length for every passage.
    - no dev loss and no early stopping: the article's ``validate()`` iterates the *training* loader (see the
      module docstring), so its "dev loss" is another training loss; evaluate the returned model instead.
    - ``seed``: ``None`` keeps NumPy's global RNG for the sampler, as in the article; an int makes the batches
      reproducible. Dropout draws from torch's global RNG in both cases.
    - the returned model is in ``eval()`` mode (dropout off), as labkit's models are when loaded.
    - the model is any ``EmbeddingModel`` (``forward(features) -> embeddings``); the article's own class is
      mean pooling + ``F.normalize``, i.e. ``labkit.load_model("thenlper/gte-base", normalize=True)``.

    Args:
        model: the model to train in place (``.tokenizer`` and ``forward({"input_ids", "attention_mask"})``).
        train_frame: a DataFrame with ``text`` and ``label`` (int 0..C-1, every class at least twice), e.g.
            ``labkit.data.load_books("train")``.
        steps: optimizer steps to take.
        batch_size, lr, weight_decay, margin: the article's 32, 5e-5, 0.01 and 1.0.
        max_length: tokens every passage is padded to (None: the tokenizer's maximum).
        seed, device, show_progress: see above; ``device=None`` picks the best available.

    Returns:
        ``labkit.train.TrainResult`` with ``history`` (one ``{"step", "loss"}`` row per step), ``steps`` and
        ``seconds`` (the training loop only, not the up-front tokenization), like ``fit()``'s.

    Taught in notebooks/12_reproducing_the_article.ipynb.
    """
    import time

    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from labkit.env import pick_device
    from labkit.train import TrainResult

    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive int (optimizer steps to take), got {steps!r}.")
    missing = {"text", "label"} - set(getattr(train_frame, "columns", ()))
    if missing:
        raise ValueError(f"train_frame must be a DataFrame with columns 'text' and 'label' (e.g. "
                         f"labkit.data.load_books('train')); missing {sorted(missing)}.")
    if batch_size < 8 or batch_size % 4:
        raise ValueError(f"batch_size must be a multiple of 4 and at least 8 (the article's sampler takes 4 classes "
                         f"x batch_size // 4 passages, and an anchor needs a positive), got {batch_size}.")
    counts = train_frame["label"].value_counts()
    if (counts < 2).any():
        raise ValueError(f"every class needs at least 2 passages (an anchor needs a positive; the article's loop "
                         f"crashes otherwise); classes {sorted(counts[counts < 2].index.tolist())[:10]} have one.")
    device = pick_device(device)
    model.to(device)

    dataset = ArticleDataset.from_texts(train_frame["text"].tolist(), train_frame["label"].tolist(), model.tokenizer,
                                        device=device, max_length=max_length)
    train_loader = DataLoader(dataset, batch_sampler=ArticleWeightedSampler(dataset, batch_size, seed=seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=steps // 12, num_training_steps=steps)

    result = TrainResult()
    progress = tqdm(total=steps, desc="article loop", disable=not show_progress)
    model.train()
    started = time.perf_counter()
    try:
        while result.steps < steps:  # the article's `for epoch in range(epochs)`: a fresh pass over the sampler
            for ids, attention_masks, labels in train_loader:
                optimizer.zero_grad()
                embeddings = model({"input_ids": ids, "attention_mask": attention_masks})
                loss = article_batch_hard_loss(embeddings, labels, margin=margin)
                value = loss.item()  # the article reads every loss back (a host sync per step), never checks it
                loss.backward()
                optimizer.step()
                scheduler.step()
                result.steps += 1
                result.history.append({"step": result.steps, "loss": value})
                progress.update(1)
                progress.set_postfix(loss=f"{value:.4f}")
                if result.steps >= steps:
                    break
    finally:
        progress.close()
        model.eval()
    result.seconds = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------------------------------------------
# Notebook 12's comparison: three trainings × several seeds, and the article's conclusions tested on them
# --------------------------------------------------------------------------------------------------------------
ARTICLE_LOOP = "(a) the article's loop"
FIT_BATCH_HARD = "(b) labkit fit + BatchHardTripletLoss"
FIT_CLASSIFICATION = "(c) labkit fit + ClassificationLoss"
METHODS = (ARTICLE_LOOP, FIT_BATCH_HARD, FIT_CLASSIFICATION)
BEFORE = "before training"  # the base model's row: one deterministic measurement, no seed spread
SHORT_NAMES = {ARTICLE_LOOP: "(a) article's\nloop", FIT_BATCH_HARD: "(b) fit +\nbatch hard",
               FIT_CLASSIFICATION: "(c) fit +\nclassification"}
METRICS = ("precision@1", "MAP@R", "mean cosine", "effective rank")
CLASSIFIER_HEAD_LR = 1e-3  # the new head starts random: a larger learning rate than the encoder's (notebook 12)


def mean_pairwise_cosine(embeddings) -> float:
    """Mean cosine similarity over all pairs of distinct rows: 1.0 when every embedding points the same way.

    Definition: for rows :math:`e_1 \\dots e_n`, L2-normalised to :math:`\\hat e_i`,
    :math:`\\frac{1}{n(n-1)} \\sum_{i \\ne j} \\hat e_i^\\top \\hat e_j`. A collapsed model (every passage
    mapped to one point) gives 1.0; directions spread evenly over the sphere give about 0. Computed without
    the n × n matrix: :math:`\\sum_{i,j} \\hat e_i^\\top \\hat e_j = \\lVert \\sum_i \\hat e_i \\rVert^2`, and
    the n diagonal terms are 1.

    Recommendations: read it next to :func:`effective_rank`: embeddings can all lie in a cone (high mean
    cosine) and still be spread within it.

    Args:
        embeddings: (n, d) array or tensor, n >= 2; rows are normalised here.

    Example::

        >>> mean_pairwise_cosine([[1.0, 0.0], [2.0, 0.0]]), mean_pairwise_cosine([[1.0, 0.0], [0.0, 1.0]])
        (1.0, 0.0)
    """
    unit = _as_rows(embeddings, "embeddings")
    n = len(unit)
    unit = torch.nn.functional.normalize(unit, dim=1)
    total = unit.sum(dim=0)
    return float((total @ total - n) / (n * (n - 1)))


def effective_rank(embeddings) -> float:
    """Effective rank of the embedding matrix: about how many directions the embeddings really use.

    Definition (Roy & Vetterli 2007; "RankMe", Garrido et al. 2023): with the singular values
    :math:`\\sigma_k` of the (n, d) matrix and :math:`p_k = \\sigma_k / \\sum_j \\sigma_j`, the effective rank
    is :math:`\\exp(-\\sum_k p_k \\log p_k)`. It is 1 for a collapsed matrix (every row the same, rank 1) and
    ``min(n, d)`` when all singular values are equal (e.g. orthonormal rows). A training run that collapses
    its embeddings drives it towards 1; one that keeps them spread keeps it high.

    Args:
        embeddings: (n, d) array or tensor, n >= 2, used as given (pass L2-normalised embeddings, as the
            models of this course produce, so that every row weighs the same).

    References: O. Roy and M. Vetterli, "The effective rank: a measure of effective dimensionality" (EUSIPCO
    2007); Q. Garrido et al., "RankMe: Assessing the downstream performance of pretrained self-supervised
    representations by their rank" (ICML 2023).

    Example::

        >>> round(effective_rank([[1.0, 0.0], [0.0, 1.0]]), 6), round(effective_rank([[1.0, 0.0], [1.0, 0.0]]), 6)
        (2.0, 1.0)
    """
    singular_values = torch.linalg.svdvals(_as_rows(embeddings, "embeddings"))
    if not singular_values.sum() > 0:
        raise ValueError("embeddings are all zero: their effective rank is undefined.")
    shares = singular_values / singular_values.sum()
    shares = shares[shares > 0]  # 0 · log 0 = 0
    return float(torch.exp(-(shares * shares.log()).sum()))


def _as_rows(embeddings, name: str) -> torch.Tensor:
    rows = torch.as_tensor(np.asarray(embeddings, dtype=np.float64) if not torch.is_tensor(embeddings) else embeddings,
                           dtype=torch.float64)
    if rows.ndim != 2 or len(rows) < 2:
        raise ValueError(f"{name} must be a 2-D (n, d) matrix with n >= 2 rows, got shape {tuple(rows.shape)}.")
    return rows


def measure_on(model, frame, batch_size: int = 64) -> dict:
    """Encode ``frame["text"]`` once and return retrieval quality and how spread the embeddings are.

    Returns ``{"precision@1", "MAP@R"}`` (leave-one-out retrieval by ``frame["label"]``,
    `labkit.evaluate.retrieval_metrics`) and ``{"mean cosine", "effective rank"}`` of the L2-normalised
    embeddings (:func:`mean_pairwise_cosine`, :func:`effective_rank`): the measurements that can show a
    collapse, which a loss value cannot.
    """
    from labkit.evaluate import retrieval_metrics

    embeddings = model.encode(frame["text"].tolist(), batch_size=batch_size, normalize=True)
    retrieval = retrieval_metrics(embeddings, frame["label"].to_numpy())
    return {"precision@1": retrieval["precision_at_1"], "MAP@R": retrieval["mean_average_precision_at_r"],
            "mean cosine": mean_pairwise_cosine(embeddings), "effective rank": effective_rank(embeddings)}


@dataclass(frozen=True)
class Hypothesis:
    """A claim to test: ``metric`` is higher for ``higher`` than for ``lower`` (a method, or :data:`BEFORE`)."""

    name: str
    claim: str
    source: str
    metric: str
    higher: str
    lower: str


_ARTICLE = "the article: 'batch hard is not always best; fine-tuning on the classification task may win'"
_COLLAPSE = "the article's loss sat at the margin (1.0) for five epochs, which reads like a collapse"
HYPOTHESES = (
    Hypothesis("H0", "the article's loop improves on the base model", "any training should", "MAP@R",
               ARTICLE_LOOP, BEFORE),
    Hypothesis("H0", "labkit fit + batch hard improves on the base model", "any training should", "MAP@R",
               FIT_BATCH_HARD, BEFORE),
    Hypothesis("H0", "classification fine-tuning improves on the base model", "any training should", "MAP@R",
               FIT_CLASSIFICATION, BEFORE),
    Hypothesis("H1", "classification fine-tuning beats batch hard", _ARTICLE, "MAP@R", FIT_CLASSIFICATION,
               FIT_BATCH_HARD),
    Hypothesis("H1", "classification fine-tuning beats batch hard", _ARTICLE, "precision@1", FIT_CLASSIFICATION,
               FIT_BATCH_HARD),
    Hypothesis("H2", "the loop matters: fit beats the article's loop with the same loss",
               "this notebook's earlier one-seed reading", "MAP@R", FIT_BATCH_HARD, ARTICLE_LOOP),
    Hypothesis("H3", "the article's loop collapses the embeddings: mean cosine rises", _COLLAPSE, "mean cosine",
               ARTICLE_LOOP, BEFORE),
    Hypothesis("H3", "the article's loop collapses the embeddings: effective rank falls", _COLLAPSE,
               "effective rank", BEFORE, ARTICLE_LOOP),
    Hypothesis("H3", "fit + batch hard collapses the embeddings: mean cosine rises", _COLLAPSE, "mean cosine",
               FIT_BATCH_HARD, BEFORE),
    Hypothesis("H3", "fit + batch hard collapses the embeddings: effective rank falls", _COLLAPSE,
               "effective rank", BEFORE, FIT_BATCH_HARD),
)
SUPPORTED, CONTRADICTED, UNRESOLVED = "supported", "contradicted", "not resolved (within seed noise)"


@dataclass
class ArticleComparison:
    """What :func:`compare_with_article` measured: one row per (method, seed), and the base model's row.

    ``runs`` has the columns ``method``, ``seed``, the :data:`METRICS` on the test split, ``seconds`` (the
    training loop) and ``s / step``; ``before`` the same metrics for the untrained model; ``losses`` the
    training loss of every step of every run, keyed by ``(method, seed)``.
    """

    before: dict
    runs: pd.DataFrame
    losses: dict
    steps: int
    seeds: tuple

    def values(self, group: str, metric: str) -> np.ndarray:
        """The measurements of `metric` for `group` (a method: one per seed; :data:`BEFORE`: the one value)."""
        if group == BEFORE:
            return np.array([self.before[metric]], dtype=float)
        values = self.runs.loc[self.runs["method"] == group, metric].to_numpy(dtype=float)
        if not len(values):
            raise KeyError(f"No runs of {group!r}; the comparison has {sorted(self.runs['method'].unique())}.")
        return values

    def summary(self) -> pd.DataFrame:
        """Mean and sample standard deviation (ddof=1) over seeds of every metric and of ``s / step``, per method."""
        columns = [*METRICS, "s / step"]
        grouped = self.runs.groupby("method", sort=False)[columns]
        frame = pd.concat({"mean": grouped.mean(), "sd": grouped.std(ddof=1)}, axis=1).swaplevel(axis=1)
        before = pd.DataFrame({(metric, "mean"): [self.before[metric]] for metric in METRICS}, index=[BEFORE])
        return pd.concat([before, frame])[[(c, s) for c in columns for s in ("mean", "sd")]]

    def table(self, decimals: int = 4) -> pd.DataFrame:
        """:meth:`summary` as text, one "mean ± sd" cell per metric (the base model has no spread)."""
        summary, cells = self.summary(), {}
        for column in [*METRICS, "s / step"]:
            digits = 2 if column in ("effective rank", "s / step") else decimals
            cells[f"{column} (mean ± sd)"] = [
                "" if pd.isna(mean) else f"{mean:.{digits}f}" if pd.isna(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"
                for mean, sd in zip(summary[(column, "mean")], summary[(column, "sd")])]
        return pd.DataFrame(cells, index=summary.index).rename_axis(f"{len(self.seeds)} seeds × {self.steps} steps")

    def test(self, hypothesis: Hypothesis, confidence: float = 0.95) -> dict:
        """Difference of means and Welch's t against the seed spread; the verdict at `confidence` (two-sided).

        d = mean(higher) − mean(lower); its standard error se = sqrt(sd_h²/n_h + sd_l²/n_l) (the base model's
        row is one exact value: it adds nothing); t = d / se, compared with Student's t quantile at the
        Welch–Satterthwaite degrees of freedom. "supported": t above it; "contradicted": t below minus it
        (the opposite holds); otherwise not resolved. With 3 seeds a difference must be about 3–4 se to count.
        """
        from scipy import stats

        higher, lower = self.values(hypothesis.higher, hypothesis.metric), self.values(hypothesis.lower, hypothesis.metric)
        parts = [v.var(ddof=1) / len(v) for v in (higher, lower) if len(v) > 1]
        dofs = [len(v) - 1 for v in (higher, lower) if len(v) > 1]
        if not parts:
            raise ValueError("Need at least 2 seeds per method to compare a difference with the seed spread.")
        d, se = float(higher.mean() - lower.mean()), float(np.sqrt(sum(parts)))
        dof = sum(parts) ** 2 / sum(p ** 2 / k for p, k in zip(parts, dofs)) if se > 0 else float(min(dofs))
        needed = float(stats.t.ppf(0.5 + confidence / 2, dof))
        t = d / se if se > 0 else (np.inf if d > 0 else -np.inf if d < 0 else 0.0)
        verdict = SUPPORTED if t > needed else CONTRADICTED if t < -needed else UNRESOLVED
        return {"difference": d, "sd higher": _sd(higher), "sd lower": _sd(lower), "se": se, "t": float(t),
                "t needed": needed, "verdict": verdict}

    def hypotheses(self, hypotheses=HYPOTHESES, confidence: float = 0.95) -> pd.DataFrame:
        """One row per hypothesis: the claim, its metric, the difference, the seed spread and the verdict."""
        rows = [{"hypothesis": h.name, "claim": h.claim, "metric": h.metric, **self.test(h, confidence)}
                for h in hypotheses]
        return pd.DataFrame(rows)

    def conclusions(self, hypotheses=HYPOTHESES, confidence: float = 0.95) -> str:
        """The verdicts as sentences, each with its numbers (what the notebook prints instead of typed prose)."""
        lines = [f"{len(self.seeds)} seeds × {self.steps} steps per training; verdicts at {confidence:.0%} "
                 "(Welch's t against the spread between seeds):"]
        for h, row in zip(hypotheses, self.hypotheses(hypotheses, confidence).to_dict("records")):
            lines.append(
                f"- {h.name} ({h.claim}, {h.metric}): {row['verdict']}. Difference {row['difference']:+.4f}; "
                f"seed sd {row['sd higher']:.4f} vs {row['sd lower']:.4f}, so se {row['se']:.4f} and "
                f"t = {row['t']:+.1f} ({row['t needed']:.1f} needed).")
        return "\n".join(lines)

    def mean_losses(self) -> pd.DataFrame:
        """Training loss per step, averaged over the seeds of each method: columns ``step`` and one per method."""
        frame = pd.DataFrame([{"method": method, "step": step, "loss": loss}
                              for (method, _), values in self.losses.items() for step, loss in enumerate(values, 1)])
        return frame.pivot_table(index="step", columns="method", values="loss", sort=False).reset_index()

    def plot(self, metrics: Sequence[str] = ("MAP@R", "precision@1", "mean cosine", "effective rank")):
        """One panel per metric: each seed (dots), mean ± sd per method (error bar), the base model (dashed)."""
        import matplotlib.pyplot as plt

        methods = list(dict.fromkeys(self.runs["method"]))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 3.6), layout="constrained",
                                 squeeze=False)
        plt.close(fig)
        for ax, metric in zip(axes[0], metrics):
            for i, method in enumerate(methods):
                values = self.values(method, metric)
                spread = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
                ax.scatter(i + spread, values, s=14, color=colors[i % len(colors)], alpha=0.6, zorder=2)
                ax.errorbar(i + 0.3, values.mean(), yerr=_sd(values) if len(values) > 1 else None, fmt="o",
                            color=colors[i % len(colors)], capsize=4, zorder=3)
            ax.axhline(self.before[metric], color="grey", lw=1, ls="--", label=BEFORE)
            ax.set_xticks(range(len(methods)), [SHORT_NAMES.get(m, m) for m in methods], fontsize=8)
            ax.set_xlim(-0.5, len(methods) - 0.3)
            ax.set_title(f"test {metric}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        axes[0][0].legend(fontsize=8, loc="best")
        fig.suptitle(f"{len(self.seeds)} seeds × {self.steps} steps: dots = seeds, bar = mean ± sd", fontsize=10)
        return fig


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _train_one(method: str, model, train, *, steps: int, batch_p: int, batch_k: int, max_length: int | None,
               seed: int, show_progress: bool):
    """Train `model` in place with one of the :data:`METHODS`; return its ``TrainResult``.

    All three share the article's optimiser settings (AdamW 5e-5, weight decay 0.01, warm-up 1/12 then linear
    decay), the step budget and the texts per step (P·K); none selects a checkpoint: the last weights are kept.
    """
    from labkit.collate import TextDataset
    from labkit.env import seed_everything
    from labkit.losses.classification import ClassificationLoss
    from labkit.losses.triplets import BatchHardTripletLoss
    from labkit.sampling import PKBatchSampler
    from labkit.train import fit

    seed_everything(seed)  # dropout, and the classification head's random start, differ by seed
    if method == ARTICLE_LOOP:
        return train_like_the_article(model, train, steps=steps, batch_size=batch_p * batch_k, max_length=max_length,
                                      seed=seed, show_progress=show_progress)
    dataset = TextDataset(train["text"].tolist(), train["label"].tolist())
    common = dict(steps=steps, lr=ARTICLE_SETTINGS["lr"], weight_decay=ARTICLE_SETTINGS["weight_decay"],
                  warmup_ratio=1 / 12, max_length=max_length, seed=seed, live_plot=False, show_progress=show_progress)
    if method == FIT_BATCH_HARD:
        return fit(model, BatchHardTripletLoss(margin=ARTICLE_SETTINGS["margin"]), dataset,
                   batch_sampler=PKBatchSampler(train["label"], batch_p, batch_k, seed=seed), **common)
    if method == FIT_CLASSIFICATION:
        head = ClassificationLoss(model.embedding_dim, int(train["label"].max()) + 1)
        return fit(model, head, dataset, batch_size=batch_p * batch_k, loss_lr=CLASSIFIER_HEAD_LR, **common)
    raise ValueError(f"Unknown method {method!r}; choose from {METHODS}.")


def compare_with_article(base_model, train, test, *, steps: int, seeds: Sequence[int] = (42, 43, 44),
                         batch_p: int = 8, batch_k: int = 4, max_length: int | None = None,
                         methods: Sequence[str] = METHODS, encode_batch_size: int = 64,
                         show_progress: bool = True) -> ArticleComparison:
    """Train a fresh copy of `base_model` with every method and seed; measure each once on `test`.

    The three trainings of notebook 12 (:data:`METHODS`): (a) the article's own loop
    (:func:`train_like_the_article`, 4 classes × ``P·K / 4`` passages per batch), (b) ``labkit.train.fit`` with
    ``BatchHardTripletLoss(margin=1.0)`` on P×K batches, (c) ``fit`` with ``ClassificationLoss`` (a linear head,
    learning rate ``CLASSIFIER_HEAD_LR``) on shuffled batches of P·K. Same start, steps, texts per step and
    optimiser settings; each seed changes the batches, dropout and the head's start. No run selects a
    checkpoint (each keeps its last weights), so the test split is read once per run, at the end, and never
    steers training.

    Requirements: `train` and `test` are DataFrames with ``text`` and ``label``; the labels of `train` are
    0..C-1 (the article's sampler indexes by label) with at least ``batch_k`` passages per class. At least two
    seeds, so that :meth:`ArticleComparison.test` can compare differences with the spread between seeds.

    Recommendations: three seeds or more; measure one seed first to budget the rest (a step of MiniLM on a
    CPU takes about a second).

    Returns:
        :class:`ArticleComparison`: ``table()`` (mean ± sd), ``hypotheses()`` / ``conclusions()`` (the
        article's claims tested), ``plot()`` and ``mean_losses()``.

    Example::

        comparison = compare_with_article(labkit.load_model(), train, test, steps=60, seeds=(42, 43, 44),
                                          max_length=96)
        print(comparison.conclusions())
    """
    import copy

    seeds = tuple(int(seed) for seed in seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be at least 2 different ints (mean ± sd needs a spread), got {seeds}.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be some of {METHODS}; got {list(methods)}.")
    for name, frame in (("train", train), ("test", test)):
        missing = {"text", "label"} - set(getattr(frame, "columns", ()))
        if missing:
            raise ValueError(f"{name} must be a DataFrame with columns 'text' and 'label'; missing {sorted(missing)}.")

    before = measure_on(base_model, test, encode_batch_size)
    rows, losses = [], {}
    for method in methods:
        for seed in seeds:
            model = copy.deepcopy(base_model)  # the same start for every run; the base model is never trained
            run = _train_one(method, model, train, steps=steps, batch_p=batch_p, batch_k=batch_k,
                             max_length=max_length, seed=seed, show_progress=show_progress)
            after = measure_on(model, test, encode_batch_size)
            rows.append({"method": method, "seed": seed, **after, "seconds": run.seconds,
                         "s / step": run.seconds / run.steps})
            losses[(method, seed)] = [row["loss"] for row in run.losses]
            print(f"{method}, seed {seed}: {run.steps} steps in {run.seconds:.0f} s; test MAP@R {after['MAP@R']:.4f}, "
                  f"mean cosine {after['mean cosine']:.3f}", flush=True)
            del model
    return ArticleComparison(before=before, runs=pd.DataFrame(rows), losses=losses, steps=steps, seeds=seeds)
