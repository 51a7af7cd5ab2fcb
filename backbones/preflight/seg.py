"""Segmentation datasets (ADE20K layout): every image has a label map of its own size,
with labels the model can take.

mmseg pairs ``img_dir/NAME<img_suffix>`` with ``ann_dir/NAME<seg_map_suffix>``. A label
map of another size than its image is resized by the training pipeline on its own (so the
model learns misaligned labels, silently), and crashes the IoU metric at the first
validation; a missing one fails when the sampler draws it. An out-of-range label (e.g.
ADE20K > 150) fails hours into a run, or is trained on as a wrong class.

Label maps are read exactly as mmseg's ``LoadAnnotations`` reads them (``mmcv.imfrombytes``
``'unchanged'`` with its ``imdecode_backend``, pillow by default, then squeezed): a palette
PNG gives its indices, a 1-bit PNG 0/1, a 16-bit PNG its values, which the loader then
casts to uint8 (a value above 255 wraps: refused). Images are sized as the image loader
returns them (EXIF orientation applied or not, :mod:`.images`); label maps never turn.
"""
import os
import os.path as osp

from .images import (
    applies_orientation,
    loaded_size,
    map_files,
    orientation_note,
    probe_image,
    summarise_probes,
)

__all__ = ['SEG_MASK_SUFFIXES', 'check_seg_labels', 'check_seg_pairs', 'valid_labels',
           'read_label']

SEG_MASK_SUFFIXES = ('.png',)


def _files(folder, suffix):
    """Paths below ``folder`` relative to it that end with ``suffix`` (as mmseg lists)."""
    return sorted(osp.relpath(osp.join(root, f), folder) for root, _, names in os.walk(folder)
                  for f in names if f.endswith(suffix))


def read_label(path, backend='pillow'):
    """``(shape, values)`` of a label map as mmseg's loader sees it: ``values`` is the set
    of label values, ``None`` if the file cannot be decoded, ``-1`` for a multi-channel
    (colour) image, ``-2`` for values above 255 (wrapped by the loader's uint8 cast)."""
    import mmcv
    import numpy as np
    try:
        with open(path, 'rb') as f:
            mask = mmcv.imfrombytes(f.read(), flag='unchanged', backend=backend)
    except Exception:
        return None, None
    if mask is None:
        return None, None
    mask = mask.squeeze()
    if mask.ndim != 2:
        return mask.shape[:2], -1
    values = set(np.unique(mask).tolist())
    if max(values) > 255 or min(values) < 0:
        return mask.shape, -2
    return mask.shape, values


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
    wide = [p for p, _, v in results if v == -2]
    bad = [(p, sorted(v - valid)) for p, _, v in results
           if isinstance(v, set) and v - valid]
    problems = []
    if unreadable:
        problems.append(f'{len(unreadable)} label maps cannot be read, e.g. {unreadable[0]}')
    if colour:
        problems.append(f'{len(colour)} label maps are colour images, not label indices '
                        f'(mmseg reads them unchanged and gets several channels), e.g. '
                        f'{colour[0]}')
    if wide:
        problems.append(f'{len(wide)} label maps hold values outside 0..255, which mmseg\'s '
                        f'loader casts to uint8 (300 becomes 44), e.g. {wide[0]}')
    if bad:
        hint = (f'raw labels must be 1..{num_classes} (0 = other, {ignore_index} = ignore) '
                f'with reduce_zero_label' if reduce_zero_label else
                f'labels must be 0..{num_classes - 1} or {ignore_index}')
        examples = '; '.join(f'{osp.basename(p)}: {v[:5]}' for p, v in bad[:3])
        problems.append(f'{len(bad)} of {len(results)} label maps in {where} hold labels the '
                        f'model ({num_classes} classes) cannot take ({hint}): {examples}')
    return problems


def check_seg_labels(ann_dir, num_classes, reduce_zero_label, ignore_index=255,
                     progress=True, seg_backend='pillow'):
    """Problems with the label maps (*.png) below ``ann_dir`` whose values the model
    cannot take."""
    names = _files(ann_dir, SEG_MASK_SUFFIXES)
    if not names:
        return [f'{ann_dir}: no label maps (*.png) found']
    paths = [osp.join(ann_dir, n) for n in names]
    results = map_files(lambda p: (p, *read_label(p, seg_backend)), paths,
                        f'checking labels in {ann_dir}', progress)
    return _label_problems(results, ann_dir, num_classes, reduce_zero_label, ignore_index)


