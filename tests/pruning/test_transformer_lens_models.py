"""Pruning a TransformerLens model (issue 20): HookedTransformer (TransformerLens 2.x/3.x) and
TransformerBridge (3.x/4.x) hold the planted circuit of `planted.py`, and pruning finds it."""

import functools

import pytest
import torch

from sparse_lens.model.identity import weights_fingerprint
from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.config import PruningConfig
from sparse_lens.pruning.discretize import fixed_mask_hooks
from sparse_lens.pruning.edges import count_edges, summarize_edges
from sparse_lens.pruning.mean_ablation import compute_node_means
from sparse_lens.pruning.model_adapter import adapter_for
from sparse_lens.pruning.nodes import node_sites
from sparse_lens.pruning.pipeline import prune
from sparse_lens.pruning.task_batch import evaluate_task

from .planted import PLANTED, planted_task, pretraining_batches

SHAPE = dict(n_layers=1, d_model=8, n_ctx=16, d_vocab=8, n_heads=2, d_head=4, d_mlp=6, act_fn="relu")


def hooked_transformer(**overrides):
    tl = pytest.importorskip("transformer_lens")
    try:
        tl.HookedTransformer
    except (ImportError, AttributeError):
        pytest.skip("this TransformerLens (4.x) has no HookedTransformer")
    cfg = tl.HookedTransformerConfig(**{**SHAPE, "normalization_type": "RMS", "seed": 0, **overrides})
    return tl.HookedTransformer(cfg)


def transformer_bridge(**overrides):
    native = pytest.importorskip("transformer_lens.model_bridge.sources.native",
                                 reason="this TransformerLens (2.x) has no TransformerBridge")
    from transformer_lens.config import TransformerBridgeConfig

    return native.boot(TransformerBridgeConfig(**{**SHAPE, "normalization_type": "RMS", **overrides}))


BUILDERS = {"HookedTransformer": hooked_transformer, "TransformerBridge": transformer_bridge}


def plant(model):
    """planted.py's circuit, written through TransformerLens's weight names: A/B -> ±1 on channel 0,
    read 0 -> neuron 0 (relu(x + 5), always on) -> write channel 1 -> the X/Y logits."""
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (model.blocks[0].ln1, model.blocks[0].ln2, model.ln_final):
            norm.w.fill_(1)
        model.W_E[1, 0], model.W_E[2, 0] = 1.0, -1.0
        model.W_E[5:, 2] = 1.0
        mlp = model.blocks[0].mlp
        mlp.W_in[0, 0], mlp.b_in[0] = 1.0, 5.0
        mlp.W_out[0, 1], mlp.b_out[1] = 1.0, -5.0
        model.W_U[1, 3], model.W_U[1, 4] = 4.0, -4.0
    return model.eval()


@pytest.fixture(scope="module", params=list(BUILDERS))
def planted_tl(request):
    return planted_task(64, 32, 32, model=plant(BUILDERS[request.param]()))


def test_the_planted_transformer_lens_model_solves_the_task_through_its_nodes(planted_tl):
    model, means, data = planted_tl
    assert evaluate_task(model, data.test)[0] < 0.01
    only_planted = {s.name: torch.zeros(s.shape, dtype=torch.bool) for s in node_sites(model.cfg)}
    for name, nodes in PLANTED.items():
        for idx in nodes:
            only_planted[name][idx] = True
    assert evaluate_task(model, data.test, fixed_mask_hooks(only_planted, means))[0] < 0.01
    only_planted["blocks.0.mlp.hook_post"][0] = False
    assert evaluate_task(model, data.test, fixed_mask_hooks(only_planted, means))[0] > 0.6


