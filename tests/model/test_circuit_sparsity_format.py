"""Every option of the authors' checkpoint format, checked against an independent plain-tensor
oracle written from the format's documented semantics (../shared/reference/.../README.md)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from sparse_lens.model import HookedSparseTransformer


def authors_forward(sd: dict, c: dict, idx: torch.Tensor) -> torch.Tensor:
    """The authors' GPT forward in plain tensors (the oracle)."""
    H, D = c["n_head"], c.get("d_head") or c["d_model"] // c["n_head"]
    afrac, locs = c.get("afrac"), c.get("afrac_loctypes", "").split(",")
    rms = c.get("rms_norm", False)

    def sparsify(x, loc):
        if afrac is None or loc not in locs:
            return x
        k = int(afrac * x.shape[-1])
        _, i = torch.topk(x.abs(), k, dim=-1)
        return torch.zeros_like(x).scatter(-1, i, x.gather(-1, i))

    def norm(x, prefix):
        if rms:
            return F.rms_norm(x, (x.shape[-1],), sd[prefix + ".weight"], eps=None)
        return F.layer_norm(x, (x.shape[-1],), sd[prefix + ".weight"], sd.get(prefix + ".bias"), 1e-5)

    def linear(x, prefix):
        return F.linear(x, sd[prefix + ".weight"], sd.get(prefix + ".bias"))

    act = F.gelu if c.get("activation_type", "gelu") == "gelu" else F.relu
    resid_act = torch.relu if c.get("residual_activation_type") == "relu" else (lambda x: x)
    B, T = idx.shape
    x = sd["transformer.wte.weight"][idx] + sd["transformer.wpe.weight"][:T]
    for l in range(c["n_layer"]):
        p = f"transformer.h.{l}."
        h = sparsify(norm(x, p + "ln_1"), "attn_in")
        q, k, v = linear(h, p + "attn.c_attn").split(H * D, dim=2)
        k, q, v = sparsify(k, "attn_k"), sparsify(q, "attn_q"), sparsify(v, "attn_v")
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-1, -2) / math.sqrt(D)
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        if c.get("sink"):
            b = sd[p + "attn.attn_imp.sink_logit"].view(1, H, 1, 1).expand(B, H, T, 1)
            att = torch.cat([b, s], -1).softmax(-1)[..., 1:]
        else:
            att = s.softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, H * D)
        x = sparsify(resid_act(x + sparsify(linear(y, p + "attn.c_proj"), "attn_out")), "resid_post_attn")
        h = sparsify(norm(x, p + "ln_2"), "mlp_in")
        h = sparsify(act(linear(h, p + "mlp.c_fc")), "mlp_neuron")
        x = sparsify(resid_act(x + sparsify(linear(h, p + "mlp.c_proj"), "mlp_out")), "resid_post_mlp")
    logits = norm(x, "transformer.ln_f") @ sd["lm_head.weight"].T + sd.get("final_logits_bias", 0)
    if c.get("enable_bigram_table"):
        logits = logits + sd["bigram_table"][idx]
    return logits


def make_checkpoint(tmp_path, **cfg_overrides):
    c = dict(block_size=16, vocab_size=40, n_layer=2, n_head=4, d_head=8, d_model=32, d_mlp=48, bias=True,
             ln_bias=True, rms_norm=True, residual_activation_type="identity", activation_type="gelu",
             afrac=0.25, afrac_loctypes="attn_in,attn_q,attn_k,attn_v,attn_out,mlp_in,mlp_neuron,mlp_out",
             tied_unembed=False, enable_bigram_table=True, sink=True, flash=True)
    c.update(cfg_overrides)
    H, d, f, V = c["n_head"], c["d_model"], c["d_mlp"], c["vocab_size"]
    D = c["d_head"] or d // H
    g = torch.Generator().manual_seed(7)
    r = lambda *shape, s=0.3: torch.randn(*shape, generator=g) * s  # noqa: E731
    sd = {"transformer.wte.weight": r(V, d), "transformer.wpe.weight": r(c["block_size"], d, s=0.05)}
    norms = ["transformer.ln_f"]
    for l in range(c["n_layer"]):
        p = f"transformer.h.{l}."
        norms += [p + "ln_1", p + "ln_2"]
        sd[p + "attn.c_attn.weight"] = r(3 * H * D, d, s=0.5)
        sd[p + "attn.c_proj.weight"] = r(d, H * D)
        sd[p + "mlp.c_fc.weight"] = r(f, d, s=0.5)
        sd[p + "mlp.c_proj.weight"] = r(d, f)
        if c["bias"]:
            for name, n in (("attn.c_attn", 3 * H * D), ("attn.c_proj", d), ("mlp.c_fc", f), ("mlp.c_proj", d)):
                sd[p + name + ".bias"] = r(n, s=0.05)
        if c["sink"]:
            sd[p + "attn.attn_imp.sink_logit"] = r(H, s=1.0)
    for n in norms:
        sd[n + ".weight"] = 1 + r(d, s=0.1)
        if not c["rms_norm"] and c["ln_bias"]:
            sd[n + ".bias"] = r(d, s=0.05)
    sd["lm_head.weight"] = sd["transformer.wte.weight"] if c["tied_unembed"] else r(V, d, s=0.1)
    sd["final_logits_bias"] = r(V, s=0.1)
    if c["enable_bigram_table"]:
        sd["bigram_table"] = r(V, V, s=0.1)
    torch.save(sd, tmp_path / "final_model.pt")
    (tmp_path / "beeg_config.json").write_text(json.dumps(c))
    return sd, c


