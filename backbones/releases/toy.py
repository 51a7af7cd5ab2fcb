"""The toy datasets as a release checkpoint sees them: a pipeline check on a CPU.

A released detector predicts COCO's 80 classes and a released segmentor ADE20K's 150, so its
heads must not be cut to the toy classes. The toy ADE20K set already uses ADE20K's label
range; for the toy COCO set :func:`coco80_toy` writes a copy of its validation annotations
whose categories are COCO's 80 (the toy shapes become the first three, ids 1-3 as before),
next to the same images. :func:`release_toy_options` then points a config at them at CPU scale
without touching the class count. The numbers mean nothing; that the checkpoint converts,
loads, runs and is scored does.
"""
import json
import os
import os.path as osp
import shutil

from ..datasets.toy_data import TOY_MARKER
from ..datasets.toy_options import toy_cfg_options

__all__ = ['coco80_toy', 'release_toy_options', 'COCO_IDS']

#: COCO's category ids of its 80 classes, in mmdet's class order
COCO_IDS = (list(range(1, 12)) + list(range(13, 26)) + [27, 28] + list(range(31, 45))
            + list(range(46, 66)) + [67, 70] + list(range(72, 83)) + list(range(84, 91)))


def coco80_toy(toy_coco, out):
    """``out``: the toy COCO validation split with COCO's 80 categories; returns ``out``."""
    from mmdet.datasets import CocoDataset
    names = CocoDataset.METAINFO['classes']
    assert len(names) == len(COCO_IDS) == 80
    with open(osp.join(toy_coco, 'annotations', 'instances_val2017.json')) as f:
        ann = json.load(f)
    toy_ids = sorted(c['id'] for c in ann['categories'])
    if toy_ids != COCO_IDS[:len(toy_ids)]:
        raise ValueError(f'{toy_coco}: toy category ids {toy_ids} are not COCO\'s first ids')
    ann['categories'] = [dict(id=i, name=n, supercategory='') for i, n in zip(COCO_IDS, names)]
    os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
    with open(osp.join(out, 'annotations', 'instances_val2017.json'), 'w') as f:
        json.dump(ann, f)
    images = osp.join(out, 'val2017')
    if not osp.exists(images):
        os.symlink(osp.abspath(osp.join(toy_coco, 'val2017')), images)
    shutil.copy(osp.join(toy_coco, TOY_MARKER), osp.join(out, TOY_MARKER))
    return out


def release_toy_options(cfg, data_root, scale=128):
    """``--cfg-options`` running ``cfg`` on a toy set at about ``scale`` pixels, keeping the
    config's classes (toy_cfg_options' loader, path and scale settings without its class
    settings)."""
    return [opt for opt in toy_cfg_options(cfg, data_root, scale=scale)
            if '.metainfo.classes=' not in opt and '.num_classes=' not in opt]
