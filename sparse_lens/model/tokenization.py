"""Tokenizer helpers in the style of HookedTransformer: `to_tokens`, `to_string`, `to_str_tokens`,
`to_single_token` and `generate`.

``model.tokenizer`` is a ``transformers.PreTrainedTokenizerFast`` (what TransformerLens and Hugging
Face code expect) wrapping our byte-level BPE. Documents are separated by ``<|endoftext|>`` in
pretraining, so it also serves as BOS, EOS and pad; like the tokenizers TransformerLens keeps
(``get_tokenizer_with_bos``), the wrapper adds BOS when called with special tokens
(``add_bos_token=True``) and records ``name_or_path``, so ``TransformerBridge.boot_native(cfg,
tokenizer=model.tokenizer)`` and ``HookedTransformer.set_tokenizer`` accept it as it is.
``model.backend_tokenizer`` is the plain ``tokenizers.Tokenizer`` (no special tokens added), which
this module encodes with and ``save_pretrained`` writes: the saved tokenizer.json is the one loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch
from jaxtyping import Int
from torch import Tensor

BOS_TOKEN = "<|endoftext|>"


class TokenizerMixin:
    tokenizer: Any
    cfg: Any

    def set_tokenizer(self, tokenizer: Any) -> None:
        """Attach a tokenizer: a `tokenizers.Tokenizer`, a `PreTrainedTokenizerFast`, or a path to a
        tokenizer.json. A `tokenizers.Tokenizer` is copied (the caller's object is not changed)."""
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast

        name_or_path = "sparse_lens"
        if isinstance(tokenizer, (str, Path)):
            path = Path(tokenizer)
            if not path.is_file():
                raise FileNotFoundError(f"tokenizer: no file {path}")
            name_or_path = str(path.parent)
            tokenizer = Tokenizer.from_file(str(path))
        if isinstance(tokenizer, Tokenizer):
            plain = Tokenizer.from_str(tokenizer.to_str())
            has_bos = plain.token_to_id(BOS_TOKEN) is not None
            specials = dict(bos_token=BOS_TOKEN, eos_token=BOS_TOKEN, pad_token=BOS_TOKEN) if has_bos else {}
            tokenizer = PreTrainedTokenizerFast(
                tokenizer_object=Tokenizer.from_str(plain.to_str()), clean_up_tokenization_spaces=False,
                add_bos_token=has_bos, name_or_path=name_or_path, **specials,
            )
        elif isinstance(tokenizer, PreTrainedTokenizerFast):
            plain = tokenizer.backend_tokenizer  # encoded with add_special_tokens=False below
        else:
            raise TypeError(
                f"tokenizer: expected a tokenizers.Tokenizer, PreTrainedTokenizerFast or path, got {type(tokenizer).__name__}"
            )
        size = len(tokenizer)
        if size > self.cfg.d_vocab:
            raise ValueError(f"tokenizer: vocabulary of {size} tokens exceeds the model's d_vocab={self.cfg.d_vocab}")
        self.tokenizer = tokenizer
        self._plain_tokenizer = (tokenizer, plain)

    @property
    def backend_tokenizer(self) -> Any:
        """The underlying `tokenizers.Tokenizer`, adding no special tokens of its own."""
        wrapper, plain = getattr(self, "_plain_tokenizer", (None, None))
        if wrapper is not self._require_tokenizer():  # assigned to model.tokenizer directly, not set_tokenizer
            return self.tokenizer.backend_tokenizer
        return plain

    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise ValueError("no tokenizer attached: call model.set_tokenizer(...) or load a pretrained model")
        return self.tokenizer

    @property
    def bos_token_id(self) -> Optional[int]:
        return None if self.tokenizer is None else self.backend_tokenizer.token_to_id(BOS_TOKEN)

    def to_tokens(
        self,
        input: Union[str, list[str]],
        prepend_bos: Optional[bool] = None,
        padding_side: str = "right",
        truncate: bool = True,
    ) -> Int[Tensor, "batch pos"]:
        """Tokenize text to [batch, pos] ids; a list is padded (with BOS/EOS) to its longest."""
        tok = self.backend_tokenizer
        texts = [input] if isinstance(input, str) else list(input)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("input: expected a string or a non-empty list of strings")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side: expected 'left' or 'right', got {padding_side!r}")
        prepend = self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
        bos = self.bos_token_id
        if prepend and bos is None:
            raise ValueError(f"prepend_bos: the tokenizer has no {BOS_TOKEN} token")
        rows = [([bos] if prepend else []) + enc.ids for enc in tok.encode_batch(texts, add_special_tokens=False)]
        if truncate:
            rows = [row[: self.cfg.n_ctx] for row in rows]
        length = max(len(r) for r in rows)
        if length == 0:
            raise ValueError("input: text tokenized to zero tokens")
        pad = bos if bos is not None else 0
        out = torch.full((len(rows), length), pad, dtype=torch.long)
        for i, row in enumerate(rows):
            if padding_side == "right":
                out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            else:
                out[i, length - len(row):] = torch.tensor(row, dtype=torch.long)
        return out

    def to_string(self, tokens: Union[int, list[int], Tensor]) -> Union[str, list[str]]:
        tok = self.backend_tokenizer
        tokens = torch.as_tensor(tokens)
        if tokens.ndim == 0:
            tokens = tokens[None]
        if tokens.ndim == 1:
            return tok.decode(tokens.tolist(), skip_special_tokens=False)
        return [tok.decode(row.tolist(), skip_special_tokens=False) for row in tokens]

    def to_str_tokens(self, input: Union[str, list[str], Tensor, list[int]], prepend_bos: Optional[bool] = None) -> Any:
        """The string of each token of one sequence (a list of strings gives one list per string)."""
        tok = self.backend_tokenizer
        if isinstance(input, list) and input and all(isinstance(x, str) for x in input):
            return [self.to_str_tokens(x, prepend_bos=prepend_bos) for x in input]
        if isinstance(input, str):
            ids = self.to_tokens(input, prepend_bos=prepend_bos)[0].tolist()
        else:
            tokens = torch.as_tensor(input)
            if tokens.ndim > 2 or (tokens.ndim == 2 and tokens.shape[0] != 1):
                raise ValueError(f"input: expected one sequence of token ids ([pos] or [1, pos]), got shape {tuple(tokens.shape)}")
            ids = tokens.reshape(-1).tolist()
        return [tok.decode([i], skip_special_tokens=False) for i in ids]

    def to_single_token(self, string: str) -> int:
        """The id of a string that is exactly one token (no BOS)."""
        tok = self.backend_tokenizer
        ids = tok.encode(string, add_special_tokens=False).ids
        if len(ids) != 1:
            raise ValueError(f"{string!r} is {len(ids)} tokens, not a single token: {ids}")
        return ids[0]

    def to_single_str_token(self, int_token: int) -> str:
        """The string of one token id."""
        if not isinstance(int_token, int):
            raise TypeError(f"int_token: expected an int, got {type(int_token).__name__}")
        return self.to_str_tokens([int_token])[0]

    def get_token_position(
        self,
        single_token: Union[str, int],
        input: Union[str, Tensor],
        mode: str = "first",
        prepend_bos: Optional[bool] = None,
    ) -> int:
        """Position of ``single_token`` in a text or a [pos] / [1, pos] token tensor."""
        tokens = self.to_tokens(input, prepend_bos=prepend_bos) if isinstance(input, str) else torch.as_tensor(input)
        if tokens.ndim == 2:
            if tokens.shape[0] != 1:
                raise ValueError(f"input: rank-2 tokens must have shape [1, pos], got {tuple(tokens.shape)}")
            tokens = tokens[0]
        if isinstance(single_token, str):
            single_token = self.to_single_token(single_token)
        hits = (tokens == int(single_token)).nonzero().flatten()
        if len(hits) == 0:
            raise ValueError(f"token {single_token!r} does not occur in the input")
        if mode not in ("first", "last"):
            raise ValueError(f"mode: expected 'first' or 'last', got {mode!r}")
        return int(hits[0] if mode == "first" else hits[-1])

    @torch.no_grad()
    def generate(
        self,
        input: Union[str, list[str], Tensor] = "",
        max_new_tokens: int = 10,
        stop_at_eos: bool = True,
        eos_token_id: Optional[int] = None,
        do_sample: bool = True,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        temperature: float = 1.0,
        freq_penalty: float = 0.0,
        use_past_kv_cache: bool = True,
        prepend_bos: Optional[bool] = None,
        padding_side: Optional[str] = None,
        return_type: str = "input",
        verbose: bool = False,
        seed: Optional[int] = None,
    ) -> Union[str, list[str], Tensor]:
        """Sample a continuation, with HookedTransformer.generate's arguments.

        ``do_sample=False`` or ``temperature=0`` is greedy; ``top_k`` / ``top_p`` filter the sampling
        distribution; ``freq_penalty`` subtracts penalty × (count of each token so far) from its logit.
        ``return_type``: "input" (text for text input, else tokens), "str" or "tokens". Each step
        reruns the full forward pass (there is no KV cache here; ``use_past_kv_cache`` is accepted
        and ignored). ``seed`` seeds the sampler (an addition to TransformerLens's arguments).
        Rows that finish (emit EOS) are padded with EOS until all finish. A batch of texts of
        different lengths should be padded on the left (``padding_side="left"``, or a tokenizer whose
        ``padding_side`` is "left"), so every row continues from its own last token; the leading pads
        are then masked out (``forward``'s ``attention_mask``) and left out of the returned texts.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens: expected >= 0, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature: expected >= 0, got {temperature}")
        if top_k is not None and top_k <= 0:
            raise ValueError(f"top_k: expected a positive integer or None, got {top_k}")
        if top_p is not None and not 0 < top_p <= 1:
            raise ValueError(f"top_p: expected a value in (0, 1] or None, got {top_p}")
        if return_type not in ("input", "str", "tokens"):
            raise ValueError(f"return_type: expected 'input', 'str' or 'tokens', got {return_type!r}")
        text_in = isinstance(input, (str, list))
        side = self._padding_side(padding_side)
        if text_in:
            tokens = self.to_tokens(input, prepend_bos=prepend_bos, padding_side=side)
        else:
            tokens = self._check_tokens(input)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        eos = eos_token_id if eos_token_id is not None else (self.bos_token_id if self.tokenizer is not None else None)
        finished = torch.zeros(tokens.shape[0], dtype=torch.bool)
        mask = self._attention_mask(None, tuple(tokens.shape), tokens, prepend_bos, side)  # left padding's, or None
        steps = range(max_new_tokens)
        if verbose:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="generate")
        for _ in steps:
            window_mask = None if mask is None else mask[:, -self.cfg.n_ctx:]
            logits = self(tokens[:, -self.cfg.n_ctx:], return_type="logits", attention_mask=window_mask)[:, -1].float()
            if freq_penalty:
                counts = torch.zeros_like(logits).scatter_add_(1, tokens, torch.ones_like(tokens, dtype=logits.dtype))
                logits = logits - freq_penalty * counts
            if temperature == 0 or not do_sample:
                nxt = logits.argmax(-1)
            else:
                nxt = torch.multinomial(_filtered(logits / temperature, top_k, top_p).softmax(-1), 1, generator=generator).squeeze(-1)
            if eos is not None and stop_at_eos:
                nxt = torch.where(finished, torch.full_like(nxt, eos), nxt)
                finished |= nxt == eos
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            if mask is not None:
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if eos is not None and stop_at_eos and bool(finished.all()):
                break
        if return_type == "tokens" or (return_type == "input" and not text_in):
            return tokens
        start = 1 if (self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos) else 0
        rows = tokens if mask is None else [row[keep.bool()] for row, keep in zip(tokens, mask)]
        texts = [self.to_string(row[start:]) for row in rows]
        return texts[0] if isinstance(input, str) or (not text_in and len(texts) == 1) else texts


def _filtered(logits: Tensor, top_k: Optional[int], top_p: Optional[float]) -> Tensor:
    """Logits with everything outside the top-k and the top-p nucleus set to -inf."""
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the smallest prefix reaching top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits
