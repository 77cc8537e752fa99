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
Two further slips of the notebook are not reproduced as code but worth knowing: ``validate()`` iterates
``train_loader`` instead of ``dev_loader`` (the "dev loss" is a training loss), and the summary takes
``np.argmin(dev_loss)`` of a scalar, so it always reports epoch 1 as the best.

Taught in notebooks/02_dataset_and_sampler.ipynb (dataset and sampler), notebooks/05_triplet_losses.ipynb
(the loss) and notebooks/12_reproducing_the_article.ipynb (the training loop and the full comparison).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, SequentialSampler

__all__ = [
    "ArticleDataset", "ArticleWeightedSampler", "article_validation_batches", "article_batch_hard_loss",
    "train_like_the_article", "ARTICLE_SETTINGS",
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
