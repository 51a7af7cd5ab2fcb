"""Collect finished runs into the leaderboard: CSV, Tables 2 and 3 as Markdown, and a plot.

    python tools/leaderboard.py [--runs results/runs] [--complexity results/complexity.csv]
                                [--out results] [--strict]

Inputs: the paper's tables (``results/paper/``), the backbone metadata
(``results/backbones.csv``), our Params / MACs (``tools/get_flops.py --all``) and one folder
per run with the ``metrics.json`` that ``tools/test.py`` writes (or ``tools/import_run.py``);
a folder whose record is missing, corrupt or fails the schema (fields, units, provenance:
backbones/results/schema.py) is reported and skipped (``--strict``: an error, nothing
written). Outputs, each written atomically: ``leaderboard.csv``, ``table2.md``,
``table3.md``, ``ap_vs_macs.png`` (backbones/results/).
"""
import argparse
import os.path as osp

from backbones.engine.launch import REPO
from backbones.results.leaderboard import write_leaderboard


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', default=osp.join(REPO, 'results', 'runs'))
    parser.add_argument('--complexity', default=osp.join(REPO, 'results', 'complexity.csv'))
    parser.add_argument('--out', default=osp.join(REPO, 'results'))
    parser.add_argument('--strict', action='store_true',
                        help='a run record that fails the schema (backbones/results/schema.py)'
                             ' is an error, not a skipped row')
    args = parser.parse_args(argv)
    runs, rows = write_leaderboard(args.runs, args.complexity, args.out, strict=args.strict)
    print(f'[leaderboard] {len(runs)} runs, {len(rows)} rows -> '
          f"{osp.join(args.out, 'leaderboard.csv')}, table2.md, table3.md, ap_vs_macs.png")


if __name__ == '__main__':
    main()
