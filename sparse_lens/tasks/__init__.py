"""The paper's 20 binary next-token Python tasks (Gao et al. 2025), their loss, and evaluation.

    from sparse_lens.tasks import get_task, list_tasks, tokenize_pairs, task_loss, evaluate_task
    task = get_task("single_double_quote")
    pairs = task.generate(100, seed=0, split="test")      # list[TaskPair]
    batch = tokenize_pairs(pairs, model.tokenizer, n_ctx=model.cfg.n_ctx)
    loss, acc = task_loss(model(batch.tokens), batch.target, batch.alternative, last=batch.last)
    evaluate_task(model, "bracket_counting")               # TaskResult(loss, accuracy, n_pairs)

User tasks: `register_task(name, template)` with ``template(rng) -> TaskPair``, or
`load_tasks_jsonl(path)`. See docs/tasks.md.
"""

import lazy_loader

# Attributes load on first use (``sparse-lens --help`` imports no torch).
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "base": ["DEFAULT_MAX_CHARS", "SPLITS", "Task", "TaskPair", "describe", "parses", "split_of"],
        "custom": ["FixedPairsTask", "load_tasks_jsonl", "save_pairs_jsonl", "task_from_template"],
        "evaluate": ["TaskResult", "evaluate_pairs", "evaluate_task", "evaluate_tasks", "format_results", "model_logits"],
        "loss": ["last_logits", "logit_difference", "task_loss"],
        "registry": ["PAPER_TASKS", "get_task", "list_tasks", "register_task", "task_names", "unregister_task"],
        "tokenize": ["TokenizedPairs", "check_completions", "completion_id", "tokenize_pairs"],
    },
)

__all__ = [
    "DEFAULT_MAX_CHARS", "FixedPairsTask", "PAPER_TASKS", "SPLITS", "Task", "TaskPair", "TaskResult",
    "TokenizedPairs", "check_completions", "completion_id", "describe", "evaluate_pairs", "evaluate_task",
    "evaluate_tasks", "format_results", "get_task", "last_logits", "list_tasks", "load_tasks_jsonl",
    "logit_difference", "model_logits", "parses", "register_task", "save_pairs_jsonl", "split_of",
    "task_from_template", "task_loss", "task_names", "tokenize_pairs", "unregister_task",
]
