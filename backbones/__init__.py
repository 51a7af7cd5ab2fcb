"""MambaOut / VMamba dense-prediction backbones as mmdet + mmseg plugins.

Importing this package (configs do it through ``custom_imports``) does exactly this:

* registers the backbones (``MambaOut``, ``VMamba``, ``TimmBackbone``) into the MODELS
  registry of mmdet and/or mmseg, ``FastCocoMetric`` into mmdet's METRICS, the training
  hooks into mmengine's HOOKS and the ``atomic_local`` file backend into mmengine's fileio;
* applies the documented runtime fixes of :mod:`backbones.engine.runtime` (checkpoint
  allow-list, model-index cache, the CPU DDP wrapper).

On a bare GPU machine (torch, triton and timm; no mmengine, which needs ``rich``, no mmcv
or ``cv2``) the import says so in one warning and provides the models and ops only.

Layout: ``models`` (one file per architecture, their base class and registry), ``layers``
(layers two or more families share), ``ops`` (selective scan, scan routes), ``engine``,
``evaluation``, ``datasets``, ``preflight``, ``analysis``, ``results`` and ``benchmarks``;
``metadata`` reads ``results/backbones.csv``.
"""
import warnings

# mmengine imports pkg_resources (hence setuptools<81); its deprecation notice is noise here.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

try:
    from .engine.runtime import allow_mmengine_checkpoints, cache_package_model_index
    allow_mmengine_checkpoints()
    cache_package_model_index()
    from .engine import fileio, hooks  # noqa: F401  (atomic_local backend; HOOKS)
    from .evaluation.coco_metric import FastCocoMetric  # noqa: F401  (mmdet's METRICS)
except ModuleNotFoundError as _err:
    # a bare GPU machine (torch, triton, timm): models and ops work without the mm stack
    # (mmengine needs rich; mmcv, cv2); a package present but broken still raises
    if (_err.name or '').split('.')[0] not in ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'rich',
                                               'cv2'):
        raise
    warnings.warn(f'backbones: {_err.name} is not installed: models and ops only (no '
                  f'runtime fixes, hooks or metrics)', stacklevel=2)
from .models import *  # noqa: E402,F401,F403  (every backbone, registered)
