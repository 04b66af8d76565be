"""``sparse-lens tasks``: evaluate a model on the binary tasks, list them, show example pairs.

    sparse-lens tasks eval MODEL [--task NAME ...] [--n-pairs 200] [--seed 0] [--split test]
                               [--tasks-file pairs.jsonl ...] [--batch-size 64] [--device cpu] [--json]
    sparse-lens tasks list [--tasks-file pairs.jsonl]
    sparse-lens tasks show NAME [-n 2] [--seed 0] [--split test]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sparse_lens.tasks.base import describe
from sparse_lens.tasks.custom import load_tasks_jsonl
from sparse_lens.tasks.registry import get_task, list_tasks


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from sparse_lens.cli import positive_int

    parser = subparsers.add_parser("tasks", help="the paper's binary next-token tasks: evaluate, list, show",
                                   description="The paper's binary next-token tasks: evaluate a model on them, list them, "
                                   "show example pairs.")
    sub = parser.add_subparsers(dest="tasks_command", title="commands")

    ev = sub.add_parser("eval", help="task loss and accuracy of a model on each task",
                        description="Task loss and accuracy of MODEL on each task (all registered tasks by default).")
    ev.add_argument("model", metavar="MODEL", help="a shipped model name, a directory written by save_pretrained, or a `sparse-lens train` run (its latest checkpoint) or checkpoint")
    ev.add_argument("--task", action="append", default=None, metavar="NAME", help="evaluate only this task (repeatable; default: every registered task)")
    ev.add_argument("--n-pairs", type=positive_int, default=200, help="pairs per task (each gives 2 sequences)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the generated pairs")
    ev.add_argument("--split", choices=("train", "test"), default="test", help="which split's pairs")
    ev.add_argument("--tasks-file", action="append", default=[], metavar="JSONL", help="add user tasks from a JSONL file of pairs (repeatable)")
    ev.add_argument("--batch-size", type=positive_int, default=64, help="sequences per forward pass")
    ev.add_argument("--max-chars", type=positive_int, default=None, help="longest prompt in characters (default: 3 x n_ctx)")
    ev.add_argument("--device", default=None, help="e.g. cpu or cuda (default: cpu)")
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.set_defaults(func=run_eval)

    ls = sub.add_parser("list", help="list the tasks: completions, how the answer is decided, description",
                        description="List the registered tasks (and those of --tasks-file).")
    ls.add_argument("--tasks-file", action="append", default=[], metavar="JSONL", help="add user tasks from a JSONL file of pairs (repeatable)")
    ls.set_defaults(func=run_list)

    show = sub.add_parser("show", help="print example pairs of a task", description="Print example pairs of task NAME.")
    show.add_argument("name", metavar="NAME", help="task name (see `sparse-lens tasks list`)")
    show.add_argument("-n", type=positive_int, default=2, help="number of pairs")
    show.add_argument("--seed", type=int, default=0, help="seed of the generated pairs")
    show.add_argument("--split", choices=("train", "test"), default="test", help="which split's pairs")
    show.add_argument("--max-chars", type=positive_int, default=300, help="longest prompt in characters")
    show.add_argument("--tasks-file", action="append", default=[], metavar="JSONL", help="add user tasks from a JSONL file of pairs (repeatable)")
    show.set_defaults(func=run_show)
    return parser


def _load_files(paths: list[str]) -> list[str]:
    names: list[str] = []
    for path in paths:
        try:
            names += [t.name for t in load_tasks_jsonl(path, register=True, overwrite=True)]
        except (ValueError, OSError) as err:
            message = str(err) if str(path) in str(err) else f"{path}: {err}"
            raise type(err)(f"--tasks-file: {message}") from err
    return names


def task_argument(name: str, argument: str = "--task"):
    """The registered task `name`, or a ValueError naming the argument and the known tasks."""
    try:
        return get_task(name)
    except ValueError as err:
        raise ValueError(f"{argument}: {err}") from None


def run_eval(args: argparse.Namespace) -> int:
    # Everything the arguments name is checked before the model is loaded (errors: one line, exit 2).
    _load_files(args.tasks_file)
    tasks = [task_argument(name) for name in args.task] if args.task else list_tasks()
    from sparse_lens.model.checkpoint import resolve_pretrained
    from sparse_lens.model.devices import check_device

    resolve_pretrained(args.model)
    device = str(check_device(args.device, "--device")) if args.device else None
    from sparse_lens.model import HookedSparseTransformer
    from sparse_lens.tasks.evaluate import evaluate_tasks, format_results

    model = HookedSparseTransformer.from_pretrained(args.model, **({"device": device} if device else {}))
    if getattr(model, "tokenizer", None) is None:
        raise ValueError(f"MODEL: {args.model!r} has no tokenizer; tasks need one")
    results = evaluate_tasks(
        model, tasks, n_pairs=args.n_pairs, seed=args.seed, split=args.split, batch_size=args.batch_size,
        max_chars=args.max_chars,
    )  # fmt: skip
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=1))
    else:
        print(f"model {args.model}: {args.split} split, seed {args.seed}")
        print(format_results(results))
    return 1 if any(r.error for r in results) else 0


def run_list(args: argparse.Namespace) -> int:
    _load_files(args.tasks_file)
    print(describe(list_tasks()))
    return 0


def run_show(args: argparse.Namespace) -> int:
    _load_files(args.tasks_file)
    task = task_argument(args.name, "NAME")
    print(f"{task.name}: {task.description}")
    print(f"cue: {task.cue}   decided by: {task.decided_by}" + (f" ({task.rule_doc})" if task.rule_doc else ""))
    for i, pair in enumerate(task.generate(args.n, seed=args.seed, split=args.split, max_chars=args.max_chars)):
        for label, prompt, completion in (("positive", pair.positive, pair.positive_completion), ("negative", pair.negative, pair.negative_completion)):
            print(f"\n--- pair {i} {label} -> {completion!r}")
            sys.stdout.write(prompt + "\u2588\n")
    return 0
