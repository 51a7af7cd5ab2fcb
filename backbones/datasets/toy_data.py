"""Small, learnable COCO and ADE20K look-alike datasets for CPU runs.

``tools/make_toy_data.py`` is the command line. :func:`make_toy_data` writes, in the exact
layouts mmdet / mmseg expect:

    OUT/coco/annotations/instances_{train,val}2017.json   OUT/coco/{train,val}2017/*.jpg
    OUT/ade/ADEChallengeData2016/images/{training,validation}/*.jpg
    OUT/ade/ADEChallengeData2016/annotations/{training,validation}/*.png

Images hold rectangles, discs and triangles on a textured background. Each shape is drawn
from the same polygon that is written as its COCO segmentation (or painted into the ADE20K
label map), so masks are exact. Colour ranges depend on the class, so a detector can learn
the task in a few hundred iterations. Seeded and deterministic; existing output is replaced
only once the new one is complete.
"""
import json
import math
import os
import os.path as osp
import shutil
import tempfile

import numpy as np
from PIL import Image, ImageDraw

#: (name, COCO category id, ADE20K label). ADE20K label 0 is "ignore", 1 is the background.
SHAPES = (('rectangle', 1, 2), ('disc', 2, 3), ('triangle', 3, 4))
COCO_CLASSES = tuple(name for name, _, _ in SHAPES)
ADE_BACKGROUND = 1
# Base RGB colour per class; jittered per shape.
CLASS_COLOURS = {'rectangle': (220, 60, 50), 'disc': (50, 200, 70), 'triangle': (60, 80, 220)}


def shape_polygon(kind, cx, cy, r, rng):
    """Vertices of a toy shape of ``kind`` centred at (cx, cy) with radius ``r``."""
    if kind == 'rectangle':
        w, h = r * rng.uniform(0.7, 1.0), r * rng.uniform(0.5, 1.0)
        return [(cx - w, cy - h), (cx + w, cy - h), (cx + w, cy + h), (cx - w, cy + h)]
    if kind == 'disc':
        return [(cx + r * math.cos(2 * math.pi * k / 32), cy + r * math.sin(2 * math.pi * k / 32))
                for k in range(32)]
    phase = rng.uniform(0, 2 * math.pi)
    return [(cx + r * math.cos(phase + 2 * math.pi * k / 3),
             cy + r * math.sin(phase + 2 * math.pi * k / 3)) for k in range(3)]


def _background(h, w, rng):
    base = rng.integers(90, 170, size=3)
    yy, xx = np.mgrid[0:h, 0:w]
    grad = (xx / max(w - 1, 1) * rng.uniform(-30, 30) + yy / max(h - 1, 1) * rng.uniform(-30, 30))
    noise = rng.normal(0, 8, size=(h, w, 3))
    img = base[None, None, :] + grad[..., None] + noise
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _shape_colour(kind, rng):
    colour = np.array(CLASS_COLOURS[kind]) + rng.integers(-25, 26, size=3)
    return tuple(int(c) for c in np.clip(colour, 0, 255))


def make_image(rng, size_range=(96, 160), max_shapes=4):
    """One image and its shapes: [(kind, polygon)], non-overlapping."""
    h, w = (int(rng.integers(*size_range)) for _ in range(2))
    img = _background(h, w, rng)
    draw = ImageDraw.Draw(img)
    shapes, boxes = [], []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _attempt in range(20):
            r = float(rng.uniform(10, min(h, w) / 4))
            cx, cy = float(rng.uniform(r + 2, w - r - 2)), float(rng.uniform(r + 2, h - r - 2))
            box = (cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2)
            if all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in boxes):
                break
        else:
            continue
        kind = COCO_CLASSES[int(rng.integers(len(COCO_CLASSES)))]
        poly = [(round(x, 1), round(y, 1)) for x, y in shape_polygon(kind, cx, cy, r, rng)]
        draw.polygon(poly, fill=_shape_colour(kind, rng))
        shapes.append((kind, poly))
        boxes.append(box)
    return img, shapes


