"""`sparse-lens` command line: one sub-command per capability.

Each capability's sub-package owns its arguments through an ``add_parser(subparsers)`` function that
registers its sub-command and sets ``func`` (called with the parsed namespace, returns an exit code).

One error style for every sub-command, implemented once in :func:`main`: a user mistake (a bad flag
value, an unknown model or task, a missing or malformed file, an output path that is a file or cannot
be written) is one line on stderr, ``sparse-lens <command>: error: <what was expected>``, exit code 2,
no traceback (``--debug`` shows it). ``func`` should check its arguments before any work; it signals a
mistake by raising :class:`UsageError`, ValueError or OSError (the library's errors for bad input).
Parsing imports nothing heavy: ``add_parser`` must not import torch, transformer_lens or datasets.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Callable, Optional

# (module, description); each module defines add_parser(subparsers).
_COMMAND_MODULES = (
    "sparse_lens.model.cli",
    "sparse_lens.training.cli",
    "sparse_lens.tasks.cli",
    "sparse_lens.pruning.cli",
    "sparse_lens.pruning.predictions_cli",
    "sparse_lens.visualization.plot_cli",
    "sparse_lens.visualization.cli",
    "sparse_lens.visualization.report_cli",
    "sparse_lens.visualization.reproduce_cli",
    "sparse_lens.bridges.cli",
)


class UsageError(ValueError):
    """A mistake in the command's arguments: reported as one line, exit code 2."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and adds ``(default: X)`` to every option with a default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        default = action.default
        if (
            "%(default)" in help
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
            or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            return help
        return f"{help} (default: %(default)s)" if help else "(default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the command line's conventions: a parsing error is one line (no usage block),
    options show their defaults, and a command with sub-commands run without one prints its help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        formatter = kwargs.get("formatter_class")
        if formatter is None or formatter in (argparse.HelpFormatter, argparse.RawDescriptionHelpFormatter):
            kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)
        self.set_defaults(_prog=self.prog)

    def error(self, message: str):  # type: ignore[override]
        raise _ParseError(self.prog, message)

    def add_subparsers(self, **kwargs: Any):  # type: ignore[override]
        kwargs["required"] = False  # no sub-command: print the list of them (below)
        kwargs.setdefault("metavar", "COMMAND")
        action = super().add_subparsers(**kwargs)
        self.set_defaults(func=lambda args, parser=self: _print_help(parser))
        return action


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def add_documented_parser(subparsers, name: str, help: str, doc: str, intro_paragraphs: int = 1) -> argparse.ArgumentParser:
    """The subcommand ``name``, its ``--help`` written from ``doc`` (its module's docstring): the first
    ``intro_paragraphs`` paragraphs describe it, the rest (usually examples) follow the options."""
    parts = doc.strip("\n").split("\n\n", intro_paragraphs)
    return subparsers.add_parser(
        name,
        help=help,
        description="\n\n".join(parts[:intro_paragraphs]),
        epilog=parts[intro_paragraphs] if len(parts) > intro_paragraphs else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    return _number(text, int, lambda v: v > 0, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(text, float, lambda v: 0 < v < float("inf"), "a number > 0")


def _number(text: str, kind: type, ok: Callable[[Any], bool], expected: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from sparse_lens import __version__

    parser = ArgumentParser(prog="sparse-lens", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"sparse-lens {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full Python traceback (anywhere on the command line)")
    sub = parser.add_subparsers(dest="command", title="commands")
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue  # capability not built yet
        module.add_parser(sub)
    return parser


# Errors that mean "bad input" (the library's convention: ValueError / OSError with a message naming
# the argument or file and what was expected), as opposed to a bug (anything else: a traceback).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    prog = "sparse-lens"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        prog = getattr(args, "_prog", prog)
        return int(args.func(args) or 0)
    except UsageError as err:
        return _report(prog if not isinstance(err, _ParseError) else err.prog, err, debug)
    except USER_ERRORS as err:
        return _report(prog, err, debug)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


class _ParseError(UsageError):
    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


def _report(prog: str, err: BaseException, debug: bool) -> int:
    if debug:
        raise err
    message = " ".join(str(err).split()) or type(err).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
