"""MambaOut / VMamba dense-prediction backbones as mmdet + mmseg plugins.

Importing this package (configs do it through ``custom_imports``) registers every backbone
into the MODELS registry of mmdet and/or mmseg and applies the runtime fixes the pinned
stack needs on current torch (see :mod:`backbones.runtime`).
"""
from .runtime import allow_mmengine_checkpoints, cache_package_model_index

allow_mmengine_checkpoints()
cache_package_model_index()

from .mambaout import *  # noqa: E402,F401,F403
from .vmamba import *  # noqa: E402,F401,F403
from .timm_backbone import *  # noqa: E402,F401,F403
from . import checkpoint, hooks  # noqa: E402,F401  (atomic_local file backend; HOOKS)
from .coco_metric import FastCocoMetric  # noqa: E402,F401  (mmdet's METRICS)
