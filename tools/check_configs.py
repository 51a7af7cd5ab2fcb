"""Build the model of every config in the repo and print what was built.

    python tools/check_configs.py [CONFIG_OR_DIR ...]   (default: det_configs seg_configs)

A config that does not load or whose model does not build is reported, and the command
exits non-zero after trying all of them.
"""
import argparse
import glob
import os.path as osp
import sys
import time

from _common import REPO, load_config


def find_configs(paths):
    found = []
    for path in paths:
        if osp.isdir(path):
            found += sorted(p for p in glob.glob(osp.join(path, '**', '*.py'), recursive=True)
                            if '_base_' not in p.split(osp.sep))
        elif osp.isfile(path):
            found.append(path)
        else:
            sys.exit(f'error: no such config or folder: {path}')
    return found


def build_model(path):
    from mmengine.registry import DefaultScope, MODELS
    cfg = load_config(path)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return cfg.default_scope, type(model).__name__, type(getattr(model, 'backbone', None)).__name__, params


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('paths', nargs='*', help='configs or folders of configs')
    args = parser.parse_args()
    paths = args.paths or [osp.join(REPO, 'det_configs'), osp.join(REPO, 'seg_configs')]
    configs = find_configs([p for p in paths if osp.exists(p)] or paths)
    failures = []
    for i, path in enumerate(configs, 1):
        start = time.time()
        try:
            scope, model, backbone, params = build_model(path)
        except Exception as err:  # noqa: BLE001 - report every broken config, then fail
            failures.append(path)
            print(f'[{i}/{len(configs)}] FAILED {osp.relpath(path, REPO)}: {type(err).__name__}: {err}')
            continue
        print(f'[{i}/{len(configs)}] {osp.relpath(path, REPO)}: {scope} {model} '
              f'(backbone {backbone}), {params:.1f}M params, built in {time.time() - start:.1f}s')
    print(f'built {len(configs) - len(failures)} of {len(configs)} configs')
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()
