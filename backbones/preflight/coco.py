"""COCO instances files: structure, ids, boxes, class names.

Each check counts every offending entry and names a few, so one run of the pre-flight
lists all that is wrong with a file. What mmdet / pycocotools do with each mistake, and
so why it is refused:

* duplicate image, annotation or category ids: pycocotools indexes by id, so a later entry
  silently replaces an earlier one (its boxes are lost from training or from the AP);
* an annotation naming an image or category that does not exist: dropped by mmdet;
* a box that is not four finite numbers, has a negative width or height, or lies wholly
  outside its image: dropped by mmdet without a word (an xyxy/xywh or scale mix-up);
* an empty ``annotations`` list: mmdet fails after the work dir exists ("need at least one
  array to concatenate"), and an evaluation has nothing to score.

Boxes under one pixel wide or high (or with ``area`` 0) are only reported as a warning:
mmdet ignores them in training as it always has (COCO itself has a few), and the
evaluation scores them as pycocotools does.
"""
import json
import math
from collections import Counter

__all__ = ['COCO_KEYS', 'load_coco', 'check_coco', 'check_coco_json']

COCO_KEYS = ('images', 'annotations', 'categories')
_IMAGE_KEYS = {'id', 'file_name', 'height', 'width'}
_ANN_KEYS = {'id', 'image_id', 'category_id', 'bbox'}


def load_coco(path):
    """``(data, problems)``: the parsed file, or None with the reason it is unusable."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, [f'{path}: not a readable JSON file ({err})']
    if not isinstance(data, dict):
        return None, [f'{path}: a COCO file holds a JSON object, this one holds a '
                      f'{type(data).__name__}']
    missing = [k for k in COCO_KEYS if not isinstance(data.get(k), list)]
    if missing:
        return None, [f'{path}: not a COCO instances file: no list under '
                      f'{", ".join(missing)} (top-level keys: {sorted(data)[:8]})']
    return data, []


def _examples(items, limit=3):
    items = [str(i) for i in items]
    return ', '.join(items[:limit]) + (', ...' if len(items) > limit else '')


def _duplicates(values):
    return sorted((v for v, n in Counter(values).items() if n > 1), key=str)


def _check_categories(path, cats):
    problems = []
    bad = [c for c in cats if not isinstance(c, dict) or 'id' not in c or 'name' not in c]
    if bad:
        problems.append(f'{path}: {len(bad)} categories lack "id"/"name", e.g. {bad[0]!r}')
    good = [c for c in cats if isinstance(c, dict) and 'id' in c and 'name' in c]
    for what in ('id', 'name'):
        dup = _duplicates(c[what] for c in good)
        if dup:
            problems.append(f'{path}: {len(dup)} category {what}s appear more than once: '
                            f'{_examples(dup)}')
    return problems


def _check_images(path, images):
    problems = []
    bad = [img for img in images if not isinstance(img, dict) or not _IMAGE_KEYS <= set(img)]
    if bad:
        problems.append(f'{path}: {len(bad)} image entries lack id/file_name/height/width, '
                        f'e.g. {str(bad[0])[:120]}')
    good = [img for img in images if isinstance(img, dict) and _IMAGE_KEYS <= set(img)]
    dup = _duplicates(img['id'] for img in good)
    if dup:
        problems.append(f'{path}: {len(dup)} image ids appear more than once (pycocotools '
                        f'keeps only the last entry of each): {_examples(dup)}')
    sizes = [img for img in good if not (_positive(img['width']) and _positive(img['height']))]
    if sizes:
        problems.append(f'{path}: {len(sizes)} images have a width or height that is not a '
                        f'positive number, e.g. {str(sizes[0])[:120]}')
    return problems, {img['id']: img for img in good}


def _positive(value):
    return _finite(value) and value > 0


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _box_fault(ann, img):
    """Why ``ann``'s box is refused (None if usable), and whether it is only degenerate."""
    box = ann['bbox']
    if not (isinstance(box, list) and len(box) == 4 and all(map(_finite, box))):
        return 'not four finite numbers', False
    x, y, w, h = box
    if w < 0 or h < 0:
        return 'negative width or height', False
    if img is not None and _positive(img['width']) and _positive(img['height']) and (
            x >= img['width'] or y >= img['height'] or x + w <= 0 or y + h <= 0):
        return 'outside its image', False
    if w < 1 or h < 1 or (_finite(ann.get('area', 1)) and ann.get('area', 1) <= 0):
        return 'under one pixel wide or high, or area 0', True
    return None, False


