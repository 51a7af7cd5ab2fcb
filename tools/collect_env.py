"""Print the environment: versions, compiled mmcv ops, CUDA/GPUs, selective-scan backends.

    python tools/collect_env.py [--json]
"""
import argparse
import importlib
import json
import os.path as osp
import platform
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

PACKAGES = ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'timm',
            'pycocotools', 'faster_coco_eval', 'numpy', 'cv2')


DISTRIBUTIONS = {'mmseg': 'mmsegmentation', 'cv2': 'opencv-python'}


def _version(name):
    try:
        module = importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 - an env report must not crash
        return f'not importable ({type(err).__name__}: {err})'
    version = getattr(module, '__version__', None)
    if version is None:
        from importlib import metadata
        try:
            version = metadata.version(DISTRIBUTIONS.get(name, name))
        except metadata.PackageNotFoundError:
            version = 'unknown'
    return version


def _mmcv_ops():
    try:
        from mmcv.ops import nms  # noqa: F401  (needs the compiled extension)
        from mmcv.utils import ext_loader
        ext = ext_loader.load_ext('_ext', ['nms'])
        return f'compiled ({osp.basename(ext.__file__)})'
    except Exception as err:  # noqa: BLE001
        return f'NOT available ({type(err).__name__}: {err})'


def _scan_backends():
    try:
        from backbones.selective_scan import available_backends
        return available_backends()
    except Exception as err:  # noqa: BLE001
        return f'unknown ({type(err).__name__}: {err})'


def collect_env():
    import torch
    env = {'python': sys.version.split()[0], 'platform': platform.platform()}
    env.update({name: _version(name) for name in PACKAGES})
    env['mmcv_ops'] = _mmcv_ops()
    env['torch_cuda_build'] = torch.version.cuda or 'cpu'
    env['cuda_available'] = torch.cuda.is_available()
    env['gpus'] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    env['cpu_threads'] = torch.get_num_threads()
    env['selective_scan_backends'] = _scan_backends()
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='print JSON')
    args = parser.parse_args()
    env = collect_env()
    if args.json:
        print(json.dumps(env, indent=2, default=str))
    else:
        width = max(map(len, env))
        for key, value in env.items():
            print(f'{key:<{width}}  {value}')


if __name__ == '__main__':
    main()
