"""MambaOut / VMamba dense-prediction backbones as mmdet + mmseg plugins.

Importing this package (configs do it through ``custom_imports``) does exactly this:

* registers the backbones (``MambaOut``, ``VMamba``, ``TimmBackbone``) into the MODELS
  registry of mmdet and/or mmseg, ``FastCocoMetric`` into mmdet's METRICS, the training
  hooks into mmengine's HOOKS and the ``atomic_local`` file backend into mmengine's fileio;
* applies the documented runtime fixes of :mod:`backbones.engine.runtime` (checkpoint
  allow-list, model-index cache, the CPU DDP wrapper).

Layout: ``models`` (one file per architecture, their base class and registry), ``layers``
(layers two or more families share), ``ops`` (selective scan, scan routes), ``engine``,
``evaluation``, ``datasets``, ``preflight``, ``analysis``, ``results`` and ``benchmarks``;
``metadata`` reads ``results/backbones.csv``.
"""
import warnings

# mmengine imports pkg_resources (hence setuptools<81); its deprecation notice is noise here.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

from .engine.runtime import allow_mmengine_checkpoints, cache_package_model_index  # noqa: E402

allow_mmengine_checkpoints()
cache_package_model_index()

from .engine import fileio, hooks  # noqa: E402,F401  (atomic_local backend; HOOKS)
from .evaluation.coco_metric import FastCocoMetric  # noqa: E402,F401  (mmdet's METRICS)
from .models import *  # noqa: E402,F401,F403  (every backbone, registered)
