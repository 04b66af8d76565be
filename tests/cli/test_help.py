"""Help that helps: every option says what it does and its default; `tasks` alone lists its
sub-commands; --version; parsing imports no torch."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from sparse_lens import __version__
from sparse_lens.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def parsers():
    out = []

    def walk(parser, name):
        out.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}".strip())

    walk(build_parser(), "")
    return out


@pytest.mark.parametrize("name, parser", parsers(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_option_has_help_and_its_default(name, parser):
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help, f"sparse-lens {name}: {label} has no help text"
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            squeezed = "".join(text.split())  # help wraps lines (also at hyphens)
            assert f"(default:{action.default})" in squeezed, f"sparse-lens {name}: {label} hides its default"


def test_prune_help_shows_the_defaults():
    help_text = " ".join(dict(parsers())["prune"].format_help().split())
    for option, default in (("--target-loss", "0.15"), ("--n-train", "512"), ("--n-fit", "128"), ("--n-test", "128"),
                            ("--out", "runs/prune"), ("--steps", "400")):
        assert option in help_text and f"(default: {default})" in help_text


def test_a_command_without_its_sub_command_lists_them(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("eval", "list", "show"))
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("train", "tasks", "prune"))


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"sparse-lens {__version__}"


def test_parsing_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from sparse_lens.cli import main\n"
        "for argv in (['--help'], ['prune', '--help'], ['tasks', 'eval', '--help'], ['train', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'transformer_lens', 'datasets') if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]"
