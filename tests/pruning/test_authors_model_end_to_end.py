"""A model in the authors' released format, with a data-gym tokenizer in their directory layout,
taken through the commands a user runs on ``csp_yolo1``: convert, evaluate a task, prune it, write
its circuit (docs/authors_models.md).

The model is our trained python-sparse-tiny written with the authors' config fields and state-dict
keys, its vocabulary renumbered to the ids of a data-gym pair made from its own merges and split by
the authors' regex (the stand-in for tinypython_2k, which cannot be downloaded here): a trained
model, so that the quote task has a circuit to find."""

import json
import sysconfig
from pathlib import Path

import torch

from sparse_lens.cli import main
from sparse_lens.data import pack
from sparse_lens.model import HookedSparseTransformer
from sparse_lens.model.data_gym_tokenizer import read_data_gym
from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.mean_ablation import compute_node_means
from sparse_lens.pruning.nodes import node_sites
from sparse_lens.pruning.task_data import save_node_means

from tests.model.authors_format import write_authors_checkpoint
from tests.model.data_gym_files import shipped_merges, write_data_gym

TASK = "single_double_quote"


def vocab_order(model: HookedSparseTransformer, tok_dir: Path) -> torch.Tensor:
    """order[data-gym id] = the model's id of the same token."""
    ranks, _ = read_data_gym(tok_dir)
    ours = model.backend_tokenizer.get_vocab()
    order = torch.empty(model.cfg.d_vocab, dtype=torch.long)
    for token, rank in ranks.items():
        order[rank] = ours[token]
    order[2047] = ours["<|endoftext|>"]
    assert sorted(order.tolist()) == list(range(model.cfg.d_vocab))
    return order


def test_authors_model_convert_evaluate_prune(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TINYPYTHON_TOK_DIR", raising=False)
    base = tmp_path / "circuit-sparsity"  # the authors' layout: models/<name>/ beside tinypython/
    tok_dir = write_data_gym(base / "tinypython", shipped_merges())
    shipped = HookedSparseTransformer.from_pretrained("python-sparse-tiny")
    order = vocab_order(shipped, tok_dir)
    model_dir = write_authors_checkpoint(shipped, base / "models" / "csp_tiny", order)
    assert sorted(p.name for p in model_dir.iterdir()) == ["beeg_config.json", "final_model.pt"]

    # sparse-lens convert: the tokenizer is found in the authors' layout
    out = tmp_path / "csp_tiny"
    assert main(["convert", str(model_dir), str(out)]) == 0
    assert "tokenizer" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}
    assert (out / "model.safetensors").stat().st_size < (model_dir / "final_model.pt").stat().st_size
    model = HookedSparseTransformer.from_pretrained(out)
    assert model.bos_token_id == 2047 and model.cfg.default_prepend_bos is False

    # the same function as the shipped model, up to the renumbering of the vocabulary
    old = shipped.to_tokens('x = "a" + \'b\'\nfor i in range(3):\n    print(i)\n')
    new = torch.empty_like(order)
    new[order] = torch.arange(len(order))
    with torch.no_grad():
        assert (shipped(old)[..., order] - model(new[old])).abs().max() < 1e-5

    # sparse-lens tasks eval
    assert main(["tasks", "eval", str(out), "--task", TASK, "--n-pairs", "24", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["task"] == TASK and result["error"] is None and result["n_pairs"] == 24
    assert result["loss"] < 0.35  # the shipped model's quote loss is 0.13; chance is 0.69

    # node means beside the model (`sparse-lens prune` would otherwise compute them over the corpus)
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:8]
    rows = pack([f.read_text(encoding="utf-8") for f in files], model.backend_tokenizer, model.cfg.n_ctx, use_cache=False)
    save_node_means(compute_node_means(model, [rows[:32]]), out, model)

    # sparse-lens prune: a circuit reaching the target, written as JSON + safetensors
    circuits = tmp_path / "circuits"
    assert main(["prune", str(out), "--task", TASK, "--steps", "10", "--n-train", "16", "--n-fit", "8",
                 "--n-test", "8", "--out", str(circuits)]) == 0  # fmt: skip
    circuit = Circuit.load(circuits / f"{TASK}.json")
    total = sum(site.size for site in node_sites(model.cfg))
    assert circuit.losses["reachable"] and 0 < circuit.n_nodes < total
    assert circuit.losses["fit_loss"] <= 0.15 + 1e-6
    with circuit.applied(model), torch.no_grad():  # the circuit runs on the converted model
        model(model.to_tokens("s = 'abc"))
    summary = json.loads((circuits / "summary.json").read_text())
    assert [row["task"] for row in summary["tasks"]] == [TASK]
