"""Shared fixtures: the shipped tokenizer (or a small stand-in trained on the stdlib if it is
missing), a tiny random stand-in model, and cleanup of user-registered tasks."""

from __future__ import annotations

import sysconfig
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sparse_lens.tasks import list_tasks, unregister_task

SHIPPED_TOKENIZER = Path(__file__).resolve().parents[2] / "sparse_lens" / "pretrained" / "tokenizer-python-2k" / "tokenizer.json"


def _train_fallback_tokenizer():
    """A byte-level BPE (2048) trained on ~200 stdlib files, with the library's pre-tokenizer."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    files = files[:: max(1, len(files) // 200)]
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    try:
        from sparse_lens.data import train_tokenizer
    except ImportError:  # pragma: no cover - the data package is part of the library
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"""['"]|\]+"""), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ])  # fmt: skip
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=2048, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )  # fmt: skip
        tok.train_from_iterator(texts, trainer)
        return tok
    return train_tokenizer(texts)


@pytest.fixture(scope="session")
def tokenizer():
    """The shipped tokenizer; ``tokenizer.shipped`` tells whether it is the real one."""
    from tokenizers import Tokenizer

    if SHIPPED_TOKENIZER.is_file():
        tok = Tokenizer.from_file(str(SHIPPED_TOKENIZER))
        shipped = True
    else:
        tok = _train_fallback_tokenizer()
        shipped = False
    assert tok.token_to_id("<|endoftext|>") == 0
    return SimpleNamespace(tok=tok, shipped=shipped)


class StandInModel(torch.nn.Module):
    """A tiny random causal model with the HookedSparseTransformer contract: ``model(tokens)`` →
    logits [batch, pos, vocab]; ``.tokenizer``; ``.cfg.n_ctx``. Each position's logits depend on
    the running mean of the embeddings up to it (so padding after a row's end changes nothing)."""

    def __init__(self, tokenizer, n_ctx: int = 256, d_vocab: int = 2048, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.tokenizer = tokenizer
        self.cfg = SimpleNamespace(n_ctx=n_ctx, d_vocab=d_vocab)
        self.embed = torch.nn.Parameter(torch.randn(d_vocab, 16, generator=g))
        self.unembed = torch.nn.Parameter(torch.randn(16, d_vocab, generator=g))
        self.calls = 0

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError("sequence longer than n_ctx")
        x = self.embed[tokens]
        x = x.cumsum(1) / torch.arange(1, tokens.shape[1] + 1)[None, :, None]
        return x @ self.unembed


@pytest.fixture
def stand_in(tokenizer):
    return StandInModel(tokenizer.tok)


@pytest.fixture
def clean_registry():
    """Unregister every user task added during the test."""
    before = {t.name for t in list_tasks()}
    yield
    for task in list_tasks():
        if task.name not in before:
            unregister_task(task.name)
