"""The task registry: the paper's 20 tasks, plus any registered by the user."""

from __future__ import annotations

from typing import Callable, Optional, Union

from sparse_lens.tasks import brackets, context_managers, control_flow, definitions, strings, variables
from sparse_lens.tasks.base import Rule, Task, TaskPair

# The paper's order (README of openai/circuit_sparsity).
PAPER_TASKS: tuple[str, ...] = (
    "single_double_quote", "bracket_counting", "set_or_string", "set_or_string_fixedvarname", "with_as",
    "with_open", "for_while", "else_elif", "if_ternary", "if_equals", "fstring_brace", "bracket_brace",
    "var_swap", "var_if", "indent_for", "while_return_true", "lambda_func", "enumerate_range",
    "final_kwarg", "class_init",
)  # fmt: skip

_REGISTRY: dict[str, Task] = {}


def _register_builtins() -> None:
    found = {t.name: t for m in (strings, brackets, variables, context_managers, control_flow, definitions) for t in m.TASKS}
    missing = set(PAPER_TASKS) - set(found)
    if missing:  # pragma: no cover - guards the module layout
        raise RuntimeError(f"built-in tasks missing: {sorted(missing)}")
    for name in PAPER_TASKS:
        found[name].builtin = True
        _REGISTRY[name] = found[name]


def register_task(
    task: Union[Task, str],
    template: Optional[Callable[..., TaskPair]] = None,
    *,
    completions: Optional[tuple[str, str]] = None,
    description: str = "",
    cue: str = "",
    rule: Optional[Rule] = None,
    rule_doc: str = "",
    grammar_sides: tuple[str, ...] = (),
    overwrite: bool = False,
) -> Task:
    """Add a task to the registry and return it.

    Either pass a `Task`, or a name and a template function ``template(rng) -> TaskPair`` (see
    `task_from_template` for the other arguments). A built-in task cannot be replaced; a user task
    only with ``overwrite=True``."""
    if isinstance(task, Task):
        if template is not None:
            raise ValueError("register_task: pass either a Task or a name and a template, not both")
        new = task
    else:
        from sparse_lens.tasks.custom import task_from_template

        if template is None:
            raise ValueError(f"register_task({task!r}): a template function (rng) -> TaskPair is required")
        new = task_from_template(
            task, template, completions=completions, description=description, cue=cue, rule=rule,
            rule_doc=rule_doc, grammar_sides=grammar_sides,
        )  # fmt: skip
    old = _REGISTRY.get(new.name)
    if old is not None and old is not new:
        if old.builtin:
            raise ValueError(f"task {new.name!r} is a built-in task and cannot be replaced; choose another name")
        if not overwrite:
            raise ValueError(f"task {new.name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[new.name] = new
    return new


def unregister_task(name: str) -> None:
    """Remove a user task."""
    task = get_task(name)
    if task.builtin:
        raise ValueError(f"task {name!r} is a built-in task and cannot be removed")
    del _REGISTRY[name]


def get_task(name: Union[str, Task]) -> Task:
    """The registered task called `name` (a `Task` is returned as is)."""
    if isinstance(name, Task):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(_REGISTRY)}") from None


def list_tasks(builtin_only: bool = False) -> list[Task]:
    """All registered tasks: the paper's 20 in the paper's order, then user tasks in the order added."""
    return [t for t in _REGISTRY.values() if t.builtin or not builtin_only]


def task_names(builtin_only: bool = False) -> list[str]:
    return [t.name for t in list_tasks(builtin_only)]


_register_builtins()
