"""One error style for every sub-command: a user mistake is one line on stderr naming the argument,
exit code 2, no traceback, nothing written, and no model loaded (checked before any work)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from sparse_lens.cli import build_parser, main

# Placeholders filled by the fixture: CFG (a valid training config), BAD_YAML, RUN (a training run),
# SUMMARY (a prune summary.json), A_FILE (an existing file), FOREIGN (a non-empty directory that is
# not a saved model). Each case: (argv, a string the one-line error must contain).
CASES: dict[str, list[tuple[list[str], str]]] = {
    "": [
        (["no-such-command"], "no-such-command"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
    "train": [
        (["train", "no-such-config"], "config"),
        (["train", "BAD_YAML"], "not valid YAML"),
        (["train", "CFG", "--max-steps", "0"], "--max-steps"),
        (["train", "CFG", "--lr", "fast"], "--lr"),
        (["train", "CFG", "--set", "optimizer.lr"], "--set"),
        (["train", "CFG", "--set", "no_such_field=1"], "no_such_field"),
        (["train", "CFG", "--weight-sparsity", "lots"], "--weight-sparsity"),
        (["train", "CFG", "--device", "tpu"], "--device"),
        (["train", "CFG", "--out", "A_FILE"], "--out"),
        (["train", "--export", "RUN"], "--to"),
        (["train", "--export", "no-such-run", "--to", "exported"], "--export"),
        (["train", "--export", "RUN", "--to", "A_FILE"], "--to"),
        (["train", "--export", "RUN", "--to", "FOREIGN"], "--to"),
    ],
    "tasks eval": [
        (["tasks", "eval", "no-such-model"], "no-such-model"),
        (["tasks", "eval", "python-sparse-tiny", "--task", "no_such_task"], "--task"),
        (["tasks", "eval", "python-sparse-tiny", "--n-pairs", "0"], "--n-pairs"),
        (["tasks", "eval", "python-sparse-tiny", "--batch-size", "-1"], "--batch-size"),
        (["tasks", "eval", "python-sparse-tiny", "--device", "tpu9"], "--device"),
        (["tasks", "eval", "python-sparse-tiny", "--tasks-file", "missing.jsonl"], "--tasks-file"),
        (["tasks", "eval", "python-sparse-tiny", "--split", "val"], "--split"),
    ],
    "tasks list": [
        (["tasks", "list", "--tasks-file", "missing.jsonl"], "--tasks-file"),
        (["tasks", "list", "--tasks-file", "A_FILE"], "--tasks-file"),
    ],
    "tasks show": [
        (["tasks", "show", "no_such_task"], "NAME"),
        (["tasks", "show", "single_double_quote", "-n", "0"], "-n"),
    ],
    "prune": [
        (["prune", "no-such-model", "--task", "single_double_quote"], "no-such-model"),
        (["prune", "python-sparse-tiny"], "--task"),
        (["prune", "python-sparse-tiny", "--task", "no_such_task"], "--task"),
        (["prune", "python-sparse-tiny", "--task", "single_double_quote", "--target-loss", "low"], "--target-loss"),
        (["prune", "python-sparse-tiny", "--task", "single_double_quote", "--target-loss", "0"], "--target-loss"),
        (["prune", "python-sparse-tiny", "--task", "single_double_quote", "--n-train", "0"], "--n-train"),
        (["prune", "python-sparse-tiny", "--task", "single_double_quote", "--n-fit", "0"], "--n-fit"),
        (["prune", "python-sparse-tiny", "--task", "single_double_quote", "--n-test", "-3"], "--n-test"),
        (["prune", "python-sparse-tiny", "--task", "single_double_quote", "--steps", "0"], "--steps"),
        (["prune", "python-sparse-tiny", "--task", "single_double_quote", "--sweep-rounds", "-1"], "--sweep-rounds"),
        (["prune", "python-sparse-tiny", "--task", "single_double_quote", "--sweep-parallel", "0"], "--sweep-parallel"),
        (["prune", "python-sparse-tiny", "--task", "single_double_quote", "--device", "tpu9"], "--device"),
        (["prune", "python-sparse-tiny", "--task", "single_double_quote", "--out", "A_FILE"], "--out"),
        (["prune", "python-sparse-tiny", "--task", "single_double_quote", "--out", "A_FILE/sub"], "--out"),
        (["prune", "python-sparse-tiny", "--tasks-file", "missing.jsonl", "--all-tasks"], "--tasks-file"),
    ],
    "prune-compare": [
        (["prune-compare", "--task", "no_such_task"], "--task"),
        (["prune-compare", "--task", "single_double_quote", "--sparse", "no-such-model"], "no-such-model"),
        (["prune-compare", "--task", "single_double_quote", "--target-loss", "-1"], "--target-loss"),
        (["prune-compare", "--task", "single_double_quote", "--out", "A_FILE"], "--out"),
        (["prune-compare", "--from-summaries", "missing.json", "SUMMARY"], "--from-summaries"),
        (["prune-compare", "--from-summaries", "A_FILE", "SUMMARY"], "--from-summaries"),
    ],
}
if not torch.cuda.is_available():
    for command, extra in (("tasks eval", ["tasks", "eval", "python-sparse-tiny"]),
                           ("prune", ["prune", "python-sparse-tiny", "--task", "single_double_quote"])):
        CASES[command].append(([*extra, "--device", "cuda"], "--device"))


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_fixtures")
    from tests.training.conftest import tiny_dict

    (root / "cfg.yaml").write_text(yaml.safe_dump(tiny_dict(out_dir=str(root / "cfg_run"))))
    (root / "bad.yaml").write_text("model: {n_layers: 2\ntrain_steps: [\n")
    from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig
    from sparse_lens.training.checkpoint import checkpoint_path, save_checkpoint

    model = HookedSparseTransformer(SparseTransformerConfig(n_layers=1, d_model=16, n_ctx=8, d_vocab=20, d_head=8))
    save_checkpoint(checkpoint_path(root / "run", 3), model_state=model.state_dict(), optimizer_state={},
                    state={"step": 3, "config": {"model": model.cfg.to_dict()}}, config_yaml="")
    (root / "summary.json").write_text(json.dumps({"tasks": []}))
    return {"CFG": root / "cfg.yaml", "BAD_YAML": root / "bad.yaml", "RUN": root / "run", "SUMMARY": root / "summary.json"}


def all_commands() -> list[str]:
    """Every sub-command the parser has (nested ones as "tasks eval"), including ones added later."""
    found = []

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append(f"{prefix}{name}")
                    walk(sub, f"{prefix}{name} ")

    walk(build_parser(), "")
    return found


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run_bad(argv, fixtures, tmp_path, monkeypatch, capsys):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "a_file").write_text("keep me")
    (cwd / "foreign").mkdir()
    (cwd / "foreign" / "notes.txt").write_text("mine")
    names = {**{k: str(v) for k, v in fixtures.items()}, "A_FILE": "a_file", "FOREIGN": "foreign"}
    argv = [next((arg.replace(k, v) for k, v in names.items() if arg.startswith(k)), arg) for arg in argv]
    monkeypatch.chdir(cwd)
    import sparse_lens.model.checkpoint as model_checkpoint

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(model_checkpoint, "load_pretrained", no_loading)
    before = snapshot(cwd)
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    assert snapshot(cwd) == before, "a failed command left files behind"
    assert (cwd / "a_file").read_text() == "keep me"
    return code, captured


@pytest.mark.parametrize(
    "argv, names", [pytest.param(argv, names, id=" ".join(argv)) for cases in CASES.values() for argv, names in cases]
)
def test_a_user_mistake_is_one_line_and_exit_code_2(argv, names, fixtures, tmp_path, monkeypatch, capsys):
    code, captured = run_bad(argv, fixtures, tmp_path, monkeypatch, capsys)
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("sparse-lens") and ": error: " in lines[0], lines[0]
    assert names in lines[0], lines[0]


@pytest.mark.parametrize("command", all_commands())
def test_every_sub_command_has_the_error_style(command, fixtures, tmp_path, monkeypatch, capsys):
    """Also sub-commands added later: an unknown flag is one line naming it (or the missing argument)."""
    code, captured = run_bad([*command.split(), "--no-such-flag"], fixtures, tmp_path, monkeypatch, capsys)
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1, captured.err
    assert "--no-such-flag" in lines[0] or "required" in lines[0], lines[0]
    assert lines[0].startswith(f"sparse-lens {command}".strip() if "required" in lines[0] else "sparse-lens")


def test_the_known_commands_all_have_cases():
    known = set(CASES) - {""}
    assert known <= set(all_commands())
    assert {"train", "tasks eval", "tasks list", "tasks show", "prune", "prune-compare"} <= known


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        main(["prune", "no-such-model", "--task", "single_double_quote", "--debug"])
    with pytest.raises(ValueError, match="n-train"):
        main(["--debug", "prune", "python-sparse-tiny", "--n-train", "0"])
    assert os.listdir(tmp_path) == []
