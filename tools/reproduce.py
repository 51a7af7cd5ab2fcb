"""The suite's main job: regenerate Tables 2 and 3 with our numbers beside the paper's.

    python tools/reproduce.py toy    # default: no GPU / no COCO, ADE20K needed
    python tools/reproduce.py full --gpus 8 [--configs PATTERN ...] [--tta]

``toy``: Params/MACs of every config, toy training + evaluation of the rows marked ``toy`` in
results/backbones.csv, the leaderboard. ``full``: trains and tests every selected config on
this node's GPUs, then the leaderboard. Finished steps are skipped; ``--force`` redoes them.
Details: backbones/results/reproduce.py.
"""
import argparse
import os.path as osp

from backbones.engine.launch import REPO
from backbones.results.reproduce import RESULTS, run_full, run_toy


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='mode')
    toy = sub.add_parser('toy', help='CPU: complexity, toy training, leaderboard (default)')
    toy.add_argument('--data', default=osp.join(REPO, 'data', 'toy'))
    toy.add_argument('--skip-complexity', action='store_true')
    toy.add_argument('--only', nargs='+', metavar='PATTERN',
                     help='toy runs to do, by config file name pattern')
    full = sub.add_parser('full', help='GPU: train + test every config, leaderboard')
    full.add_argument('--gpus', type=int, default=8, help='GPUs per node')
    full.add_argument('--configs', nargs='+', help='file name patterns, e.g. "*mambaout-t*"')
    full.add_argument('--tta', action='store_true', help='also multi-scale + flip for seg')
    full.add_argument('--coco', default=osp.join(REPO, 'data', 'coco'))
    full.add_argument('--ade', default=osp.join(REPO, 'data', 'ade', 'ADEChallengeData2016'))
    for p in (toy, full):
        p.add_argument('--force', action='store_true', help='redo finished steps')
        p.add_argument('--work-root', default=osp.join(REPO, 'work_dirs'))
        p.add_argument('--results', default=RESULTS,
                       help='results folder (complexity.csv, runs/, leaderboard, tables)')
    args = parser.parse_args(argv)
    return args if args.mode is not None else parser.parse_args(['toy'])


def main(argv=None):
    args = parse_args(argv)
    (run_toy if args.mode == 'toy' else run_full)(args)


if __name__ == '__main__':
    main()
