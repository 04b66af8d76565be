"""`SparseActivationCache`: TransformerLens's `ActivationCache` with a residual decomposition that adds up
on a weight-sparse model.

TransformerLens decomposes the residual stream into head results (``hook_z @ W_O``), neuron results
(``hook_post @ W_out``) or MLP outputs, the embeddings and the accumulated biases, and that sum is the
residual for a standard transformer. Ours differs in two places TransformerLens does not know:

- **AbsTopK at the write nodes** (``attn_out``, ``mlp_out``): a block writes ``AbsTopK(Σ heads + b_O)``,
  not ``Σ heads + b_O``. The difference is a labelled component, ``L{l}_attn_out_abstopk`` (and
  ``L{l}_mlp_out_abstopk`` when neurons are expanded; unexpanded MLP outputs are read from
  ``hook_mlp_out`` and already include it).
- **A nonlinearity on the residual stream itself** (AbsTopK at ``resid_post_attn`` /
  ``resid_post_mlp``, or ``residual_activation="relu"``): ``L{l}_resid_mid_nonlinearity`` and
  ``L{l}_resid_post_nonlinearity``, present only in models that have it.

Each correction is the cached activation minus the linear terms TransformerLens already counts, so the
components sum to the residual exactly (float rounding aside), for every layer, both ``mlp_input``
values, with ``apply_ln`` (the same cached-scale normalization as every other component) and
``project_output_onto``. The attention sink changes only the pattern, so head results stay exact; the
bigram table writes to the logits, not the residual (``tokens_to_residual_directions`` covers it).
"""

from __future__ import annotations

import inspect
from typing import Optional, Union

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from sparse_lens.model.tl_compat import ActivationCache, Slice

# TransformerLens 3.x/4.x project inside the decomposition; 2.x has no project_output_onto.
_TL_PROJECTS = "project_output_onto" in inspect.signature(ActivationCache.get_full_resid_decomposition).parameters


class SparseActivationCache(ActivationCache):
    """An ``ActivationCache`` whose ``get_full_resid_decomposition`` includes our architecture's terms."""

    def get_full_resid_decomposition(  # type: ignore[override]
        self,
        layer: Optional[int] = None,
        mlp_input: bool = False,
        expand_neurons: bool = True,
        apply_ln: bool = False,
        pos_slice=None,
        return_labels: bool = False,
        project_output_onto: Optional[Tensor] = None,
    ) -> Union[Tensor, tuple[Tensor, list[str]]]:
        if layer is None or layer == -1:
            layer = self.model.cfg.n_layers
        projects = project_output_onto is not None
        stack, labels = super().get_full_resid_decomposition(
            layer=layer, mlp_input=mlp_input, expand_neurons=expand_neurons, apply_ln=apply_ln,
            pos_slice=pos_slice, return_labels=True,
            **({"project_output_onto": project_output_onto} if projects and _TL_PROJECTS else {}),
        )
        if projects and not _TL_PROJECTS:  # TransformerLens 2.x: project the finished stack
            stack = stack @ project_output_onto.to(stack.dtype)
        extra, extra_labels = self._architecture_terms(layer, mlp_input, expand_neurons)
        if extra_labels:
            slicer = pos_slice if isinstance(pos_slice, Slice) else Slice(pos_slice)
            extra = slicer.apply(extra, -2)
            if apply_ln:
                extra = self.apply_ln_to_stack(extra, layer, pos_slice=slicer, mlp_input=mlp_input)
            if projects:
                extra = extra @ project_output_onto.to(extra.dtype)
            stack = torch.cat([stack, extra], dim=0)
            labels = labels + extra_labels
        return (stack, labels) if return_labels else stack

    def _architecture_terms(
        self, layer: int, mlp_input: bool, expand_neurons: bool
    ) -> tuple[Float[Tensor, "component *batch_and_pos d_model"], list[str]]:
        """Each correction as (cached activation − the linear terms TransformerLens counts for it)."""
        cfg = self.model.cfg
        nonlinear_mid = cfg.residual_activation != "identity" or cfg.sparsity_at("resid_post_attn") is not None
        nonlinear_post = cfg.residual_activation != "identity" or cfg.sparsity_at("resid_post_mlp") is not None
        terms, labels = [], []
        for l in range(layer + (1 if mlp_input else 0)):
            block = self.model.blocks[l]
            attn_out = self[f"blocks.{l}.hook_attn_out"]
            if cfg.sparsity_at("attn_out") is not None:
                heads = einops.einsum(self[f"blocks.{l}.attn.hook_z"], block.attn.W_O,
                                      "... head d_head, head d_head d_model -> ... d_model")
                terms.append(attn_out - heads - block.attn.b_O)
                labels.append(f"L{l}_attn_out_abstopk")
            if nonlinear_mid:
                terms.append(self[f"blocks.{l}.hook_resid_mid"] - self[f"blocks.{l}.hook_resid_pre"] - attn_out)
                labels.append(f"L{l}_resid_mid_nonlinearity")
            if l == layer:  # mlp_input: only the attention half of this block is upstream
                break
            mlp_out = self[f"blocks.{l}.hook_mlp_out"]
            if expand_neurons and cfg.sparsity_at("mlp_out") is not None:
                neurons = self[f"blocks.{l}.mlp.hook_post"] @ block.mlp.W_out
                terms.append(mlp_out - neurons - block.mlp.b_out)
                labels.append(f"L{l}_mlp_out_abstopk")
            if nonlinear_post:
                terms.append(self[f"blocks.{l}.hook_resid_post"] - self[f"blocks.{l}.hook_resid_mid"] - mlp_out)
                labels.append(f"L{l}_resid_post_nonlinearity")
        if not terms:
            return torch.empty(0), []
        return torch.stack(terms, dim=0), labels
