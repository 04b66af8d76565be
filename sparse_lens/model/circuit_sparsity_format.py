"""Loading checkpoints in the authors' format (`openai/circuit_sparsity`): `beeg_config.json` (their
`GPTConfig` fields) + `final_model.pt` (their GPT state dict).

Unlike the authors' `load_model` (which loads with ``strict=False``), this loader is strict: every
key must be used and every parameter filled, apart from the authors' documented defaults
(a missing ``final_logits_bias`` is zeros, the optional ``attn.bias`` causal-mask buffer is ignored).
The state dict is read with ``torch.load(weights_only=True)``: no code is unpickled.

The authors' models use their own BPE, ``tinypython_2k`` (a data-gym pair ``encoder.json`` +
``vocab.bpe``, see :mod:`sparse_lens.model.data_gym_tokenizer`). It is attached when given
(``tokenizer=``) or found where the authors' code looks for it (``$TINYPYTHON_TOK_DIR``, else
``<base>/tinypython`` beside ``<base>/models/<model>``); its vocabulary must be the model's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from einops import rearrange

from sparse_lens.model.checkpoint import constructing_for_load, load_state_dict_strict
from sparse_lens.model.config import RMS_EPS, SPARSITY_LOCATIONS, SparseTransformerConfig

CONFIG_FILE = "beeg_config.json"
WEIGHTS_FILE = "final_model.pt"

# GPTConfig defaults (authors' gpt.py), used when a key is absent from beeg_config.json.
GPT_CONFIG_DEFAULTS: dict[str, Any] = {
    "block_size": 1024, "vocab_size": 50304, "n_layer": 12, "n_head": 12, "d_head": None,
    "d_model": 768, "dropout": 0.0, "bias": True, "ln_bias": True, "rms_norm": False,
    "residual_activation_type": "identity", "activation_type": "gelu", "afrac": None,
    "afrac_loctypes": "attn_in,attn_out,mlp_in,mlp_out", "debug_nans": False, "tied_unembed": True,
    "tokenizer_name": "tinypython_2k", "grad_checkpointing": True, "d_mlp": None,
    "enable_bigram_table": False, "learnable_bigram_table": False, "d_pos_emb": None,
    "dropout_cat_pos_emb": False, "sinusoidal_cat_pos_emb": False, "enable_sparse_kernels": False,
    "flash": True, "sink": False,
}
# Keys that only affect training or kernels, not the function the checkpoint computes.
_NO_EFFECT = {"dropout", "debug_nans", "grad_checkpointing", "enable_sparse_kernels", "flash", "learnable_bigram_table"}


def config_from_gpt_config(raw: dict[str, Any], **overrides: Any) -> SparseTransformerConfig:
    """Translate the authors' GPTConfig fields into a :class:`SparseTransformerConfig`."""
    raw = dict(raw)
    if "n_mlp" in raw:  # legacy name, renamed by the authors' loader
        raw["d_mlp"] = raw.pop("n_mlp")
    if raw.pop("use_tied_aux_matrix", False):
        raise ValueError(f"{CONFIG_FILE}: use_tied_aux_matrix=true is not supported (the authors' loader rejects it too)")
    unknown = sorted(set(raw) - set(GPT_CONFIG_DEFAULTS))
    if unknown:
        raise ValueError(f"{CONFIG_FILE}: unknown GPTConfig field(s) {unknown}")
    c = {**GPT_CONFIG_DEFAULTS, **raw}
    if c["d_pos_emb"] is not None or c["sinusoidal_cat_pos_emb"] or c["dropout_cat_pos_emb"]:
        raise ValueError(
            f"{CONFIG_FILE}: concatenated positional embeddings (d_pos_emb={c['d_pos_emb']!r}) are not supported"
        )
    if c["d_model"] % c["n_head"]:
        raise ValueError(f"{CONFIG_FILE}: d_model ({c['d_model']}) must be a multiple of n_head ({c['n_head']})")
    locations = tuple(loc for loc in str(c["afrac_loctypes"]).split(",") if loc)
    unknown_locs = [loc for loc in locations if loc not in SPARSITY_LOCATIONS]
    if unknown_locs and c["afrac"] is not None:
        # The authors match names exactly, so an unknown name silently disables sparsity there.
        raise ValueError(
            f"{CONFIG_FILE}: afrac_loctypes has unknown location(s) {unknown_locs} "
            f"(known: {list(SPARSITY_LOCATIONS)}); the authors' code would silently ignore them"
        )
    rms = bool(c["rms_norm"])
    fields = dict(
        n_layers=c["n_layer"],
        d_model=c["d_model"],
        n_ctx=c["block_size"],
        d_vocab=c["vocab_size"],
        n_heads=c["n_head"],
        d_head=c["d_head"] if c["d_head"] is not None else c["d_model"] // c["n_head"],
        d_mlp=c["d_mlp"] if c["d_mlp"] is not None else 4 * c["d_model"],
        act_fn=c["activation_type"],
        normalization_type="RMS" if rms else "LN",
        eps=RMS_EPS if rms else 1e-5,
        ln_bias=bool(c["ln_bias"]) and not rms,
        residual_activation=c["residual_activation_type"],
        positional_embeddings=True,  # the authors always add wpe
        bigram_table=bool(c["enable_bigram_table"]),
        attention_sink=bool(c["sink"]),
        tied_embeddings=bool(c["tied_unembed"]),
        use_bias=bool(c["bias"]),
        final_logits_bias=True,
        activation_sparsity=c["afrac"],
        activation_sparsity_locations=locations if c["afrac"] is not None else (),
        tokenizer_name=c["tokenizer_name"],
        default_prepend_bos=False,
    )
    fields.update(overrides)
    return SparseTransformerConfig(**fields)