VARIANTS = {
    "default": {},
    "relu_residual": dict(residual_activation_type="relu"),
    "no_bias": dict(bias=False),
    "tied_unembed": dict(tied_unembed=True),
    "no_sink": dict(sink=False),
    "no_bigram": dict(enable_bigram_table=False),
    "layernorm_bias": dict(rms_norm=False, ln_bias=True),
    "layernorm_nobias": dict(rms_norm=False, ln_bias=False),
    "relu_mlp": dict(activation_type="relu"),
    "dense_activations": dict(afrac=None),
    "residual_topk": dict(afrac_loctypes="attn_in,attn_out,mlp_in,mlp_out,resid_post_attn,resid_post_mlp"),
    "authors_default_locs": dict(afrac=0.5, afrac_loctypes="attn_in,attn_out,mlp_in,mlp_out"),
    "d_head_default": dict(d_head=None, n_head=2),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_matches_oracle(tmp_path, variant):
    sd, c = make_checkpoint(tmp_path, **VARIANTS[variant])
    model = HookedSparseTransformer.from_circuit_sparsity(tmp_path)
    idx = torch.randint(0, c["vocab_size"], (2, 13), generator=torch.Generator().manual_seed(3))
    idx[0, 0], idx[1, 1] = 0, c["vocab_size"] - 1
    with torch.no_grad():
        ours = model(idx)
    assert (ours - authors_forward(sd, c, idx)).abs().max() < 1e-5


def test_legacy_n_mlp_and_missing_final_logits_bias(tmp_path):
    sd, c = make_checkpoint(tmp_path)
    del sd["final_logits_bias"]
    torch.save(sd, tmp_path / "final_model.pt")
    c["n_mlp"] = c.pop("d_mlp")
    (tmp_path / "beeg_config.json").write_text(json.dumps(c))
    model = HookedSparseTransformer.from_circuit_sparsity(tmp_path)
    assert torch.count_nonzero(model.b_U) == 0
    idx = torch.arange(10)[None]
    c["d_mlp"] = c["n_mlp"]
    assert (model(idx) - authors_forward(sd, c, idx)).abs().max() < 1e-5


def test_causal_mask_buffer_is_ignored(tmp_path):
    sd, c = make_checkpoint(tmp_path)
    sd["transformer.h.0.attn.bias"] = torch.ones(1, 1, 16, 16).tril()
    torch.save(sd, tmp_path / "final_model.pt")
    HookedSparseTransformer.from_circuit_sparsity(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(d_pos_emb=8), "concatenated positional"),
        (dict(afrac_loctypes="attn_in, mlp_in"), "unknown location"),
        (dict(use_tied_aux_matrix=True), "use_tied_aux_matrix"),
        (dict(not_a_field=1), "unknown GPTConfig field"),
    ],
)
def test_unsupported_options_raise(tmp_path, change, message):
    _, c = make_checkpoint(tmp_path)
    c.update(change)
    (tmp_path / "beeg_config.json").write_text(json.dumps(c))
    with pytest.raises(ValueError, match=message):
        HookedSparseTransformer.from_circuit_sparsity(tmp_path)


def test_key_mismatch_is_an_error_not_silent(tmp_path):
    sd, _ = make_checkpoint(tmp_path)
    del sd["transformer.h.1.mlp.c_fc.weight"]
    torch.save(sd, tmp_path / "final_model.pt")
    with pytest.raises(ValueError, match="missing key"):
        HookedSparseTransformer.from_circuit_sparsity(tmp_path)
    sd, _ = make_checkpoint(tmp_path, sink=False)
    sd["transformer.h.0.attn.attn_imp.sink_logit"] = torch.zeros(4)
    torch.save(sd, tmp_path / "final_model.pt")
    with pytest.raises(ValueError, match="unused key"):
        HookedSparseTransformer.from_circuit_sparsity(tmp_path)


def test_pickled_code_is_refused(tmp_path):
    make_checkpoint(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "final_model.pt")
    with pytest.raises(ValueError, match="cannot load"):
        HookedSparseTransformer.from_circuit_sparsity(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="beeg_config.json"):
        HookedSparseTransformer.from_circuit_sparsity(tmp_path)
