"""Definition and call tasks: ``lambda_func``, ``final_kwarg`` and ``class_init``."""

from __future__ import annotations

import random

from sparse_lens.tasks import rules
from sparse_lens.tasks.base import Task, TaskPair
from sparse_lens.tasks.snippets import (
    ATTR_NAMES, CLASS_NAMES, FUNC_NAMES, STEP, VAR_NAMES, atom, budget, distinct, distractor, expression, number,
    scaffold, string, try_tail,
)  # fmt: skip

PARAM_NAMES = ("x", "y", "a", "b", "item", "row", "key", "value", "s", "n", "pair", "k", "v", "p", "obj", "e", "t")


def _lambda_func(rng: random.Random, max_chars: int) -> TaskPair:
    params = distinct(rng, PARAM_NAMES, rng.choice((0, 1, 1, 1, 2)))
    fname = rng.choice(FUNC_NAMES + ("key_fn", "callback", "handler", "score", "is_valid", "transform"))
    target, seq = distinct(rng, VAR_NAMES, 2)
    levels = rng.choice((0, 1, 1, 2, 3))
    prefix, indent = scaffold(rng, budget(rng, max_chars, 60 + 34 * levels), levels)
    plist = ", ".join(params)
    body_expr = expression(rng, tuple(params)) if params else atom(rng)
    form = rng.random()
    if form < 0.4 or not params:
        lead, close = f"{fname} = lambda", ""
    elif form < 0.65:
        lead, close = f"{target} = sorted({seq}, key=lambda", ")"
    elif form < 0.8 and len(params) == 1:
        lead, close = f"{target} = list(map(lambda", f", {seq}))"
    elif form < 0.9:
        lead, close = f"{target} = max({seq}, key=lambda", ")"
    else:
        lead, close = f"{target}.sort(key=lambda", ")"
    lam = f"{lead} {plist}" if params else lead
    tail = try_tail(prefix)
    def_params = ", ".join(params) if params else rng.choice(("", "self", ", ".join(distinct(rng, PARAM_NAMES, 2))))
    return TaskPair(
        f"{prefix}{indent}{lam}", f"{prefix}{indent}def {fname}", ":", "(",
        f" {body_expr}{close}\n{tail}", f"{def_params}):\n{indent}{STEP}return {body_expr}\n{tail}",
    )


LAMBDA_FUNC = Task(
    name="lambda_func",
    description="after `lambda ARGS` comes `:`; after `def NAME` comes `(`",
    completions=(":", "("),
    sampler=_lambda_func,
    cue="the keyword: lambda or def",
)

KWARG_NAMES = (
    "timeout", "verbose", "retries", "encoding", "key", "reverse", "default", "sep", "end", "flush", "mode",
    "strict", "check", "indent", "dtype", "axis", "name", "level", "color", "size", "limit", "debug",
    "callback", "prefix", "block", "force", "dry_run", "cwd", "env", "width",
)  # fmt: skip
CALLEES = (
    "connect", "plot", "sorted", "request", "run", "fetch", "dumps", "Parser", "client.get", "self.send",
    "subprocess.run", "np.zeros", "logger.log", "build", "render", "load", "save", "Session", "create_app",
)  # fmt: skip


def _kw_value(rng: random.Random) -> str:
    """A keyword value that does not start with a bracket or sign (those fuse with `=`)."""
    return rng.choice((number(rng), string(rng), "True", "False", "None", rng.choice(VAR_NAMES)))


