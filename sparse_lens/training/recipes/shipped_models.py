"""Train and export the shipped models ``python-sparse-tiny``, ``python-dense-tiny``, ``python-sparse-small``
and ``python-sparse-small-continued``.

    python -m sparse_lens.training.recipes.shipped_models                 # the two tiny ones, one after the other
    python -m sparse_lens.training.recipes.shipped_models --parallel      # both at once, 1 thread each
    python -m sparse_lens.training.recipes.shipped_models --only python-sparse-tiny --export-only

Each model is ``sparse-lens train <config> --resume auto`` (so a re-run continues an interrupted run)
followed by ``sparse-lens train --export runs/<name> --to sparse_lens/pretrained/<name>`` and a
finishing step: the node means used by pruning (``node_means.safetensors``, over validation tokens of
the pretraining corpus), every task evaluated, and a model card (``README.md`` + ``card.json``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from sparse_lens.training.cli import resolve_config_path

MODELS = ("python-sparse-tiny", "python-dense-tiny", "python-sparse-small", "python-sparse-small-continued")
# python-sparse-small: ~5 h at one thread here (docs/pretrained.md), and python-sparse-small-continued
# (init_from the shipped python-sparse-small) as long again; ask for them with --only
DEFAULT_MODELS = MODELS[:2]
PRETRAINED = Path(__file__).resolve().parents[2] / "pretrained"


def train_command(name: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "sparse_lens.cli", "train", str(resolve_config_path(name)), "--resume", "auto", *extra]


def export_command(name: str, run_dir: str) -> list[str]:
    return [sys.executable, "-m", "sparse_lens.cli", "train", "--export", run_dir, "--to", str(PRETRAINED / name)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=MODELS, action="append", help="train only this model (repeatable)")
    ap.add_argument("--parallel", action="store_true", help="train the models at the same time, 1 thread each")
    ap.add_argument("--export-only", action="store_true", help="skip training; export the latest checkpoints")
    args = ap.parse_args(argv)
    names = args.only or list(DEFAULT_MODELS)
    run_dirs = {name: f"runs/{name}" for name in names}
    if not args.export_only:
        extra = ["--num-threads", "1", "--no-progress"] if args.parallel and len(names) > 1 else []
        if args.parallel:
            procs = [subprocess.Popen(train_command(n, extra)) for n in names]
            codes = [p.wait() for p in procs]
        else:
            codes = [subprocess.call(train_command(n, extra)) for n in names]
        if any(codes):
            print(f"training failed or was interrupted: {dict(zip(names, codes))}", file=sys.stderr)
            return max(codes)
    for name in names:
        code = subprocess.call(export_command(name, run_dirs[name]))
        if code:
            return code
        finish(PRETRAINED / name)
    return 0


def hardware() -> str:
    """This machine in words (CPU model and cores): where the shipped models were trained and carded."""
    import os
    import platform

    name = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPU core(s), {platform.system()}"


def finish(directory: Path, means_tokens: int = 65_536, eval_pairs: int = 200, validation: dict | None = None) -> dict:
    """Node means, task evaluation, validation loss on `match-loss`'s rows and the model card of an
    exported model directory. ``validation`` ({"loss", "rows"}: the rows' description) is that loss
    when the caller has already measured it (`match-loss` has, on the target's rows)."""
    import json

    from sparse_lens.model import HookedSparseTransformer
    from sparse_lens.pruning.task_data import corpus_node_means, save_node_means
    from sparse_lens.tasks import evaluate_tasks, format_results

    model = HookedSparseTransformer.from_pretrained(directory)
    model.cfg.model_name = directory.name  # the shipped name, which the means record
    save_node_means(corpus_node_means(model, means_tokens), directory, model=model)
    results = evaluate_tasks(model, n_pairs=eval_pairs, split="test")
    training = json.loads((directory / "training.json").read_text())
    if validation is None:
        from sparse_lens.training.matching import model_data_config, validation_loss, validation_rows

        rows = validation_rows(model_data_config(directory), model.cfg.n_ctx)
        validation = {"loss": validation_loss(model, rows), "rows": rows.description}
    nonzero = {name: int((p != 0).sum()) for name, p in model.named_parameters()}
    total = {name: p.numel() for name, p in model.named_parameters()}
    card = {
        "name": directory.name, "config": model.cfg.to_dict(), "training": training,
        "parameters": total, "nonzero": nonzero, "hardware": hardware(), "validation": validation,
        "tasks": [r.to_dict() for r in results], "task_eval": {"pairs": eval_pairs, "split": "test", "seed": 0},
    }
    from sparse_lens.io import atomic_write_text

    atomic_write_text(directory / "card.json", json.dumps(card, indent=1) + "\n")
    atomic_write_text(directory / "README.md", model_card_markdown(card, format_results(results)))
    print(f"{directory}: node means, card.json, README.md written")
    return card


def model_card_markdown(card: dict, task_table: str) -> str:
    t = card["training"]
    rows = "\n".join(
        f"| `{name}` | {card['parameters'][name]:,} | {nz:,} | {nz / card['parameters'][name]:.4f} |"
        for name, nz in card["nonzero"].items())
    hours = (t.get("elapsed_s") or 0) / 3600
    data = (t.get("config") or {}).get("data") or {}
    corpus = data.get("corpus") if data.get("source") == "corpus" else data.get("source")
    cfg = card["config"]
    l0, topk = cfg.get("weight_sparsity"), cfg.get("activation_sparsity")
    fractions = ("dense weights" if not l0 else f"weight L0 {l0}") + (", no AbsTopK" if not topk else f", AbsTopK {topk}")
    val = card.get("validation")
    val_line = "" if not val else (
        f"\n- validation loss on `match-loss`'s rows: **{val['loss']:.4f}** ({val['rows']['rows']:,} rows evenly spaced over the "
        f"validation split, every {val['rows']['stride']}th; rows hash {val['rows']['rows_hash']}) — the number to compare "
        "across models; the trainer's `val_loss` above is over the split's first rows")
    donor = (t.get("config") or {}).get("init_from")
    donor_line = "" if not donor else (
        f"\n- continued from `{donor}` (its weights, a fresh optimizer and schedule: `init_from`); the steps, "
        "tokens and wall time above are this run's, on top of the donor's")
    changes = t.get("data_changes") or []
    change_line = "" if not changes else (
        f"\n- the data changed {len(changes)} time(s) during training (resumed with `--allow-data-change`; "
        "`training.json` records each change)")
    return f"""# {card['name']}

Reproduce with `python -m sparse_lens.training.recipes.shipped_models --only {card['name']}` (config:
`sparse_lens/training/configs/{card['name']}.yaml`; the training config of this file is in
`training.json`). See docs/pretrained.md.

- shape: {cfg['n_layers']} layers, d_model {cfg['d_model']}, d_mlp {cfg['d_mlp']}, {cfg['n_heads']} heads × {cfg['d_head']}, n_ctx {cfg['n_ctx']}, vocabulary {cfg['d_vocab']}; {fractions}
- data: Python source (`{corpus}` corpus{', files split ' + str(data.get('val_fraction')) + ' validation' if data.get('val_fraction') else ''}), the shipped tokenizer
- steps {t.get('step')}, tokens {t.get('tokens'):,}, wall time {hours:.2f} h ({t.get('world_size')} process(es), torch {t.get('torch_version')}){donor_line}{change_line}
- hardware: {card.get('hardware', 'not recorded')}
- final train loss {t.get('loss'):.4f}, validation loss {t.get('val_loss'):.4f}{val_line}

## Nonzero weights per matrix

| parameter | size | nonzero | fraction |
|---|---|---|---|
{rows}

## Task loss before pruning ({card['task_eval']['pairs']} test pairs per task, seed 0)

```
{task_table}
```
"""


if __name__ == "__main__":
    sys.exit(main())
