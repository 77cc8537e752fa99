"""Losses for unlabelled sentences: Contrastive Tension (two encoders) and TSDAE (a denoising auto-encoder).

* `ContrastiveTensionLoss` (Carlsson et al. 2021): two encoders embed pairs of sentences; the dot product of the
  two embeddings must be high when both saw the same sentence, low otherwise (binary cross-entropy). The in-batch
  variant, `ContrastiveTensionLossInBatchNegatives`, lives in `labkit.losses.ranking`.
  `contrastive_tension_pairs` lays out the data as sentence-transformers' ``ContrastiveTensionDataLoader`` does.
* `DenoisingAutoEncoderLoss` (TSDAE, Wang et al. 2021): embed a sentence with words deleted; a decoder must
  rebuild the original sentence from that one embedding alone. `denoising_pairs` makes the (noisy, original)
  pairs. It runs the model and its decoder, so it takes the model and tokenized batches.

Same names, parameters, defaults and arithmetic as sentence-transformers 6. Tested against it in
tests/test_unsupervised_losses.py.
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.distances import in_fp32
from labkit.validation import check_embedding_columns, check_texts

__all__ = ["ContrastiveTensionLoss", "contrastive_tension_pairs", "DenoisingAutoEncoderLoss", "delete_words",
           "denoising_pairs"]


class ContrastiveTensionLoss(nn.Module):
    r"""Contrastive Tension: binary cross-entropy on the dot product of two encoders' embeddings.

    Definitions, for pairs (s_i, t_i) with label y_i = 1 when t_i is s_i itself and 0 when it is another
    sentence, ``emb_1 = model_1(s)``, ``emb_2 = model_2(t)``::

        loss = sum_i  BCE(sigmoid(emb_1[i] · emb_2[i]), y_i)      (summed, not averaged, as in the paper)

    Requirements:
        Two encoders that start from the same weights: model 1 a copy, model 2 the one you keep (see
        ``ContrastiveTensionLossInBatchNegatives`` for how labkit passes both embeddings in; this loss owns no
        model). Labels: sentence-transformers infers them from the token ids; on embeddings they must be given
        (`contrastive_tension_pairs` makes them).

    Recommendations:
        One identical pair per 7 different ones (``pos_neg_ratio=8``), as the paper and sentence-transformers
        do. The in-batch-negatives variant usually trains better and needs no pair layout.

    References:
        Carlsson et al., "Semantic Re-tuning with Contrastive Tension", ICLR 2021;
        sentence-transformers' ``ContrastiveTensionLoss``.

    Example (by hand: the dot products are 2 (same sentence) and 0 (different), so the loss is
    log(1 + e^-2) + log(1 + e^0) = 0.1269 + 0.6931 = 0.8201):
        >>> import torch
        >>> from labkit.losses.unsupervised import ContrastiveTensionLoss
        >>> emb_1 = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
        >>> emb_2 = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
        >>> round(ContrastiveTensionLoss()(emb_1, emb_2, torch.tensor([1.0, 0.0])).item(), 4)
        0.8201
    """

    def forward(self, emb_1: Tensor, emb_2: Tensor, labels: Tensor) -> Tensor:
        check_embedding_columns(type(self).__name__, emb_1, emb_2, names=("emb_1", "emb_2"))
        if labels is None or labels.shape[0] != emb_1.shape[0]:
            raise ValueError(f"{type(self).__name__} needs one 0/1 label per pair (1 = the same sentence), got "
                             f"{None if labels is None else tuple(labels.shape)} for {emb_1.shape[0]} pairs; "
                             "contrastive_tension_pairs(sentences) makes them.")
        scores = in_fp32(_row_dot, emb_1, emb_2)  # fp32 under autocast: fp16 dot products of long vectors overflow
        return F.binary_cross_entropy_with_logits(scores, labels.view(-1).to(scores.dtype), reduction="sum")


def _row_dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(dim=-1)


def contrastive_tension_pairs(sentences: Sequence[str], batch_size: int, pos_neg_ratio: int = 8,
                              seed: int = 0) -> pd.DataFrame:
    """(text, text_pair, label) rows in sentence-transformers' ``ContrastiveTensionDataLoader`` layout.

    The sentences are shuffled; in every block of `pos_neg_ratio` rows the first pairs a sentence with itself
    (label 1) and the others pair two different sentences (label 0). Keep the row order (no shuffling) and
    batches of `batch_size` rows, a multiple of `pos_neg_ratio`. Each sentence is used once per call.
    """
    if pos_neg_ratio < 1 or batch_size % pos_neg_ratio:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of pos_neg_ratio ({pos_neg_ratio}).")
    sentences = np.asarray(list(sentences), dtype=object)
    per_batch = 2 * batch_size - batch_size // pos_neg_ratio  # sentences one batch uses
    batches = len(sentences) // per_batch
    if batches == 0:
        raise ValueError(f"{len(sentences)} sentences are fewer than one batch needs ({per_batch} for batch_size "
                         f"{batch_size}); pass more sentences or a smaller batch_size.")
    order = np.random.default_rng(seed).permutation(len(sentences))[: batches * per_batch]
    same = (np.arange(batch_size * batches) % pos_neg_ratio) == 0
    # each row takes one sentence, a different pair takes a second one: positions by a running count
    takes = np.where(same, 1, 2)
    first = np.concatenate([[0], np.cumsum(takes)[:-1]])
    first_texts = sentences[order[first]]
    second_texts = np.where(same, first_texts, sentences[order[np.minimum(first + 1, len(order) - 1)]])
    return pd.DataFrame({"text": first_texts.tolist(), "text_pair": second_texts.tolist(), "label": same.astype(int)})


def delete_words(text: str, del_ratio: float = 0.6, rng: np.random.Generator | None = None) -> str:
    """`text` with each word deleted with probability `del_ratio`, keeping at least one (TSDAE's noise).

    Words are split on whitespace (sentence-transformers uses NLTK's tokenizer, which labkit does not depend on;
    it also splits punctuation off words, so its noisy sentences differ slightly).
    """
    rng = rng or np.random.default_rng()
    words = text.split()
    if not words:
        return text
    keep = rng.random(len(words)) > del_ratio
    if not keep.any():
        keep[rng.integers(len(words))] = True
    return " ".join(w for w, k in zip(words, keep) if k)


def denoising_pairs(sentences: Sequence[str], del_ratio: float = 0.6, seed: int = 0) -> pd.DataFrame:
    """(text = noisy sentence, text_pair = original) rows for `DenoisingAutoEncoderLoss`."""
    sentences = list(sentences)
    check_texts(sentences)
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"text": [delete_words(s, del_ratio, rng) for s in sentences], "text_pair": sentences})


def _tie_encoder_to_decoder(encoder: nn.Module, decoder: nn.Module) -> int:
    """Make the encoder's weights *be* the decoder's shared ones (same names), after copying the encoder's values
    in, so one set of weights learns from both. Returns how many were tied."""
    encoder_modules = dict(encoder.named_modules())
    tied = 0
    for name, param in decoder.named_parameters():
        module_name, _, attribute = name.rpartition(".")
        module = encoder_modules.get(module_name)
        if module is not None and isinstance(getattr(module, attribute, None), nn.Parameter):
            with torch.no_grad():
                param.copy_(getattr(module, attribute))
            setattr(module, attribute, param)
            tied += 1
    return tied


class DenoisingAutoEncoderLoss(nn.Module):
    r"""TSDAE: the embedding of a damaged sentence must let a decoder rebuild the original, word by word.

    Definitions, for a batch of (noisy s̃_i, original s_i) and the encoder's sentence embedding e_i = model(s̃_i)::

        loss = mean over the real tokens t of s_i (after the first) of  -log P_decoder(t | s_i before t ; e_i)

    The decoder is a causal copy of the encoder (``is_decoder=True``) with cross-attention to the single
    embedding e_i; it sees nothing else of the noisy sentence, so e_i has to carry the meaning.

    Requirements:
        A labkit `EmbeddingModel` with a Hugging Face encoder that has a causal-LM head class (BERT-like models:
        MiniLM, BERT, RoBERTa). With ``tie_encoder_decoder=True`` (the default) the decoder is built from the
        encoder's own configuration and shares its weights (cross-attention and the LM head are new), so it works
        offline with the bundled MiniLM; otherwise ``decoder_name_or_path`` names a separate decoder. Build the loss
        *before* the optimizer (tying replaces the encoder's weight tensors). Runs the model: it takes the
        tokenized (noisy, original) batches, ``loss([noisy_features, original_features])``.

    Recommendations:
        ``del_ratio=0.6`` (the paper's), a learning rate of 3e-5, CLS pooling in the paper (mean works too).

    References:
        Wang, Reimers & Gurevych, "TSDAE: Using Transformer-based Sequential Denoising Auto-Encoder for
        Unsupervised Sentence Embedding Learning", Findings of EMNLP 2021; sentence-transformers'
        ``DenoisingAutoEncoderLoss``.

    Example:
        >>> from labkit.model import tiny_model
        >>> from labkit.losses.unsupervised import DenoisingAutoEncoderLoss
        >>> model = tiny_model(seed=0)
        >>> loss_fn = DenoisingAutoEncoderLoss(model)
        >>> noisy, original = model.tokenize(["cat the mat"]), model.tokenize(["the cat sat on the mat"])
        >>> loss_fn([noisy, original]).backward()
    """

    runs_the_model = True  # labkit.train.compute_loss hands it the tokenized batches

    def __init__(self, model: nn.Module, decoder_name_or_path: str | None = None,
                 tie_encoder_decoder: bool = True) -> None:
        super().__init__()
        from transformers import AutoModelForCausalLM

        if not hasattr(model, "transformer") or not hasattr(model, "tokenizer"):
            raise TypeError(f"DenoisingAutoEncoderLoss needs a labkit EmbeddingModel, got {type(model).__name__}.")
        if decoder_name_or_path is None and not tie_encoder_decoder:
            raise ValueError("tie_encoder_decoder=False needs decoder_name_or_path (the decoder to train).")
        self.encoder = model
        self.tie_encoder_decoder = tie_encoder_decoder
        config = copy.deepcopy(model.transformer.config)
        config.is_decoder, config.add_cross_attention = True, True
        try:
            if tie_encoder_decoder:
                self.decoder = AutoModelForCausalLM.from_config(config)
            else:
                self.decoder = AutoModelForCausalLM.from_pretrained(decoder_name_or_path, is_decoder=True,
                                                                    add_cross_attention=True)
        except ValueError as error:
            raise ValueError(f"{config.model_type} models have no causal-LM decoder class for TSDAE ({error}); "
                             "use a BERT-like encoder or pass decoder_name_or_path.") from None
        if self.decoder.config.hidden_size != config.hidden_size:
            raise ValueError(f"the decoder's hidden size {self.decoder.config.hidden_size} differs from the "
                             f"encoder's {config.hidden_size}: TSDAE feeds the embedding to its cross-attention.")
        self.pad_token_id = model.tokenizer.pad_token_id
        if tie_encoder_decoder:
            base = getattr(self.decoder, self.decoder.base_model_prefix)
            if _tie_encoder_to_decoder(model.transformer, base) == 0:
                raise ValueError("no encoder weight matched a decoder weight: are they the same architecture?")

    def forward(self, features: Sequence[dict], labels: Tensor | None = None) -> Tensor:
        noisy, original = tuple(features)
        embeddings = self.encoder(noisy)  # (B, D)
        target_ids = original["input_ids"]
        logits = self.decoder(
            input_ids=target_ids[:, :-1],
            encoder_hidden_states=embeddings[:, None],  # one "token": the sentence embedding
            encoder_attention_mask=noisy["attention_mask"][:, :1],
            use_cache=False,
        ).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target_ids[:, 1:].reshape(-1),
                               ignore_index=self.pad_token_id)

    def get_config_dict(self) -> dict:
        return {"tie_encoder_decoder": self.tie_encoder_decoder}
