"""Rules for the tasks that Python's grammar cannot decide: each takes a completed program and says
whether it follows the task's rule (``False`` also when it does not parse). The cue is always the
last construct of its kind in the program (distractor code comes before it), so each rule looks at
the last such node."""

from __future__ import annotations

import ast
import warnings
from typing import Iterable, Optional


def parse(program: str) -> Optional[ast.Module]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.parse(program)
        except (SyntaxError, ValueError):
            return None


def _pos(node: ast.AST) -> tuple[int, int]:
    return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))


def _end(node: ast.AST) -> tuple[int, int]:
    return (getattr(node, "end_lineno", 0) or 0, getattr(node, "end_col_offset", 0) or 0)


def _last(nodes: Iterable[ast.AST], key=_pos) -> Optional[ast.AST]:
    nodes = list(nodes)
    return max(nodes, key=key) if nodes else None


def _call_name(node: ast.AST) -> Optional[str]:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id
    return None


def set_or_string(program: str) -> bool:
    """The last update of a variable uses ``.add(...)`` if it was last initialized as ``set()`` and
    ``+= ...`` if it was last initialized as a string literal."""
    tree = parse(program)
    if tree is None:
        return False
    usages: list[tuple[tuple[int, int], str, str]] = []
    inits: list[tuple[tuple[int, int], str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and isinstance(node.op, ast.Add):
            usages.append((_pos(node), node.target.id, "+="))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add"
            and isinstance(node.func.value, ast.Name)
        ):
            usages.append((_pos(node), node.func.value.id, "add"))
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if _call_name(value) == "set" and not value.args:
                inits.append((_pos(node), node.targets[0].id, "set"))
            elif isinstance(value, ast.Constant) and isinstance(value.value, str):
                inits.append((_pos(node), node.targets[0].id, "str"))
    if not usages:
        return False
    pos, name, kind = max(usages)
    before = [(p, t) for p, n, t in inits if n == name and p < pos]
    if not before:
        return False
    init = max(before)[1]
    return (init == "set") == (kind == "add")


def else_elif(program: str) -> bool:
    """``else`` may close a ``for``/``while``/``try`` block; after an ``if`` block (which here tests a
    value against a literal), the dispatch continues with ``elif``."""
    tree = parse(program)
    if tree is None:
        return False
    owners = [n for n in ast.walk(tree) if isinstance(n, (ast.If, ast.For, ast.While, ast.Try)) and n.orelse]
    if not owners:
        return False
    node = max(owners, key=lambda n: _pos(n.orelse[0]))
    if isinstance(node, ast.If):
        first = node.orelse[0]
        line = program.splitlines()[first.lineno - 1].lstrip()
        return isinstance(first, ast.If) and line.startswith("elif")
    return True


def if_equals(program: str) -> bool:
    """No statement is a bare comparison (``x == 1`` on its own line has no effect: at the start of a
    statement, a name is assigned with ``=``)."""
    tree = parse(program)
    if tree is None:
        return False
    return not any(isinstance(n, ast.Expr) and isinstance(n.value, ast.Compare) for n in ast.walk(tree))


def for_while(program: str) -> bool:
    """A ``while`` header tests its condition for truth; it is never a membership test
    ``while x in y`` (that ``in`` belongs to ``for``)."""
    tree = parse(program)
    if tree is None:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.While) and isinstance(node.test, ast.Compare):
            if any(isinstance(op, (ast.In, ast.NotIn)) for op in node.test.ops):
                return False
    return True


def enumerate_range(program: str) -> bool:
    """The last loop (statement or comprehension) iterates ``enumerate(...)`` when its target is a
    pair ``i, x`` and ``range(...)`` when its target is a single name."""
    tree = parse(program)
    if tree is None:
        return False
    loops = [(n.target, n.iter) for n in ast.walk(tree) if isinstance(n, (ast.For, ast.comprehension))]
    if not loops:
        return False
    target, it = max(loops, key=lambda ti: _pos(ti[0]))
    if isinstance(target, ast.Tuple) and len(target.elts) == 2:
        return _call_name(it) == "enumerate"
    if isinstance(target, ast.Name):
        return _call_name(it) == "range"
    return False