def state_dict_from_gpt(sd: dict[str, torch.Tensor], cfg: SparseTransformerConfig) -> dict[str, torch.Tensor]:
    """Rename and reshape the authors' state dict into ours. Raises on unused or missing keys."""
    sd = dict(sd)
    out: dict[str, torch.Tensor] = {}
    H, D, d = cfg.n_heads, cfg.d_head, cfg.d_model

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise ValueError(f"{WEIGHTS_FILE}: missing key {key!r}")
        return sd.pop(key)

    out["embed.W_E"] = take("transformer.wte.weight")
    out["pos_embed.W_pos"] = take("transformer.wpe.weight")
    for l in range(cfg.n_layers):
        p = f"transformer.h.{l}."
        b = f"blocks.{l}."
        sd.pop(p + "attn.bias", None)  # causal-mask buffer of the non-flash path
        for ours, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
            out[b + ours + ".w"] = take(p + theirs + ".weight")
            if cfg.ln_bias:
                out[b + ours + ".b"] = take(p + theirs + ".bias")
        w_q, w_k, w_v = take(p + "attn.c_attn.weight").split(H * D, dim=0)
        for name, w in (("W_Q", w_q), ("W_K", w_k), ("W_V", w_v)):
            out[b + "attn." + name] = rearrange(w, "(h c) d -> h d c", h=H)
        out[b + "attn.W_O"] = rearrange(take(p + "attn.c_proj.weight"), "d (h c) -> h c d", h=H)
        out[b + "mlp.W_in"] = take(p + "mlp.c_fc.weight").T
        out[b + "mlp.W_out"] = take(p + "mlp.c_proj.weight").T
        if cfg.use_bias:
            b_q, b_k, b_v = take(p + "attn.c_attn.bias").split(H * D, dim=0)
            for name, bias in (("b_Q", b_q), ("b_K", b_k), ("b_V", b_v)):
                out[b + "attn." + name] = rearrange(bias, "(h c) -> h c", h=H)
            out[b + "attn.b_O"] = take(p + "attn.c_proj.bias")
            out[b + "mlp.b_in"] = take(p + "mlp.c_fc.bias")
            out[b + "mlp.b_out"] = take(p + "mlp.c_proj.bias")
        if cfg.attention_sink:
            out[b + "attn.b_sink"] = take(p + "attn.attn_imp.sink_logit").reshape(-1).expand(H).clone()
    out["ln_final.w"] = take("transformer.ln_f.weight")
    if cfg.ln_bias:
        out["ln_final.b"] = take("transformer.ln_f.bias")
    lm_head = take("lm_head.weight")
    if cfg.tied_embeddings:
        if not torch.equal(lm_head, out["embed.W_E"]):
            raise ValueError(f"{WEIGHTS_FILE}: tied_unembed=true but lm_head.weight differs from transformer.wte.weight")
    else:
        out["unembed.W_U"] = lm_head.T
    out["unembed.b_U"] = sd.pop("final_logits_bias", torch.zeros(cfg.d_vocab))
    if cfg.bigram_table:
        out["bigram.W_bigram"] = take("bigram_table")
    else:
        sd.pop("bigram_table", None)
    if sd:
        raise ValueError(f"{WEIGHTS_FILE}: unused key(s) {sorted(sd)} (config and weights disagree)")
    return {k: v.contiguous() for k, v in out.items()}