def _coco_split(root, split, num, rng):
    from pycocotools import mask as mask_utils
    img_dir = osp.join(root, f'{split}2017')
    os.makedirs(img_dir)
    images, annotations = [], []
    cat_id = {name: cid for name, cid, _ in SHAPES}
    for i in range(num):
        img, shapes = make_image(rng)
        file_name = f'{i + 1:012d}.jpg'
        img.save(osp.join(img_dir, file_name), quality=95)
        images.append(dict(id=i + 1, file_name=file_name, height=img.height, width=img.width))
        for kind, poly in shapes:
            flat = [float(c) for xy in poly for c in xy]
            rle = mask_utils.merge(mask_utils.frPyObjects([flat], img.height, img.width))
            x, y, bw, bh = mask_utils.toBbox(rle).tolist()
            annotations.append(dict(
                id=len(annotations) + 1, image_id=i + 1, category_id=cat_id[kind],
                segmentation=[flat], area=float(mask_utils.area(rle)),
                bbox=[x, y, bw, bh], iscrowd=0))
    categories = [dict(id=cid, name=name, supercategory='shape') for name, cid, _ in SHAPES]
    with open(osp.join(root, 'annotations', f'instances_{split}2017.json'), 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories,
                       info=dict(description='toy shapes (tools/make_toy_data.py)'),
                       licenses=[]), f)
    return len(annotations)


def _ade_split(root, split, num, rng):
    prefix = 'ADE_train' if split == 'training' else 'ADE_val'
    img_dir, ann_dir = osp.join(root, 'images', split), osp.join(root, 'annotations', split)
    os.makedirs(img_dir)
    os.makedirs(ann_dir)
    label_of = {name: label for name, _, label in SHAPES}
    for i in range(num):
        img, shapes = make_image(rng)
        seg = Image.new('L', img.size, ADE_BACKGROUND)
        draw = ImageDraw.Draw(seg)
        for kind, poly in shapes:
            draw.polygon(poly, fill=label_of[kind])
        seg_np = np.array(seg)
        seg_np[:2, :] = 0  # a strip of "other/ignore" pixels, as in real ADE20K
        name = f'{prefix}_{i + 1:08d}'
        img.save(osp.join(img_dir, name + '.jpg'), quality=95)
        Image.fromarray(seg_np).save(osp.join(ann_dir, name + '.png'))


def make_toy_data(out, num_train=64, num_val=16, seed=0):
    """Write both datasets under ``out`` (atomically per dataset). Returns their roots."""
    os.makedirs(out, exist_ok=True)
    roots = {}
    for name, builder in (('coco', _build_coco), ('ade', _build_ade)):
        final = osp.join(out, name)
        tmp = tempfile.mkdtemp(prefix=f'.{name}-', dir=out)
        try:
            builder(tmp, num_train, num_val, np.random.default_rng([seed, len(name)]))
            if osp.exists(final):
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if osp.exists(tmp):
                shutil.rmtree(tmp)
        roots[name] = final if name == 'coco' else osp.join(final, 'ADEChallengeData2016')
    return roots


#: Written into each toy dataset root, so results from it are always labelled "toy".
TOY_MARKER = 'TOY_DATASET'


def _mark_toy(root):
    with open(osp.join(root, TOY_MARKER), 'w') as f:
        f.write('generated by tools/make_toy_data.py; not COCO / ADE20K\n')


def _build_coco(root, num_train, num_val, rng):
    os.makedirs(osp.join(root, 'annotations'))
    _mark_toy(root)
    _coco_split(root, 'train', num_train, rng)
    _coco_split(root, 'val', num_val, rng)


def _build_ade(root, num_train, num_val, rng):
    ade = osp.join(root, 'ADEChallengeData2016')
    os.makedirs(ade)
    _mark_toy(ade)
    _ade_split(ade, 'training', num_train, rng)
    _ade_split(ade, 'validation', num_val, rng)