def test_pruning_a_transformer_lens_model_finds_the_planted_circuit(planted_tl):
    model, means, data = planted_tl
    cfg = PruningConfig(steps=120, batch_pairs=16, seed=0, lr=1e-2, refine_pairs=32)
    circuit = prune(model, data, means, cfg, task="planted")
    kept: dict = {}
    for name, idx in circuit.kept_nodes():
        kept.setdefault(name, []).append(idx)
    assert kept == PLANTED
    assert circuit.losses["test_sufficiency_loss"] <= 0.15 and circuit.losses["test_necessity_loss"] > 0.6
    # counted from the model's weights: read0 -W_in-> neuron0 -W_out-> write1, embed -> read0, write1 -> unembed
    assert {k: v for k, v in circuit.edges.items() if v} == {
        "read->neuron": 1, "neuron->write": 1, "embed->read": 1, "write->unembed": 1, "total": 4}
    assert circuit.model_fingerprint == weights_fingerprint(model)
    with circuit.applied(model):
        applied = model(data.test.tokens)
    torch.testing.assert_close(applied, model.run_with_hooks(data.test.tokens, fwd_hooks=circuit.hooks()))


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_a_dense_models_nonzero_weights_all_count_as_edges(builder):
    model = BUILDERS[builder]()  # random init: every weight nonzero
    everything = {s.name: torch.ones(s.shape, dtype=torch.bool) for s in node_sites(model.cfg)}
    edges = summarize_edges(count_edges(model, everything))
    c = model.cfg
    assert edges["read->q"] == edges["read->k"] == edges["read->v"] == c.n_heads * c.d_model * c.d_head
    assert edges["v->write"] == c.n_heads * c.d_head * c.d_model
    assert edges["read->neuron"] == edges["neuron->write"] == c.d_model * c.d_mlp
    assert edges["q-k"] == c.n_heads * c.d_head
    assert edges["write->unembed"] == 2 * c.d_model and edges["embed->read"] == 2 * c.d_model


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_the_fingerprint_follows_a_transformer_lens_models_weights(builder):
    model = BUILDERS[builder]()
    before = weights_fingerprint(model)
    assert weights_fingerprint(model) == before
    with torch.no_grad():
        model.blocks[0].mlp.W_in[0, 0] += 1
    assert weights_fingerprint(model) != before
    circuit = Circuit(task="t", target_loss=0.15, masks={}, means={}, model_fingerprint=before)
    with pytest.raises(ValueError, match="belongs to model"):
        circuit.check_model(model)


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_a_model_without_layer_norm_hooks_is_a_clear_error(builder):
    model = BUILDERS[builder](normalization_type=None)
    with pytest.raises(ValueError, match=r"blocks\.0\.ln1\.hook_normalized.*normalization_type=None"):
        compute_node_means(model, pretraining_batches(1))


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_a_model_with_other_node_shapes_is_a_clear_error(builder):
    model = BUILDERS[builder](n_key_value_heads=1)  # grouped-query attention: k and v have 1 head
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.hook_k gives activations \[batch, pos, 1, 4\]"):
        adapter_for(model)


def test_an_object_that_is_no_transformer_lens_model_is_a_clear_error():
    class NotAModel(torch.nn.Module):
        cfg = type("Cfg", (), SHAPE)

    with pytest.raises(ValueError, match="expected a TransformerLens model"):
        adapter_for(NotAModel())


# ---------------------------------------------------------------- the command line (entry points)
NOT_A_MODEL = 3


@functools.lru_cache(maxsize=1)
def shipped_tokenizer():
    from sparse_lens.model import HookedSparseTransformer

    return HookedSparseTransformer.from_pretrained("python-sparse-tiny").tokenizer


def tiny_transformer_lens_model():
    """An entry point for `sparse-lens prune`: a small TransformerLens model built offline with the
    shipped tokenizer (HookedTransformer where the installed TransformerLens has it, else a bridge)."""
    import transformer_lens as tl

    tokenizer = shipped_tokenizer()
    shape = dict(n_layers=1, d_model=16, d_head=4, n_heads=4, n_ctx=128, d_mlp=32, d_vocab=len(tokenizer),
                 act_fn="gelu", normalization_type="LN")
    torch.manual_seed(0)
    try:
        return tl.HookedTransformer(tl.HookedTransformerConfig(**shape, seed=0), tokenizer=tokenizer)
    except (ImportError, AttributeError):
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge.sources import native

        return native.boot(TransformerBridgeConfig(**shape), tokenizer=tokenizer)


ENTRY_POINT = f"{__name__}:tiny_transformer_lens_model"


def test_prune_takes_a_transformer_lens_model_from_an_entry_point(tmp_path, monkeypatch):
    import json

    import sparse_lens.data
    from sparse_lens.cli import main

    # node means read the validation split through the model's tokenizer; a small one keeps this fast
    text = "def f(x):\n    return 'a' + \"b\" * x\n\nfor i in range(3):\n    print(f(i))\n"
    monkeypatch.setattr(sparse_lens.data, "load_corpus", lambda source="default": {"validation": [text] * 40})

    out = tmp_path / "out"
    assert main(["prune", ENTRY_POINT, "--task", "single_double_quote", "--steps", "2", "--n-train", "8",
                 "--n-fit", "8", "--n-test", "8", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [row["task"] for row in summary["tasks"]] == ["single_double_quote"]
    circuit = Circuit.load(out / "single_double_quote.json")
    assert circuit.model == ENTRY_POINT
    model = tiny_transformer_lens_model()  # the same weights each call (seeded)
    assert circuit.model_fingerprint == weights_fingerprint(model)
    assert set(circuit.means) == {s.name for s in node_sites(model.cfg)}


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:build", "MODEL: cannot import module 'no_such_module_xyz'"),
    (f"{__name__}:no_such_factory", "has no attribute 'no_such_factory'"),
    (f"{__name__}:NOT_A_MODEL", "gave a int, expected a TransformerLens model"),
])
def test_a_bad_entry_point_is_a_clear_error(spec, message, tmp_path, capsys):
    from sparse_lens.cli import main

    assert main(["prune", spec, "--task", "single_double_quote", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_prune_compare_names_the_bad_entry_point(tmp_path, capsys):
    from sparse_lens.cli import main

    assert main(["prune-compare", "--dense", "no_such_module_xyz:build", "--task", "single_double_quote",
                 "--out", str(tmp_path / "out")]) == 2
    assert "--dense: cannot import module 'no_such_module_xyz'" in capsys.readouterr().err
