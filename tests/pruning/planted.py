"""A hand-built model whose task is solved by exactly three known nodes.

Vocabulary: 0 = BOS, 1 = A, 2 = B, 3 = X, 4 = Y, 5-7 = filler. The task: after A predict X, after B
predict Y. Path: the embedding writes ±1 on residual channel 0 for A/B; the MLP reads channel 0
(ln2 read node 0), one neuron computes relu(x0 + 5) (always active, so linear), and writes it with
bias −5 onto channel 1 (mlp write node 1); the unembedding reads channel 1 (+c for X, −c for Y).
Attention weights are all zero, so no attention node matters.
"""

import torch

from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig
from sparse_lens.pruning.task_batch import TaskBatch

PLANTED = {"blocks.0.ln2.hook_normalized": [(0,)], "blocks.0.mlp.hook_post": [(0,)], "blocks.0.hook_mlp_out": [(1,)]}


def planted_model() -> HookedSparseTransformer:
    cfg = SparseTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_vocab=8, n_heads=2, d_head=4, d_mlp=6,
                                  act_fn="relu", activation_sparsity=None, bigram_table=False, seed=0)
    model = HookedSparseTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.ln_final.w.fill_(1)
        model.blocks[0].ln1.w.fill_(1)
        model.blocks[0].ln2.w.fill_(1)
        model.embed.W_E[1, 0], model.embed.W_E[2, 0] = 1.0, -1.0
        model.embed.W_E[5:, 2] = 1.0  # filler tokens write elsewhere
        model.blocks[0].mlp.W_in[0, 0], model.blocks[0].mlp.b_in[0] = 1.0, 5.0
        model.blocks[0].mlp.W_out[0, 1], model.blocks[0].mlp.b_out[1] = 1.0, -5.0
        model.unembed.W_U[1, 3], model.unembed.W_U[1, 4] = 4.0, -4.0
    return model.eval()


def planted_batch(n_pairs: int, seed: int) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(5, 8, (n_pairs, 5), generator=g)
    rows = []
    for p in prefix:
        rows += [torch.cat([torch.tensor([0]), p, torch.tensor([1])]), torch.cat([torch.tensor([0]), p, torch.tensor([2])])]
    tokens = torch.stack(rows)
    n = len(rows)
    positive = torch.arange(n) % 2 == 0
    correct = torch.where(positive, torch.tensor(3), torch.tensor(4))
    incorrect = torch.where(positive, torch.tensor(4), torch.tensor(3))
    return TaskBatch(tokens, torch.full((n,), tokens.shape[1] - 1), correct, incorrect, positive)


def pretraining_batches(n: int = 8, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 8, (16, 12), generator=g) for _ in range(n)]


def planted_task(n_train: int = 64, n_fit: int = 32, n_test: int = 32, model=None):
    """(model, node means, TaskData) of the planted task (``model``: one with the circuit planted,
    default `planted_model()`)."""
    from sparse_lens.pruning.mean_ablation import compute_node_means
    from sparse_lens.pruning.pipeline import TaskData

    model = planted_model() if model is None else model
    means = compute_node_means(model, pretraining_batches())
    return model, means, TaskData(train=planted_batch(n_train, 0), fit=planted_batch(n_fit, 1), test=planted_batch(n_test, 2))
