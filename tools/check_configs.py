"""Build the model of every config in the repo and print what was built.

    python tools/check_configs.py [CONFIG_OR_DIR ...]   (default: det_configs seg_configs)

A config that does not load or whose model does not build is reported, and the command
exits non-zero after trying all of them.
"""
import argparse
import os.path as osp
import sys
import time

from backbones.analysis.complexity import CONFIG_DIRS
from backbones.engine.launch import REPO, build_model, find_configs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('paths', nargs='*', help='configs or folders of configs')
    args = parser.parse_args(argv)
    configs = find_configs(args.paths or CONFIG_DIRS)
    failures = []
    for i, path in enumerate(configs, 1):
        start, name = time.time(), osp.relpath(path, REPO)
        try:
            cfg, model = build_model(path)
        except Exception as err:  # noqa: BLE001 - report every broken config, then fail
            failures.append(path)
            print(f'[{i}/{len(configs)}] FAILED {name}: {type(err).__name__}: {err}')
            continue
        params = sum(p.numel() for p in model.parameters()) / 1e6
        backbone = type(getattr(model, 'backbone', None)).__name__
        print(f'[{i}/{len(configs)}] {name}: {cfg.default_scope} {type(model).__name__} '
              f'(backbone {backbone}), {params:.1f}M params, built in '
              f'{time.time() - start:.1f}s')
    print(f'built {len(configs) - len(failures)} of {len(configs)} configs')
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()