def resolve_tokenizer(directory: Path, tokenizer: Any, cfg: SparseTransformerConfig) -> tuple[Any, str | None]:
    """The tokenizer to attach and where it came from (None, None: none given or found).

    ``tokenizer``: None (look where the authors' code does, for a model whose config names
    ``tinypython_2k``), False (attach none), a directory holding a data-gym pair, a ``tokenizer.json``
    file, or a ``tokenizers.Tokenizer`` / ``PreTrainedTokenizerFast``. Its vocabulary size (largest
    id + 1) must equal the model's ``vocab_size``."""
    from tokenizers import Tokenizer

    from sparse_lens.model.data_gym_tokenizer import TINYPYTHON_NAME, data_gym_tokenizer, find_authors_tokenizer, vocab_size

    source: str | None
    if tokenizer is False:
        return None, None
    if tokenizer is None:
        if cfg.tokenizer_name != TINYPYTHON_NAME:
            return None, None
        found = find_authors_tokenizer(directory)
        if found is None:
            return None, None
        tokenizer = found
    if isinstance(tokenizer, (str, Path)):
        path = Path(tokenizer).expanduser()
        source = str(path)
        if path.is_dir():
            tok = data_gym_tokenizer(path)
        elif path.is_file():
            try:
                tok = Tokenizer.from_file(str(path))
            except Exception as err:  # tokenizers raises its own exception type for a bad file
                raise ValueError(f"tokenizer: {path} is not a tokenizer.json ({err})") from err
        else:
            raise FileNotFoundError(f"tokenizer: no file or directory {path}")
    elif isinstance(tokenizer, Tokenizer) or hasattr(tokenizer, "backend_tokenizer"):
        tok, source = tokenizer, getattr(tokenizer, "name_or_path", None)
    else:
        raise TypeError(f"tokenizer: expected a path, a tokenizers.Tokenizer or a PreTrainedTokenizerFast, got {type(tokenizer).__name__}")
    size = vocab_size(getattr(tok, "backend_tokenizer", tok))
    if size != cfg.d_vocab:
        raise ValueError(
            f"tokenizer {source or ''}: {size} tokens, but the model in {directory} has vocab_size={cfg.d_vocab} "
            f"({CONFIG_FILE}); this is not the model's tokenizer"
        )
    return tok, source


def load_circuit_sparsity(cls: type, directory: str | Path, tokenizer: Any = None, require_tokenizer: bool = False,
                          **overrides: Any):
    """The model in ``directory`` with its tokenizer (see :func:`resolve_tokenizer`); with
    ``require_tokenizer``, finding none is a FileNotFoundError raised before the weights are read."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: missing {path.name} (expected the authors' checkpoint format)")
    try:
        raw = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path}: not valid JSON ({err})") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{config_path}: expected a JSON object of GPTConfig fields")
    cfg = config_from_gpt_config(raw, **overrides)
    tok, source = resolve_tokenizer(directory, tokenizer, cfg)  # before the (large) weights: errors come first
    if tok is None and require_tokenizer:
        from sparse_lens.model.data_gym_tokenizer import ENCODER_FILE, MERGES_FILE, TOKENIZER_DIR_ENV

        raise FileNotFoundError(
            f"tokenizer: none found for {directory} ({CONFIG_FILE} names tokenizer_name={cfg.tokenizer_name!r}); "
            f"give the directory with the authors' {ENCODER_FILE} + {MERGES_FILE} (tokenizer=, or "
            f"`sparse-lens convert --tokenizer DIR`), set ${TOKENIZER_DIR_ENV}, or put it at <base>/tinypython "
            "beside <base>/models/<model> (or convert the weights alone: --no-tokenizer)"
        )
    try:
        sd = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file or pickled code: both refused
        raise ValueError(f"{weights_path}: cannot load as a plain state dict ({err})") from err
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{weights_path}: expected a dict of tensors")
    with constructing_for_load():
        model = cls(cfg)
    load_state_dict_strict(model, state_dict_from_gpt(sd, cfg), source=str(weights_path))
    if tok is not None:
        model.set_tokenizer(tok)
        if source is not None:
            model.tokenizer.name_or_path = source
    return model.eval()
