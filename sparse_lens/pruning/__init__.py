"""Circuit pruning (paper Sec. 2.2, App. A.5): learned node masks with mean ablation, bisection to a
target loss, logit calibration, edge counts, sufficiency/necessity, hyperparameter search."""

import lazy_loader

# Attributes load on first use (``sparse-lens --help`` imports no torch).
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "calibration": ["Calibration", "fit_calibration"],
        "circuit": ["Circuit"],
        "config": ["PruningConfig"],
        "edges": ["count_edges", "summarize_edges"],
        "masks": ["NodeMasks"],
        "mean_ablation": ["compute_node_means"],
        "nodes": ["NODE_KINDS", "NodeSite", "node_sites"],
        "pipeline": ["TaskData", "prune"],
        "sweep": ["run_sweep"],
        "task_batch": ["TaskBatch", "evaluate_task"],
        "validation": ["validate"],
    },
)

__all__ = [
    "Calibration", "Circuit", "NODE_KINDS", "NodeMasks", "NodeSite", "PruningConfig", "TaskBatch", "TaskData",
    "compute_node_means", "count_edges", "evaluate_task", "fit_calibration", "node_sites", "prune", "run_sweep",
    "summarize_edges", "validate",
]