def _final_kwarg(rng: random.Random, max_chars: int) -> TaskPair:
    kws = distinct(rng, KWARG_NAMES, 3)
    final, earlier = kws[0], kws[1 : 1 + rng.choice((1, 1, 2))]
    callee = rng.choice(CALLEES)
    positional = [atom(rng) for _ in range(rng.randint(1, 3))]
    levels = rng.choice((0, 1, 1, 2, 3))
    in_function = levels > 0 and rng.random() < 0.6
    prefix, indent = scaffold(rng, budget(rng, max_chars, 80 + 34 * levels), levels, avoid=(final,), function=in_function)
    setup = f"{indent}{final} = {_kw_value(rng)}\n"  # the final argument is a local variable in both prompts
    setup += distractor(rng, rng.choice((0, 0, 80)), indent, avoid=(final,), max_statements=2)
    lead = rng.choice(("", "result = ", f"{rng.choice(VAR_NAMES)} = ") + (("return ",) if in_function else ()))
    head = f"{prefix}{setup}{indent}{lead}{callee}({', '.join(positional)}, "
    keywords = ", ".join(f"{k}={_kw_value(rng)}" for k in earlier)
    value = final if rng.random() < 0.6 else _kw_value(rng)
    tail = try_tail(prefix)
    return TaskPair(f"{head}{keywords}, {final}", f"{head}{final}", "=", ")", f"{value})\n{tail}", f"\n{tail}")


FINAL_KWARG = Task(
    name="final_kwarg",
    description="the final argument of a call: after a keyword argument it must be one too (`=`); otherwise a positional name closes the call (`)`)",
    completions=("=", ")"),
    sampler=_final_kwarg,
    cue="whether a keyword argument `k=v` appears earlier in the call",
    rule=rules.final_kwarg,
    rule_doc="the final argument is a keyword argument exactly when an earlier argument is",
    grammar_sides=("positive",),
)


def _class_init(rng: random.Random, max_chars: int) -> TaskPair:
    n = rng.randint(2, 5)
    params = distinct(rng, ATTR_NAMES, n)
    k = rng.randint(0, n - 2)  # attributes already assigned
    swapped = params[:k] + [params[k + 1], params[k]] + params[k + 2 :]
    defaults = {p: rng.choice(("None", "0", "True", string(rng), "()")) for p in params[k + 2 :] if rng.random() < 0.4}
    # Defaults only after the swapped pair, and then on every later parameter (grammar requires it).
    first_default = next((i for i, p in enumerate(params) if p in defaults), None)
    if first_default is not None:
        for p in params[first_default:]:
            defaults.setdefault(p, "None")
    cls = rng.choice(CLASS_NAMES)
    base = rng.choice(("", "", "", "(object)", "(Base)", f"({rng.choice(CLASS_NAMES)})"))
    prefix = distractor(rng, budget(rng, max_chars, 120 + 20 * n), "", avoid=params)
    head = f"{prefix}class {cls}{base}:\n"
    r = rng.random()
    if r < 0.3:
        head += f'{STEP}"""{rng.choice(("A", "The", "One"))} {cls.lower()}."""\n\n'
    elif r < 0.5:
        head += f"{STEP}{rng.choice(('kind', 'version', 'registry', 'default_size'))} = {atom(rng)}\n\n"
    inner = STEP + STEP
    body = f"{inner}super().__init__()\n" if base and rng.random() < 0.5 else ""
    body += "".join(f"{inner}self.{p} = {p}\n" for p in params[:k])

    def sig(names: list[str]) -> str:
        return ", ".join(["self"] + [f"{p}={defaults[p]}" if p in defaults else p for p in names])

    positive = f"{head}{STEP}def __init__({sig(params)}):\n{body}{inner}self."
    negative = f"{head}{STEP}def __init__({sig(swapped)}):\n{body}{inner}self."
    a, b = params[k], params[k + 1]
    return TaskPair(positive, negative, a, b, f" = {a}\n", f" = {b}\n")


CLASS_INIT = Task(
    name="class_init",
    description="in __init__, assign the parameters to attributes in signature order: the next `self.` is the first unassigned parameter",
    completions=None,
    sampler=_class_init,
    cue="the order of the parameters in the __init__ signature",
    rule=rules.class_init,
    rule_doc="__init__ assigns self.p = p for its parameters in signature order",
    grammar_sides=(),
)

TASKS = (LAMBDA_FUNC, FINAL_KWARG, CLASS_INIT)
