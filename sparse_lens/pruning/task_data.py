"""Inputs of a pruning run for a model: node means (shipped with the model, or computed from the
validation split of the pretraining corpus) and a task's train / fit / test sequences."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sparse_lens.io import atomic_write
from sparse_lens.model.identity import check_same_model, model_name, weights_fingerprint

from sparse_lens.pruning.mean_ablation import compute_node_means
from sparse_lens.pruning.nodes import node_sites

MEANS_FILE = "node_means.safetensors"


def validation_batches(model, n_tokens: int, batch_size: int = 16, source: str = "default"):
    """[batch, n_ctx] rows of the pretraining corpus's validation split, tokenized by the model's tokenizer."""
    from sparse_lens.data import load_corpus, pack
    from sparse_lens.pruning.model_adapter import adapter_for

    corpus = load_corpus(source)
    rows = pack(corpus["validation"], adapter_for(model).backend_tokenizer(), model.cfg.n_ctx)
    n_rows = max(1, min(len(rows), -(-n_tokens // model.cfg.n_ctx)))
    rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:n_rows]]
    return [rows[i : i + batch_size] for i in range(0, n_rows, batch_size)]


def node_means_for(
    model, model_name_or_dir: str, n_tokens: int = 65_536, source: str = "default", strict: bool = True
) -> dict:
    """The node means stored beside the model (``node_means.safetensors``), else computed now.

    Stored means record the model they were computed on (name and weights fingerprint): means of
    another model are an error unless ``strict=False``."""
    from sparse_lens.model.checkpoint import resolve_pretrained
    from sparse_lens.pruning.model_source import is_entry_point

    if is_entry_point(model_name_or_dir):  # a model built in Python: no directory to keep means in
        return corpus_node_means(model, n_tokens, source)
    path = resolve_pretrained(model_name_or_dir) / MEANS_FILE
    if path.is_file():
        means, metadata = load_node_means(path)
        check_same_model(model, what=f"node means {path}", recorded_name=metadata.get("model", ""),
                         recorded_fingerprint=metadata.get("model_fingerprint"), strict=strict)
        expected = {s.name for s in node_sites(model.cfg)}
        if set(means) != expected:
            raise ValueError(f"{path}: node means do not match the model's node sites")
        return means
    return corpus_node_means(model, n_tokens, source)


def load_node_means(path: str | Path) -> tuple[dict, dict[str, str]]:
    """The means in a ``node_means.safetensors`` and its metadata (``model``, ``model_fingerprint``)."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
        return load_file(str(path)), metadata
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{path}: cannot read safetensors file ({err})") from err


def corpus_node_means(model, n_tokens: int = 65_536, source: str = "default") -> dict:
    """Node means over ``n_tokens`` validation tokens of the pretraining corpus (computed now)."""
    return compute_node_means(model, validation_batches(model, n_tokens, source=source), max_tokens=n_tokens)


def save_node_means(means: dict, directory: str | Path, model=None) -> Path:
    """Write ``directory/node_means.safetensors`` atomically, recording ``model`` (the model the means
    were computed on: its name and weights fingerprint) when given."""
    metadata = {"format": "sparse_lens.node_means"}
    if model is not None:
        metadata.update(model=model_name(model), model_fingerprint=weights_fingerprint(model))
    tensors = {k: v.detach().cpu().contiguous() for k, v in means.items()}
    return atomic_write(Path(directory) / MEANS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=metadata),
                        argument="node means")


def task_data(model, task_name: str, n_train: int, n_fit: int, n_test: int, seed: int = 0):
    """A task's pairs, tokenized with the model's tokenizer: ``train`` and ``fit`` from the train split
    (different seeds), ``test`` from the disjoint test split."""
    from sparse_lens.pruning.pipeline import TaskData
    from sparse_lens.tasks import get_task, tokenize_pairs

    task = get_task(task_name)

    def batch(n: int, split: str, split_seed: int):
        pairs = task.generate(n, seed=split_seed, split=split, tokenizer=model.tokenizer, max_tokens=model.cfg.n_ctx)
        return tokenize_pairs(pairs, model.tokenizer, n_ctx=model.cfg.n_ctx, task_name=task_name)

    return TaskData(train=batch(n_train, "train", seed), fit=batch(n_fit, "train", seed + 1_000_003),
                    test=batch(n_test, "test", seed))
