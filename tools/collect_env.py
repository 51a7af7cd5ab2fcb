"""Print the environment: versions, compiled mmcv ops, CUDA/GPUs, selective-scan backends.

    python tools/collect_env.py [--json]
"""
import argparse
import json

from backbones.engine.env import collect_env


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='print JSON')
    args = parser.parse_args(argv)
    env = collect_env()
    if args.json:
        print(json.dumps(env, indent=2, default=str))
    else:
        width = max(map(len, env))
        for key, value in env.items():
            print(f'{key:<{width}}  {value}')


if __name__ == '__main__':
    main()
