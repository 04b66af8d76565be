"""Circuit pruning (paper Sec. 2.2, App. A.5): learned node masks with mean ablation, bisection to a
target loss, logit calibration, edge counts, sufficiency/necessity, hyperparameter search."""

from sparse_lens.pruning.calibration import Calibration, fit_calibration
from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.config import PruningConfig
from sparse_lens.pruning.edges import count_edges, summarize_edges
from sparse_lens.pruning.masks import NodeMasks
from sparse_lens.pruning.mean_ablation import compute_node_means
from sparse_lens.pruning.nodes import NODE_KINDS, NodeSite, node_sites
from sparse_lens.pruning.pipeline import TaskData, prune
from sparse_lens.pruning.sweep import run_sweep
from sparse_lens.pruning.task_batch import TaskBatch, evaluate_task
from sparse_lens.pruning.validation import validate

__all__ = [
    "Calibration", "Circuit", "NODE_KINDS", "NodeMasks", "NodeSite", "PruningConfig", "TaskBatch", "TaskData",
    "compute_node_means", "count_edges", "evaluate_task", "fit_calibration", "node_sites", "prune", "run_sweep",
    "summarize_edges", "validate",
]
