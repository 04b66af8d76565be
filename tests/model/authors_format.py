"""Writing one of our models in the authors' checkpoint format (``beeg_config.json`` with their
GPTConfig fields + ``final_model.pt`` with their state-dict keys and layouts, as
../shared/reference/circuit_sparsity_ref_a has them), for tests that need a *trained* model in that
format: the inverse of sparse_lens.model.circuit_sparsity_format.state_dict_from_gpt."""

import json
from pathlib import Path
from typing import Optional

import torch
from einops import rearrange

from sparse_lens.model import HookedSparseTransformer


def gpt_config(model: HookedSparseTransformer) -> dict:
    cfg = model.cfg
    if cfg.normalization_type != "RMS" or cfg.tied_embeddings:
        raise ValueError("this writer covers RMSNorm and an untied unembedding (what the tests need)")
    return {
        "block_size": cfg.n_ctx, "vocab_size": cfg.d_vocab, "n_layer": cfg.n_layers, "n_head": cfg.n_heads,
        "d_head": cfg.d_head, "d_model": cfg.d_model, "d_mlp": cfg.d_mlp, "dropout": 0.0, "bias": cfg.use_bias,
        "ln_bias": False, "rms_norm": True, "residual_activation_type": cfg.residual_activation,
        "activation_type": cfg.act_fn, "afrac": cfg.activation_sparsity,
        "afrac_loctypes": ",".join(cfg.activation_sparsity_locations), "debug_nans": False, "tied_unembed": False,
        "tokenizer_name": "tinypython_2k", "grad_checkpointing": False, "enable_bigram_table": cfg.bigram_table,
        "learnable_bigram_table": False, "d_pos_emb": None, "dropout_cat_pos_emb": False,
        "sinusoidal_cat_pos_emb": False, "enable_sparse_kernels": False, "flash": True, "sink": cfg.attention_sink,
    }  # fmt: skip


def gpt_state_dict(model: HookedSparseTransformer, vocab_order: Optional[torch.Tensor] = None) -> dict:
    """The authors' state dict of ``model``; ``vocab_order[new_id] = our id`` renumbers the vocabulary."""
    cfg, sd = model.cfg, {k: v.detach().clone() for k, v in model.state_dict().items()}
    order = torch.arange(cfg.d_vocab) if vocab_order is None else vocab_order
    out = {"transformer.wte.weight": sd["embed.W_E"][order]}
    out["transformer.wpe.weight"] = sd.get("pos_embed.W_pos", torch.zeros(cfg.n_ctx, cfg.d_model))  # always added
    for l in range(cfg.n_layers):
        b, p = f"blocks.{l}.", f"transformer.h.{l}."
        out[p + "ln_1.weight"], out[p + "ln_2.weight"] = sd[b + "ln1.w"], sd[b + "ln2.w"]
        out[p + "attn.c_attn.weight"] = torch.cat(
            [rearrange(sd[b + f"attn.W_{x}"], "h d c -> (h c) d") for x in "QKV"], dim=0)
        out[p + "attn.c_proj.weight"] = rearrange(sd[b + "attn.W_O"], "h c d -> d (h c)")
        out[p + "mlp.c_fc.weight"] = sd[b + "mlp.W_in"].T
        out[p + "mlp.c_proj.weight"] = sd[b + "mlp.W_out"].T
        if cfg.use_bias:
            out[p + "attn.c_attn.bias"] = torch.cat([sd[b + f"attn.b_{x}"].reshape(-1) for x in "QKV"])
            out[p + "attn.c_proj.bias"] = sd[b + "attn.b_O"]
            out[p + "mlp.c_fc.bias"], out[p + "mlp.c_proj.bias"] = sd[b + "mlp.b_in"], sd[b + "mlp.b_out"]
        if cfg.attention_sink:
            out[p + "attn.attn_imp.sink_logit"] = sd[b + "attn.b_sink"]
    out["transformer.ln_f.weight"] = sd["ln_final.w"]
    out["lm_head.weight"] = sd["unembed.W_U"].T[order]
    out["final_logits_bias"] = sd["unembed.b_U"][order]
    if cfg.bigram_table:
        out["bigram_table"] = sd["bigram.W_bigram"][order][:, order]
    return {k: v.contiguous() for k, v in out.items()}


def write_authors_checkpoint(model: HookedSparseTransformer, directory: Path,
                             vocab_order: Optional[torch.Tensor] = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(gpt_state_dict(model, vocab_order), directory / "final_model.pt")
    (directory / "beeg_config.json").write_text(json.dumps(gpt_config(model), indent=2))
    return directory
