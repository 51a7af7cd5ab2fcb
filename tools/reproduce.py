"""The suite's main job: regenerate Tables 2 and 3 with our numbers beside the paper's.

    python tools/reproduce.py toy    # default: no GPU / no COCO, ADE20K needed
    python tools/reproduce.py full --gpus 8 [--configs PATTERN ...] [--tta]
    python tools/reproduce.py release --gpus 8 [--rows NAME ...] [--ckpt-dir DIR]
                                      [--download] [--tta] [--dry-run]

``toy``: Params/MACs of every config, toy training + evaluation of the rows marked ``toy`` in
results/backbones.csv, the leaderboard. ``full``: trains and tests every selected config on
this node's GPUs, then the leaderboard. ``release``: evaluates the checkpoints the rows'
authors released (results/releases.csv) through the suite's models: verified, converted,
tested, recorded with ``source: release``; ``--dry-run`` lists the plan and the missing files.
Finished steps are skipped; ``--force`` redoes them.
Details: backbones/results/reproduce.py.
"""
import argparse
import os.path as osp

from backbones.engine.launch import REPO
from backbones.metadata import RELEASES_CSV
from backbones.results.reproduce import RESULTS, run_full, run_release, run_toy


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
    rel = sub.add_parser('release', help='GPU: evaluate the released checkpoints of the rows '
                                         '(results/releases.csv), leaderboard')
    rel.add_argument('--rows', nargs='+', metavar='PATTERN',
                     help='manifest row names, e.g. "VMamba-T" "Swin-*" (default: all)')
    rel.add_argument('--configs', nargs='+', metavar='PATTERN',
                     help='or: the rows whose config file name matches, e.g. "*convnext*"')
    rel.add_argument('--tasks', nargs='+', choices=['det', 'seg'], help='only these tasks')
    rel.add_argument('--ckpt-dir', default=osp.join(REPO, 'checkpoints', 'releases'),
                     help='where the release files are (or go, with --download)')
    rel.add_argument('--download', action='store_true',
                     help='download missing plain-HTTP files (resumable; Google-Drive-only '
                          'files must be fetched by hand: the error says where to put them)')
    rel.add_argument('--gpus', type=int, default=8,
                     help='GPUs per node for tools/dist_test.sh; 0: tools/test.py in this '
                          'process on the CPU')
    rel.add_argument('--tta', action='store_true',
                     help='also multi-scale + flip where the table has an MS column')
    rel.add_argument('--dry-run', action='store_true',
                     help='list what would be done for each row and which files are missing')
    rel.add_argument('--coco', default=osp.join(REPO, 'data', 'coco'))
    rel.add_argument('--ade', default=osp.join(REPO, 'data', 'ade', 'ADEChallengeData2016'))
    rel.add_argument('--toy', metavar='DIR',
                     help='evaluate on the toy datasets in DIR at CPU scale instead (a check '
                          'of the pipeline: the numbers mean nothing, the leaderboard skips them)')
    rel.add_argument('--toy-scale', type=int, default=128, help=argparse.SUPPRESS)
    rel.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                     help='passed to every evaluation (tools/test.py --cfg-options)')
    rel.add_argument('--manifest', default=RELEASES_CSV, help=argparse.SUPPRESS)
    rel.add_argument('--no-leaderboard', action='store_true', help=argparse.SUPPRESS)
    for p in (toy, full, rel):
        p.add_argument('--force', action='store_true', help='redo finished steps')
        p.add_argument('--work-root', default=osp.join(REPO, 'work_dirs'))
        p.add_argument('--results', default=RESULTS,
                       help='results folder (complexity.csv, runs/, leaderboard, tables)')
    args = parser.parse_args(argv)
    return args if args.mode is not None else parser.parse_args(['toy'])


def main(argv=None):
    args = parse_args(argv)
    {'toy': run_toy, 'full': run_full, 'release': run_release}[args.mode](args)


if __name__ == '__main__':
    main()
