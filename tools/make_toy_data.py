"""Generate the toy COCO + ADE20K datasets (see backbones/datasets/toy_data.py).

    python tools/make_toy_data.py [--out data/toy] [--num-train 64] [--num-val 16] [--seed 0]
"""
import argparse

from backbones.datasets.toy_data import make_toy_data


def main(argv=None):
    parser = argparse.ArgumentParser(description='Generate toy COCO + ADE20K datasets')
    parser.add_argument('--out', default='data/toy', help='output folder (default: data/toy)')
    parser.add_argument('--num-train', type=int, default=64)
    parser.add_argument('--num-val', type=int, default=16)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_train < 1 or args.num_val < 1:
        parser.error('--num-train and --num-val must be at least 1')
    roots = make_toy_data(args.out, args.num_train, args.num_val, args.seed)
    for name, root in roots.items():
        print(f'{name}: {root} ({args.num_train} train / {args.num_val} val images)')


if __name__ == '__main__':
    main()
