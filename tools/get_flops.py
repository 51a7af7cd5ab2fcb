"""Params (M) and MACs (G) of a whole detector or segmentor, as in the paper's tables.

    python tools/get_flops.py CONFIG [--shape H W]
    python tools/get_flops.py --all [--only 'GLOB' ...] [--out results/complexity.csv] [--force]

Defaults follow the paper: a detector at 800x1280 (Table 2), a segmentor at 512x2048
(Table 3). How it counts: backbones/analysis/complexity.py.
"""
import argparse
import os.path as osp

from backbones.analysis.complexity import measure, measure_all
from backbones.engine.launch import REPO


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', help='config file')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: 800 1280 for det, 512 2048 for seg)')
    parser.add_argument('--all', action='store_true', help='measure every model config')
    parser.add_argument('--out', default=osp.join(REPO, 'results', 'complexity.csv'),
                        help='CSV written by --all')
    parser.add_argument('--force', action='store_true',
                        help='with --all: re-measure configs that did not change')
    parser.add_argument('--only', nargs='+', metavar='GLOB',
                        help="with --all: measure only configs whose file name matches, e.g. "
                             "'*cswin*'; the other rows are kept as they are")
    args = parser.parse_args(argv)
    if args.all == bool(args.config):
        parser.error('give either CONFIG or --all')
    if args.only and not args.all:
        parser.error('--only goes with --all')
    if args.all:
        try:
            measure_all(args.out, args.shape, force=args.force, only=args.only)
        except ValueError as err:
            parser.error(str(err))
        return
    res = measure(args.config, args.shape)
    print(f'{osp.basename(args.config)}: Params {res["params_m"]} M, MACs {res["macs_g"]} G '
          f'at {res["shape"]}')


if __name__ == '__main__':
    main()
