"""The toy datasets: exact layouts, exact masks, determinism, loadable by mmdet/mmseg."""
import filecmp
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from backbones.datasets.toy_data import CLASS_COLOURS, SHAPES, make_toy_data


def test_layout(toy_data):
    coco, ade = toy_data['coco'], toy_data['ade']
    for split in ('train', 'val'):
        ann = json.load(open(osp.join(coco, 'annotations', f'instances_{split}2017.json')))
        assert {'images', 'annotations', 'categories'} <= set(ann)
        for img in ann['images']:
            assert osp.isfile(osp.join(coco, f'{split}2017', img['file_name']))
    for split in ('training', 'validation'):
        images = sorted(os.listdir(osp.join(ade, 'images', split)))
        labels = sorted(os.listdir(osp.join(ade, 'annotations', split)))
        assert [i[:-4] for i in images] == [a[:-4] for a in labels] and images
        assert all(i.endswith('.jpg') for i in images) and all(a.endswith('.png') for a in labels)


def test_masks_are_exact(toy_data):
    """Pixels under each COCO mask have the class colour; boxes enclose the masks."""
    from pycocotools.coco import COCO
    coco = COCO(osp.join(toy_data['coco'], 'annotations', 'instances_train2017.json'))
    names = {c['id']: c['name'] for c in coco.loadCats(coco.getCatIds())}
    assert len(coco.getAnnIds()) > 8
    for ann in coco.loadAnns(coco.getAnnIds()):
        info = coco.loadImgs(ann['image_id'])[0]
        img = np.asarray(Image.open(osp.join(toy_data['coco'], 'train2017', info['file_name'])))
        mask = coco.annToMask(ann).astype(bool)
        assert mask.sum() == pytest.approx(ann['area'], abs=1)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann['bbox']
        assert xs.min() >= x - 1 and xs.max() <= x + w and ys.min() >= y - 1 and ys.max() <= y + h
        inner = mask.copy()
        inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        mean = img[inner].reshape(-1, 3).mean(0)
        assert np.abs(mean - CLASS_COLOURS[names[ann['category_id']]]).max() < 40


def test_ade_labels(toy_data):
    valid = {0, 1} | {label for _, _, label in SHAPES}
    folder = osp.join(toy_data['ade'], 'annotations', 'training')
    seen = set()
    for name in os.listdir(folder):
        seen |= set(np.unique(np.asarray(Image.open(osp.join(folder, name)))).tolist())
    assert seen <= valid and max(seen) <= 150
    assert {2, 3, 4} & seen and 0 in seen


def test_deterministic(tmp_path):
    a = make_toy_data(str(tmp_path / 'a'), num_train=3, num_val=2, seed=7)
    b = make_toy_data(str(tmp_path / 'b'), num_train=3, num_val=2, seed=7)
    c = make_toy_data(str(tmp_path / 'c'), num_train=3, num_val=2, seed=8)
    for key in ('coco', 'ade'):
        for root, _, files in os.walk(a[key]):
            for f in files:
                other = osp.join(b[key], osp.relpath(osp.join(root, f), a[key]))
                assert filecmp.cmp(osp.join(root, f), other, shallow=False)
    ann = 'annotations/instances_train2017.json'
    assert not filecmp.cmp(osp.join(a['coco'], ann), osp.join(c['coco'], ann), shallow=False)


def test_datasets_load_in_mmdet_and_mmseg(toy_data):
    from mmdet.datasets import CocoDataset
    from mmseg.datasets import ADE20KDataset
    det = CocoDataset(data_root=toy_data['coco'] + '/',
                      ann_file='annotations/instances_train2017.json',
                      data_prefix=dict(img='train2017/'),
                      metainfo=dict(classes=('rectangle', 'disc', 'triangle')), pipeline=[])
    assert len(det) == 8 and len(det[0]['instances']) >= 1
    seg = ADE20KDataset(data_root=toy_data['ade'],
                        data_prefix=dict(img_path='images/training',
                                         seg_map_path='annotations/training'),
                        pipeline=[])
    assert len(seg) == 8 and seg[0]['reduce_zero_label']


def test_toy_options_sample_fewer_rois_only_when_asked(toy_data):
    """Toy trainings sample TOY_RCNN_SAMPLES RoIs an image; other users keep the recipe's."""
    from mmengine.config import Config

    from backbones.datasets.toy_options import TOY_RCNN_SAMPLES, toy_cfg_options
    from backbones.engine.launch import REPO
    det = Config.fromfile(osp.join(REPO, 'det_configs',
                                   'mask-rcnn_mambaout-femto_fpn_8xb2-amp-1x_coco.py'))
    seg = Config.fromfile(osp.join(REPO, 'seg_configs',
                                   'upernet_mambaout-femto_8xb2-amp-160k_ade20k-512x512.py'))
    key = 'model.train_cfg.rcnn.sampler.num='
    assert det.model.train_cfg.rcnn.sampler.num != TOY_RCNN_SAMPLES
    asked = toy_cfg_options(det, toy_data['coco'], rcnn_samples=TOY_RCNN_SAMPLES)
    assert f'{key}{TOY_RCNN_SAMPLES}' in asked
    assert not any(o.startswith(key) for o in toy_cfg_options(det, toy_data['coco']))
    assert not any(o.startswith(key) for o in toy_cfg_options(
        seg, toy_data['ade'], rcnn_samples=TOY_RCNN_SAMPLES))
