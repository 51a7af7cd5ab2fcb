"""``FastCocoMetric``: mmdet's ``CocoMetric`` on faster-coco-eval, pycocotools as the fallback.

faster-coco-eval reimplements pycocotools' ``COCO`` / ``COCOeval`` with the per-image
matching and the accumulation in C++; its stats equal pycocotools' (checked by
``tools/benchmark.py coco`` and ``tests/test_benchmark.py``). Everything else (result
conversion, metric names, classwise tables, ``format_only``) is mmdet's own code: while
this metric loads annotations or evaluates, the ``COCO`` / ``COCOeval`` names that mmdet's
``coco_metric`` module uses point at faster-coco-eval's classes. When faster-coco-eval is
not importable, or ``backend='pycocotools'`` is asked for, mmdet's pycocotools path runs,
and the log says so once.

With either backend, the result files are written with json's C encoder: mmengine's
``dump`` streams through ``json.dump``, whose pure-Python encoder took as long as the whole
faster-coco-eval evaluation (``results/benchmarks/coco.json``). Same JSON text.
"""
import json
import logging
import os.path as osp
from contextlib import contextmanager
from functools import partial

from ..engine.log import log_once

__all__ = ['FastCocoMetric', 'coco_backend', 'COCO_BACKENDS']

COCO_BACKENDS = ('auto', 'faster_coco_eval', 'pycocotools')


def _faster_classes():
    """faster-coco-eval's (COCO, COCOeval), or None when it does not import."""
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except Exception:  # noqa: BLE001 - a broken install must fall back, not crash the eval
        return None
    return COCO, COCOeval_faster


def coco_backend(requested='auto'):
    """The COCO evaluation backend that runs for ``requested``; logs the choice once."""
    if requested not in COCO_BACKENDS:
        raise ValueError(f'unknown COCO backend {requested!r}; valid: {COCO_BACKENDS}')
    if requested == 'pycocotools':
        return 'pycocotools'
    if _faster_classes() is None:
        level = logging.WARNING if requested == 'faster_coco_eval' else logging.INFO
        log_once('FastCocoMetric: faster-coco-eval is not importable; evaluating with '
                  'pycocotools (slower, same numbers)', level)
        return 'pycocotools'
    return 'faster_coco_eval'


def _dump(obj, file=None, file_format=None, **kwargs):
    """mmengine's ``dump``; a local ``.json`` path goes through ``json.dumps`` (C encoder)."""
    from mmengine.fileio import dump
    if isinstance(file, str) and file.endswith('.json') and not kwargs \
            and file_format in (None, 'json') and osp.isdir(osp.dirname(file) or '.'):
        from mmengine.fileio.handlers.json_handler import set_default
        with open(file, 'w') as f:
            f.write(json.dumps(obj, default=set_default))
        return None
    return dump(obj, file, file_format, **kwargs)


def _register(cls):
    # mmdet is optional for the package (mmseg-only installs): register when it is there
    try:
        from mmdet.registry import METRICS
    except ImportError:  # pragma: no cover - the suite installs mmdet
        return cls
    return METRICS.register_module()(cls)


try:
    from mmdet.evaluation.metrics import coco_metric as _mmdet_coco_metric
    from mmdet.evaluation.metrics.coco_metric import CocoMetric as _Base
except ImportError:  # pragma: no cover
    _mmdet_coco_metric, _Base = None, object


@_register
class FastCocoMetric(_Base):
    """mmdet's ``CocoMetric`` with ``backend='auto' | 'faster_coco_eval' | 'pycocotools'``.

    ``iou_workers``: threads faster-coco-eval computes mask IoUs with (None: its default,
    up to 8 on as many cores; 1 is fastest on a small shared machine).
    """

    def __init__(self, *args, backend='auto', iou_workers=None, **kwargs):
        self.backend = coco_backend(backend)
        if iou_workers is not None and (not isinstance(iou_workers, int) or iou_workers < 1):
            raise ValueError(f'iou_workers must be a positive int or None, got {iou_workers!r}')
        self.iou_workers = iou_workers
        with self._api():
            super().__init__(*args, **kwargs)  # loads ann_file with the chosen COCO class

    @contextmanager
    def _api(self):
        # mmdet's module globals, swapped only for the duration of our calls: listed in
        # backbones/engine/mmengine_api.py with the other private APIs
        module = _mmdet_coco_metric
        saved = module.COCO, module.COCOeval, module.dump
        if self.backend == 'faster_coco_eval':
            module.COCO, module.COCOeval = _faster_classes()
            if self.iou_workers is not None:
                module.COCOeval = partial(module.COCOeval, rle_iou_max_workers=self.iou_workers)
        module.dump = _dump
        try:
            yield
        finally:
            module.COCO, module.COCOeval, module.dump = saved

    def compute_metrics(self, results):
        log_once(f'FastCocoMetric: COCO evaluation with {self.backend}')
        with self._api():
            return super().compute_metrics(results)
