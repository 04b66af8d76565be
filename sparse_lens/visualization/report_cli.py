"""sparse-lens report RUN [--out FILE]: one offline HTML page for a prune run (what `make demo` opens).

RUN is the --out directory of 'sparse-lens prune' (summary.json and one circuit per task). The page
holds the results table and, for each task, the loss-vs-k and mask-training plots and the interactive
circuit viewer, all inline: it opens from file:// with no network and no server.

Examples::

    sparse-lens report runs/demo                       # -> runs/demo/report.html
    sparse-lens report runs/demo --out /tmp/report.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    from sparse_lens.cli import add_documented_parser
    from sparse_lens.visualization.cli import add_viewer_options

    p = add_documented_parser(subparsers, "report",
                              "one offline HTML page for a prune run: results, plots and every circuit's viewer",
                              __doc__, intro_paragraphs=2)
    p.add_argument("run", type=Path, help="the --out directory of 'sparse-lens prune'")
    p.add_argument("--out", type=Path, default=None, help="the HTML file to write (default: RUN/report.html)")
    add_viewer_options(p, "held-out task pairs for each viewer's node panel")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not args.run.is_dir():
        raise FileNotFoundError(f"RUN: {args.run} is not a directory; expected the --out directory of 'sparse-lens prune'")
    from sparse_lens.visualization.report import write_report

    path = write_report(args.run, out=args.out, n_pairs=args.pairs, n_windows=args.windows,
                        progress=not args.no_progress)
    print(f"wrote {path.resolve()} ({path.stat().st_size / 1e6:.1f} MB): open it in a browser (works offline)",
          file=sys.stdout)
    return 0
