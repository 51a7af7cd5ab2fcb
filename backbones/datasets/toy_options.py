"""Point a full-size det/seg config at the toy datasets, at CPU scale, via --cfg-options.

The toy datasets (:mod:`backbones.datasets.toy_data`) have the COCO / ADE20K layouts, so the recipe
stays as it is; only paths, class names, input scale and loader workers change. The
result is a list of ``key=value`` strings for ``tools/train.py --cfg-options``, so tests
and the main job go through the same command line a user would.
"""
from .toy_data import COCO_CLASSES as TOY_COCO_CLASSES
from .walk import innermost_dataset

__all__ = ['toy_cfg_options', 'TOY_COCO_CLASSES', 'TOY_RCNN_SAMPLES']
# RoIs a toy training image samples for the R-CNN heads (recipe: 512). A toy image holds a
# few objects; a CPU step of MambaOut-Femto Mask R-CNN at batch 4, 96x128 takes 3.2 s with
# 128 instead of 5.6 s, and the toy main job still learns (box AP50 61.3, 58.2 with 512).
TOY_RCNN_SAMPLES = 128
_RESIZES = ('Resize', 'RandomResize', 'RandomChoiceResize')


def _fmt(value):
    if isinstance(value, (tuple, list)):
        inner = ','.join(_fmt(v) for v in value)
        return f'({inner})' if isinstance(value, tuple) else f'[{inner}]'
    return str(value)


def _num_classes_paths(node, path='model'):
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f'{path}.{key}'
            if key == 'num_classes':
                yield sub
            else:
                yield from _num_classes_paths(value, sub)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _num_classes_paths(value, f'{path}.{i}')


def toy_cfg_options(cfg, data_root, scale=256, batch_size=2, rcnn_samples=None):
    """Overrides that run ``cfg`` on the toy data with inputs of about ``scale`` pixels.

    ``data_root``: ``.../toy/coco`` for detection, ``.../toy/ade/ADEChallengeData2016``
    for segmentation. ``rcnn_samples``: RoIs a training image samples for a detector's R-CNN
    heads (``TOY_RCNN_SAMPLES`` for toy trainings; None keeps the recipe's). Returns
    ``['key=value', ...]``.
    """
    task = cfg.get('default_scope')
    if task not in ('mmdet', 'mmseg'):
        raise ValueError(f"toy data supports mmdet and mmseg configs, got scope {task!r}")
    data_root = str(data_root).rstrip('/') + '/'
    opts = {}
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if loader is None:
            continue
        opts[f'{split}_dataloader.num_workers'] = 0
        opts[f'{split}_dataloader.persistent_workers'] = False
        if split == 'train':
            opts['train_dataloader.batch_size'] = batch_size
        path, dataset = innermost_dataset(loader, f'{split}_dataloader')
        opts[f'{path}.data_root'] = data_root
        if task == 'mmdet':
            opts[f'{path}.metainfo.classes'] = TOY_COCO_CLASSES
        for i, step in enumerate(dataset.get('pipeline', [])):
            kind = step.get('type')
            if kind in _RESIZES and 'scale' in step:
                opts[f'{path}.pipeline.{i}.scale'] = (scale * 2, scale) if task == 'mmseg' \
                    else (scale * 5 // 3, scale)
            elif kind == 'RandomCrop':
                opts[f'{path}.pipeline.{i}.crop_size'] = (scale, scale)
    if task == 'mmdet':
        for split in ('val', 'test'):
            if f'{split}_evaluator' in cfg:
                opts[f'{split}_evaluator.ann_file'] = \
                    data_root + 'annotations/instances_val2017.json'
        for path in _num_classes_paths(cfg.model):
            opts[path] = len(TOY_COCO_CLASSES)
        if rcnn_samples is not None:
            opts['model.train_cfg.rcnn.sampler.num'] = rcnn_samples
    else:
        if cfg.model.get('data_preprocessor', {}).get('size') is not None:
            opts['model.data_preprocessor.size'] = (scale, scale)
    return [f'{key}={_fmt(value)}' for key, value in opts.items()]