def _mask_fault(ann):
    """Why ``ann`` gives no mask to mmdet's LoadAnnotations(with_mask=True), or None."""
    seg = ann.get('segmentation')
    if not seg:
        return 'no segmentation (mmdet fails with KeyError: \'mask\' at the first batch)'
    if isinstance(seg, dict):
        return None if 'counts' in seg and 'size' in seg else 'an RLE without counts/size'
    if not isinstance(seg, list) or not any(
            isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg):
        return ('no polygon of at least 3 points (mmdet would ignore the object without a '
                'word)')
    return None


def _check_masks(path, anns):
    faults = {}
    for ann in anns:
        if ann.get('iscrowd'):
            continue
        why = _mask_fault(ann)
        if why:
            faults.setdefault(why, []).append(str(ann['id']))
    return [f'{path}: {len(ids)} of {len(anns)} annotations have {why}, but the pipeline '
            f'loads masks (LoadAnnotations with_mask=True, a Mask R-CNN): annotation ids '
            f'{_examples(ids)}' for why, ids in faults.items()]


def _check_annotations(path, anns, images, cat_ids, warnings):
    problems = []
    bad = [a for a in anns if not isinstance(a, dict) or not _ANN_KEYS <= set(a)]
    if bad:
        problems.append(f'{path}: {len(bad)} annotations lack id/image_id/category_id/bbox, '
                        f'e.g. {str(bad[0])[:120]}')
    good = [a for a in anns if isinstance(a, dict) and _ANN_KEYS <= set(a)]
    dup = _duplicates(a['id'] for a in good)
    if dup:
        problems.append(f'{path}: {len(dup)} annotation ids appear more than once '
                        f'(pycocotools keeps only the last of each): {_examples(dup)}')
    for what, known, key in (('category_id', cat_ids, 'a category'),
                             ('image_id', images, 'an image')):
        dangling = [a for a in good if a[what] not in known]
        if dangling:
            first = dangling[0]
            problems.append(f'{path}: {len(dangling)} annotations name {key} that does not '
                            f'exist, e.g. annotation {first["id"]} has {what} {first[what]}, '
                            f'which no {key.split()[1]} defines')
    faults, degenerate = {}, []
    for ann in good:
        why, minor = _box_fault(ann, images.get(ann['image_id']))
        if minor:
            degenerate.append(ann['id'])
        elif why:
            faults.setdefault(why, []).append(f'{ann["id"]} {ann["bbox"]}')
    for why, items in faults.items():
        problems.append(f'{path}: {len(items)} of {len(good)} boxes are {why} (mmdet would '
                        f'drop them silently); annotation id and bbox [x, y, w, h]: '
                        f'{_examples(items)} [--allow bad-boxes]')
    if degenerate and warnings is not None:
        warnings.append(f'{path}: {len(degenerate)} of {len(good)} boxes are under one pixel '
                        f'wide or high (or have area 0); mmdet ignores them in training, '
                        f'e.g. annotation ids {_examples(degenerate)}')
    return problems


def check_coco(data, path, classes=None, require_annotations=True, warnings=None,
               with_mask=False):
    """Problems with the parsed COCO file ``data`` (see the module docstring);
    ``with_mask``: the pipeline loads instance masks, so every object needs one."""
    problems = _check_categories(path, data['categories'])
    image_problems, images = _check_images(path, data['images'])
    problems += image_problems
    if not data['images']:
        problems.append(f'{path}: the "images" list is empty')
    if not data['annotations'] and require_annotations:
        problems.append(f'{path}: the "annotations" list is empty: nothing to train on or '
                        f'to score (mmdet would fail with "need at least one array to '
                        f'concatenate")')
    cat_ids = {c['id'] for c in data['categories'] if isinstance(c, dict) and 'id' in c}
    problems += _check_annotations(path, data['annotations'], images, cat_ids, warnings)
    if with_mask:
        problems += _check_masks(path, [a for a in data['annotations']
                                        if isinstance(a, dict) and _ANN_KEYS <= set(a)])
    names = {c.get('name') for c in data['categories'] if isinstance(c, dict)}
    if classes is not None and not problems:
        absent = [c for c in classes if c not in names]
        if absent:
            problems.append(
                f'{path}: category names do not match the config: {len(absent)} config '
                f'classes are not in the file ({", ".join(map(str, absent[:8]))}'
                f'{", ..." if len(absent) > 8 else ""}); the file has '
                f'{sorted(map(str, names))[:8]}{" ..." if len(names) > 8 else ""}. '
                f'Set metainfo.classes to the dataset\'s names.')
    return problems


def check_coco_json(path, classes=None, require_annotations=True, warnings=None):
    """Problems with a COCO instances file (empty list when it is usable)."""
    data, problems = load_coco(path)
    if data is None:
        return problems
    return check_coco(data, path, classes, require_annotations, warnings)
