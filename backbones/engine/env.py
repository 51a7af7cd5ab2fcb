"""The environment report: versions, compiled mmcv ops, CUDA/GPUs, selective-scan backends,
whether Triton kernels compile here (``tools/collect_env.py``; every ``env.json`` of a run)."""
import importlib
import os.path as osp
import platform
import sys

PACKAGES = ('torch', 'torchvision', 'triton', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'timm',
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
    """The backends that run on this machine's default device (a GPU if there is one)."""
    try:
        import torch

        from ..ops import available_backends
        return available_backends('cuda' if torch.cuda.is_available() else 'cpu')
    except Exception as err:  # noqa: BLE001
        return f'unknown ({type(err).__name__}: {err})'


def _triton_kernels():
    """Whether the triton scan backend's kernels compile and run here: a tiny forward +
    backward on the current GPU, checked against the torch backend."""
    try:
        import torch

        from ..ops import scan_triton
        if scan_triton.unavailable() is not None:
            return f'NOT available ({scan_triton.unavailable()})'
        if scan_triton.interpreting():
            return 'interpreter (TRITON_INTERPRET=1): CPU tensors only'
        if not torch.cuda.is_available():
            return 'no CUDA device (interpreter only)'
        why = scan_triton.probe(torch.device('cuda', torch.cuda.current_device()))
        return f'compile and run on {torch.cuda.get_device_name()}' if why is None \
            else f'FAIL: {why}'
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
    env['triton_kernels'] = _triton_kernels()
    return env
