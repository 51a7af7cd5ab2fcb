"""Segmentation datasets (ADE20K layout): every image has a label map of its own size,
with labels the model can take.

mmseg pairs ``img_dir/NAME<img_suffix>`` with ``ann_dir/NAME<seg_map_suffix>``. A label
map of another size than its image is resized by the training pipeline on its own (so the
model learns misaligned labels, silently), and crashes the IoU metric at the first
validation; a missing one fails when the sampler draws it. An out-of-range label (e.g.
ADE20K > 150) fails hours into a run, or is trained on as a wrong class.
"""
import os
import os.path as osp

from .images import map_files, probe_image, summarise_probes

__all__ = ['SEG_MASK_SUFFIXES', 'check_seg_labels', 'check_seg_pairs', 'valid_labels']

SEG_MASK_SUFFIXES = ('.png',)


def _files(folder, suffix):
    """Paths below ``folder`` relative to it that end with ``suffix`` (as mmseg lists)."""
    return sorted(osp.relpath(osp.join(root, f), folder) for root, _, names in os.walk(folder)
                  for f in names if f.endswith(suffix))


def _read_label(path):
    """``(shape, set of values)``; values None if unreadable, -1 for a colour image."""
    import cv2
    import numpy as np
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if mask is None:
        return None, None
    if mask.ndim == 3:
        return mask.shape[:2], -1
    return mask.shape, set(np.unique(mask).tolist())


def valid_labels(num_classes, reduce_zero_label, ignore_index=255):
    """Raw label values a label map may hold for a model of ``num_classes`` classes."""
    # raw labels: 1..C are classes and 0 "other" when reduce_zero_label, else 0..C-1
    valid = set(range(1, num_classes + 1) if reduce_zero_label else range(num_classes))
    return valid | ({0, ignore_index} if reduce_zero_label else {ignore_index})


def _label_problems(results, where, num_classes, reduce_zero_label, ignore_index):
    """``results``: ``[(path, shape, values)]`` of label maps read."""
    valid = valid_labels(num_classes, reduce_zero_label, ignore_index)
    unreadable = [p for p, _, v in results if v is None]
    colour = [p for p, _, v in results if v == -1]
    bad = [(p, sorted(v - valid)) for p, _, v in results
           if isinstance(v, set) and v - valid]
    problems = []
    if unreadable:
        problems.append(f'{len(unreadable)} label maps cannot be read, e.g. {unreadable[0]}')
    if colour:
        problems.append(f'{len(colour)} label maps are colour images, not label indices, '
                        f'e.g. {colour[0]}')
    if bad:
        hint = (f'raw labels must be 1..{num_classes} (0 = other, {ignore_index} = ignore) '
                f'with reduce_zero_label' if reduce_zero_label else
                f'labels must be 0..{num_classes - 1} or {ignore_index}')
        examples = '; '.join(f'{osp.basename(p)}: {v[:5]}' for p, v in bad[:3])
        problems.append(f'{len(bad)} of {len(results)} label maps in {where} hold labels the '
                        f'model ({num_classes} classes) cannot take ({hint}): {examples}')
    return problems


def check_seg_labels(ann_dir, num_classes, reduce_zero_label, ignore_index=255,
                     progress=True):
    """Problems with the label maps (*.png) below ``ann_dir`` whose values the model
    cannot take."""
    names = _files(ann_dir, SEG_MASK_SUFFIXES)
    if not names:
        return [f'{ann_dir}: no label maps (*.png) found']
    paths = [osp.join(ann_dir, n) for n in names]
    results = map_files(lambda p: (p, *_read_label(p)), paths,
                        f'checking labels in {ann_dir}', progress)
    return _label_problems(results, ann_dir, num_classes, reduce_zero_label, ignore_index)


def _pair(img_path, ann_path, full):
    """Probe of the image, and the label map's shape and values."""
    probe = probe_image(img_path, full)
    if not osp.isfile(ann_path):
        return probe, (ann_path, None, 'missing')
    return probe, (ann_path, *_read_label(ann_path))


def check_seg_pairs(img_dir, ann_dir, img_suffix, seg_map_suffix, num_classes,
                    reduce_zero_label, ignore_index=255, full=False, progress=True,
                    warnings=None):
    """Problems of a folder-listed seg dataset: images that are missing their label map,
    unreadable, or of another size than it, and labels out of range."""
    names = _files(img_dir, img_suffix)
    if not names:
        return [f'{img_dir}: no images (*{img_suffix}) found']
    stems = [n[:-len(img_suffix)] for n in names]
    pairs = map_files(
        lambda s: _pair(osp.join(img_dir, s + img_suffix),
                        osp.join(ann_dir, s + seg_map_suffix), full),
        stems, f'checking images and labels in {osp.dirname(img_dir)}', progress)
    problems = summarise_probes([probe for probe, _ in pairs], img_dir)
    no_label = [p for _, (p, _, v) in pairs if v == 'missing']
    if no_label:
        problems.append(f'{ann_dir}: {len(no_label)} of {len(pairs)} images have no label '
                        f'map, e.g. {no_label[0]}')
    labels = [label for _, label in pairs if label[2] != 'missing']
    problems += _label_problems(labels, ann_dir, num_classes, reduce_zero_label, ignore_index)
    wrong = [f'{osp.basename(img)} is {size[0]}x{size[1]}, its label map '
             f'{shape[1]}x{shape[0]}'
             for (img, size, why), (_, shape, _) in pairs
             if why is None and shape is not None and tuple(size) != (shape[1], shape[0])]
    if wrong:
        problems.append(f'{ann_dir}: {len(wrong)} of {len(pairs)} label maps differ in size '
                        f'from their image (width x height; the pipeline would resize them '
                        f'out of alignment): {"; ".join(wrong[:3])}'
                        f'{"; ..." if len(wrong) > 3 else ""}')
    orphans = len(_files(ann_dir, seg_map_suffix)) - len(labels)
    if orphans > 0 and warnings is not None:
        warnings.append(f'{ann_dir}: {orphans} label maps have no image in {img_dir} '
                        f'(mmseg lists the images, so they are not used)')
    return problems