def var_swap(program: str) -> bool:
    """The last tuple assignment ``a, b = ...`` swaps: its value is ``b, a``."""
    tree = parse(program)
    if tree is None:
        return False
    assigns = [
        n for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Tuple)
    ]  # fmt: skip
    node = _last(assigns)
    if node is None:
        return False
    targets, value = node.targets[0].elts, node.value
    if len(targets) != 2 or not isinstance(value, ast.Tuple) or len(value.elts) != 2:
        return False
    names = [t.id if isinstance(t, ast.Name) else None for t in targets]
    values = [v.id if isinstance(v, ast.Name) else None for v in value.elts]
    return None not in names and values == names[::-1]


def _tested_name(test: ast.AST) -> Optional[str]:
    """The variable an ``if`` condition is about: ``x``, ``not x``, ``x is None``, ``x.attr``…"""
    while True:
        if isinstance(test, ast.Name):
            return test.id
        if isinstance(test, ast.UnaryOp):
            test = test.operand
        elif isinstance(test, ast.Compare):
            test = test.left
        elif isinstance(test, (ast.Attribute, ast.Subscript)):
            test = test.value
        elif isinstance(test, ast.Call):
            test = test.func
        else:
            return None


def var_if(program: str) -> bool:
    """The last ``if`` tests the variable assigned by the statement right before it."""
    tree = parse(program)
    if tree is None:
        return False
    best: Optional[tuple[tuple[int, int], ast.If, Optional[ast.stmt]]] = None
    for parent in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(parent, field, None)
            if not isinstance(stmts, list):
                continue
            for i, stmt in enumerate(stmts):
                if isinstance(stmt, ast.If) and (best is None or _pos(stmt) > best[0]):
                    best = (_pos(stmt), stmt, stmts[i - 1] if i > 0 else None)
    if best is None or best[2] is None:
        return False
    _, node, previous = best
    if not (isinstance(previous, ast.Assign) and len(previous.targets) == 1 and isinstance(previous.targets[0], ast.Name)):
        return False
    return _tested_name(node.test) == previous.targets[0].id


WRITE_MODES = ("w", "a", "x")


def with_open(program: str) -> bool:
    """In the last ``with open(path, mode) as f:`` block, ``f`` is read (``f.read``) when the mode
    reads (``"r"``, ``"rb"``, ``"rt"`` or no mode) and written (``f.write``) when it writes
    (``"w"``, ``"a"``, ``"x"``, with or without ``b``/``t``)."""
    tree = parse(program)
    if tree is None:
        return False
    withs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            for item in node.items:
                if _call_name(item.context_expr) == "open" and isinstance(item.optional_vars, ast.Name):
                    withs.append((node, item))
    if not withs:
        return False
    node, item = max(withs, key=lambda w: _pos(w[0]))
    call = item.context_expr
    mode = "r"
    if len(call.args) >= 2 and isinstance(call.args[1], ast.Constant):
        mode = call.args[1].value
    for kw in call.keywords:
        if kw.arg == "mode" and isinstance(kw.value, ast.Constant):
            mode = kw.value.value
    handle = item.optional_vars.id
    uses = [
        n for stmt in node.body for n in ast.walk(stmt)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == handle
    ]  # fmt: skip
    use = _last(uses)
    if use is None or not isinstance(mode, str):
        return False
    writes = any(c in mode for c in WRITE_MODES)
    return use.attr == ("write" if writes else "read")


def final_kwarg(program: str) -> bool:
    """In the last call, the final argument is a keyword argument exactly when an earlier argument
    is (after one keyword argument, grammar forces keywords; before any, the final argument is a
    positional one that closes the call)."""
    tree = parse(program)
    if tree is None:
        return False
    call = _last((n for n in ast.walk(tree) if isinstance(n, ast.Call)), key=_end)
    if call is None:
        return False
    args = sorted([(_pos(a), False) for a in call.args] + [(_pos(k), True) for k in call.keywords if k.arg])
    if not args:
        return False
    final_is_kw = args[-1][1]
    return final_is_kw == any(is_kw for _, is_kw in args[:-1])


def class_init(program: str) -> bool:
    """The last ``__init__`` assigns its parameters to same-named attributes in signature order
    (``self.a = a`` then ``self.b = b`` …): the assigned names are a prefix of the parameters."""
    tree = parse(program)
    if tree is None:
        return False
    inits = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    node = _last(inits)
    if node is None:
        return False
    params = [a.arg for a in node.args.args[1:]]
    assigned = []
    for stmt in node.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Attribute)
            and isinstance(stmt.targets[0].value, ast.Name)
            and stmt.targets[0].value.id == "self"
        ):
            assigned.append(stmt.targets[0].attr)
    return bool(assigned) and assigned == params[: len(assigned)]
