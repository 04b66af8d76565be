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
    from sparse_lens.cli import positive_int

    p = subparsers.add_parser(
        "report",
        help="one offline HTML page for a prune run: results, plots and every circuit's viewer",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", type=Path, help="the --out directory of 'sparse-lens prune'")
    p.add_argument("--out", type=Path, default=None, help="the HTML file to write (default: RUN/report.html)")
    p.add_argument("--pairs", type=positive_int, default=32, help="held-out task pairs for each viewer's node panel")
    p.add_argument("--windows", type=positive_int, default=256,
                   help="pretraining windows (64 tokens each) for the top/bottom contexts")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
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
