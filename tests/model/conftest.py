import pytest
import torch

from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig

REFERENCE_DIR = __import__("pathlib").Path(__file__).resolve().parents[3] / "shared" / "reference" / "circuit_sparsity_ref_a"


def randomize(model: HookedSparseTransformer, seed: int = 0) -> HookedSparseTransformer:
    """Give every parameter (biases, sinks, bigram, gains included) a nonzero random value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".w"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model


def make_model(**overrides) -> HookedSparseTransformer:
    fields = dict(n_layers=2, d_model=32, n_ctx=16, d_vocab=50, n_heads=3, d_head=8, d_mlp=48, seed=0)
    fields.update(overrides)
    return randomize(HookedSparseTransformer(SparseTransformerConfig(**fields)))


@pytest.fixture
def model() -> HookedSparseTransformer:
    return make_model()


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _no_authors_tokenizer_from_the_environment(monkeypatch):
    """A user's $TINYPYTHON_TOK_DIR (the authors' variable) must not reach the tests' tiny
    authors'-format checkpoints, whose vocabularies are not tinypython_2k's."""
    monkeypatch.delenv("TINYPYTHON_TOK_DIR", raising=False)