def _pair(img_path, ann_path, full, img_backend, seg_backend):
    """Probe of the image, and the label map's shape and values."""
    probe = probe_image(img_path, full, img_backend)
    if not osp.isfile(ann_path):
        return probe, (ann_path, None, 'missing')
    return probe, (ann_path, *read_label(ann_path, seg_backend))


def _wh(shape):
    return shape[1], shape[0]


def check_seg_pairs(img_dir, ann_dir, img_suffix, seg_map_suffix, num_classes,
                    reduce_zero_label, ignore_index=255, full=False, progress=True,
                    warnings=None, color_type='color', img_backend='cv2',
                    seg_backend='pillow'):
    """Problems of a folder-listed seg dataset: images that are missing their label map,
    unreadable, or of another size than it (as loaded), and labels out of range."""
    names = _files(img_dir, img_suffix)
    if not names:
        return [f'{img_dir}: no images (*{img_suffix}) found']
    stems = [n[:-len(img_suffix)] for n in names]
    pairs = map_files(
        lambda s: _pair(osp.join(img_dir, s + img_suffix),
                        osp.join(ann_dir, s + seg_map_suffix), full, img_backend, seg_backend),
        stems, f'checking images and labels in {osp.dirname(img_dir)}', progress)
    problems = summarise_probes([probe for probe, _ in pairs], img_dir)
    no_label = [p for _, (p, _, v) in pairs if v == 'missing']
    if no_label:
        problems.append(f'{ann_dir}: {len(no_label)} of {len(pairs)} images have no label '
                        f'map, e.g. {no_label[0]}')
    labels = [label for _, label in pairs if label[2] != 'missing']
    problems += _label_problems(labels, ann_dir, num_classes, reduce_zero_label, ignore_index)
    turned, wrong, unsure = [], [], []
    for probe, (_, shape, _) in pairs:
        if probe.reason is not None or shape is None:
            continue
        label, loaded = _wh(shape), loaded_size(probe, color_type)
        name = osp.basename(probe.path)
        if label == loaded:
            if probe.orientation != 1 and applies_orientation(color_type) and \
                    loaded == tuple(probe.size):
                unsure.append(f'{name} ({orientation_note(probe)})')
        elif label == tuple(probe.size) and probe.orientation != 1:
            turned.append(f'{name} is stored {probe.size[0]}x{probe.size[1]} with '
                          f'{orientation_note(probe)}, so it loads as {loaded[0]}x{loaded[1]}')
        else:
            wrong.append(f'{name} is {loaded[0]}x{loaded[1]}'
                         + (' as loaded' if probe.orientation != 1 else '')
                         + f', its label map {label[0]}x{label[1]}')
    if turned:
        problems.append(
            f'{ann_dir}: {len(turned)} of {len(pairs)} label maps fit their image\'s stored '
            f'pixels, but mmcv\'s LoadImageFromFile (color_type {color_type!r}) turns the '
            f'image by its EXIF orientation tag and label maps are never turned, so image and '
            f'labels would not align: {"; ".join(turned[:3])}. Set '
            f'color_type=\'color_ignore_orientation\' in the pipeline\'s LoadImageFromFile, '
            f'or save those images turned (without the tag) and their label maps to match')
    if wrong:
        problems.append(f'{ann_dir}: {len(wrong)} of {len(pairs)} label maps differ in size '
                        f'from their image (width x height; the pipeline would resize them '
                        f'out of alignment): {"; ".join(wrong[:3])}'
                        f'{"; ..." if len(wrong) > 3 else ""}')
    if unsure and warnings is not None:
        warnings.append(f'{img_dir}: {len(unsure)} images carry an EXIF orientation tag that '
                        f'does not change their size; mmcv loads them turned as displayed, '
                        f'label maps as stored: their label maps must match the displayed '
                        f'image: {"; ".join(unsure[:3])}')
    orphans = len(_files(ann_dir, seg_map_suffix)) - len(labels)
    if orphans > 0 and warnings is not None:
        warnings.append(f'{ann_dir}: {orphans} label maps have no image in {img_dir} '
                        f'(mmseg lists the images, so they are not used)')
    return problems
