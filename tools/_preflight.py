"""Checks run by tools/train.py and tools/test.py before the Runner touches the work dir.

A bad path, a non-COCO annotation file, an out-of-range ADE20K label or a checkpoint of
another model otherwise surfaces minutes (or, for labels, hours) into a run, after logs
and checkpoints have been started; here every problem found is reported at once and
nothing is written. Not a public API.
"""
import json
import os
import os.path as osp
from concurrent.futures import ThreadPoolExecutor

COCO_KEYS = ('images', 'annotations', 'categories')
SEG_MASK_SUFFIXES = ('.png',)


class PreflightError(Exception):
    """One or more problems that would make the run fail or produce wrong numbers."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__('\n'.join(f'  - {p}' for p in self.problems))


# ---------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------
def _datasets(node):
    """Innermost dataset configs (through RepeatDataset, ClassBalancedDataset, Concat...)."""
    if 'dataset' in node:
        yield from _datasets(node['dataset'])
    elif 'datasets' in node:
        for sub in node['datasets']:
            yield from _datasets(sub)
    else:
        yield node


def _join(root, path):
    return path if not root or osp.isabs(path) else osp.join(root, path)


def check_coco_json(path, classes=None):
    """Problems with a COCO instances file (empty list when it is usable)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return [f'{path}: not a readable JSON file ({err})']
    if not isinstance(data, dict):
        return [f'{path}: a COCO file holds a JSON object, this one holds a '
                f'{type(data).__name__}']
    missing = [k for k in COCO_KEYS if not isinstance(data.get(k), list)]
    if missing:
        return [f'{path}: not a COCO instances file: no list under {", ".join(missing)} '
                f'(top-level keys: {sorted(data)[:8]})']
    problems = []
    cats = data['categories']
    bad_cats = [c for c in cats if not isinstance(c, dict) or 'id' not in c or 'name' not in c]
    if bad_cats:
        problems.append(f'{path}: {len(bad_cats)} categories lack "id"/"name", '
                        f'e.g. {bad_cats[0]!r}')
    names = {c.get('name') for c in cats if isinstance(c, dict)}
    cat_ids = {c.get('id') for c in cats if isinstance(c, dict)}
    image_ids = set()
    for img in data['images']:
        if not isinstance(img, dict) or not {'id', 'file_name', 'height', 'width'} <= set(img):
            problems.append(f'{path}: an image entry lacks id/file_name/height/width: '
                            f'{str(img)[:120]}')
            break
        image_ids.add(img['id'])
    for ann in data['annotations']:
        if not isinstance(ann, dict) or not {'image_id', 'category_id', 'bbox'} <= set(ann):
            problems.append(f'{path}: an annotation lacks image_id/category_id/bbox: '
                            f'{str(ann)[:120]}')
            break
        if ann['category_id'] not in cat_ids:
            problems.append(f'{path}: annotation {ann.get("id")} has category_id '
                            f'{ann["category_id"]}, which no category defines')
            break
        if ann['image_id'] not in image_ids:
            problems.append(f'{path}: annotation {ann.get("id")} refers to image_id '
                            f'{ann["image_id"]}, which no image defines')
            break
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


def _mask_values(path):
    """(path, set of label values), or None if unreadable, or -1 for a colour image."""
    import cv2
    import numpy as np
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if mask is None:
        return path, None
    if mask.ndim == 3:
        return path, -1
    return path, set(np.unique(mask).tolist())


def check_seg_labels(ann_dir, num_classes, reduce_zero_label, ignore_index=255,
                     progress=True):
    """Problems with label PNGs whose values the model cannot take (e.g. ADE20K > 150)."""
    files = sorted(osp.join(root, f) for root, _, names in os.walk(ann_dir)
                   for f in names if f.endswith(SEG_MASK_SUFFIXES))
    if not files:
        return [f'{ann_dir}: no label maps (*.png) found']
    # raw labels: 1..C are classes and 0 "other" when reduce_zero_label, else 0..C-1
    valid = set(range(1, num_classes + 1) if reduce_zero_label else range(num_classes))
    valid |= {0, ignore_index} if reduce_zero_label else {ignore_index}
    bad, unreadable, colour = [], [], []
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        results = pool.map(_mask_values, files)
        if progress and len(files) > 2000:
            from tqdm import tqdm
            results = tqdm(results, total=len(files), desc=f'checking labels in {ann_dir}',
                           unit='mask', mininterval=2)
        for path, values in results:
            if values is None:
                unreadable.append(path)
            elif values == -1:
                colour.append(path)
            elif values - valid:
                bad.append((path, sorted(values - valid)))
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
        problems.append(f'{len(bad)} of {len(files)} label maps in {ann_dir} hold labels the '
                        f'model ({num_classes} classes) cannot take ({hint}): {examples}')
    return problems


def _classes(dataset_cfg, default_scope):
    meta = dataset_cfg.get('metainfo') or {}
    if meta.get('classes') is not None:
        return list(meta['classes'])
    cls = _dataset_class(dataset_cfg, default_scope)
    return list(getattr(cls, 'METAINFO', {}).get('classes', ())) or None


def _dataset_class(dataset_cfg, default_scope):
    kind = dataset_cfg.get('type')
    if not isinstance(kind, str):
        return kind
    registry = __import__(f'{default_scope}.registry', fromlist=['DATASETS']).DATASETS
    return registry.get(kind)


def _reduce_zero_label(dataset_cfg, scope):
    if 'reduce_zero_label' in dataset_cfg:
        return bool(dataset_cfg['reduce_zero_label'])
    import inspect
    cls = _dataset_class(dataset_cfg, scope)  # ADE20KDataset defaults to True
    param = inspect.signature(cls).parameters.get('reduce_zero_label') if cls else None
    return bool(param.default) if param is not None and param.default is not param.empty \
        else False


def check_dataset(dataset_cfg, split, cfg, seg_num_classes=None, progress=True):
    problems = []
    scope = cfg.get('default_scope')
    root = dataset_cfg.get('data_root') or ''
    if root and not osp.isdir(root):
        return [f'{split}: data root not found: {root} (set data_root, or see the README '
                f'for where the datasets go)']
    ann_file = dataset_cfg.get('ann_file') or ''
    if ann_file:
        ann_path = _join(root, ann_file)
        if not osp.isfile(ann_path):
            problems.append(f'{split}: annotation file not found: {ann_path}')
        elif scope == 'mmdet' and ann_path.endswith('.json'):
            problems += [f'{split}: {p}' for p in
                         check_coco_json(ann_path, _classes(dataset_cfg, scope))]
    prefixes = dataset_cfg.get('data_prefix') or {}
    for key, prefix in prefixes.items():
        if not prefix:
            continue
        folder = _join(root, prefix)
        if not osp.isdir(folder):
            problems.append(f'{split}: data_prefix.{key} folder not found: {folder}')
        elif key == 'seg_map_path' and scope == 'mmseg' and seg_num_classes:
            problems += [f'{split}: {p}' for p in check_seg_labels(
                folder, seg_num_classes, _reduce_zero_label(dataset_cfg, scope),
                ignore_index=dataset_cfg.get('ignore_index', 255), progress=progress)]
    return problems


def _seg_num_classes(cfg):
    head = cfg.get('model', {}).get('decode_head')
    heads = head if isinstance(head, list) else [head]
    return next((h['num_classes'] for h in heads if h and 'num_classes' in h), None)


def check_data(cfg, splits, progress=True):
    problems = []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for dataset_cfg in _datasets(loader['dataset']):
            problems += check_dataset(dataset_cfg, split, cfg, _seg_num_classes(cfg), progress)
        evaluator = cfg.get(f'{split}_evaluator') or {}
        for metric in evaluator if isinstance(evaluator, list) else [evaluator]:
            path = metric.get('ann_file') if isinstance(metric, dict) else None
            if path and not osp.isfile(path):
                problems.append(f'{split}_evaluator: annotation file not found: {path}')
    return _unique(problems)


def _unique(items):
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------------------------------
# model and checkpoints
# ---------------------------------------------------------------------------------------
def check_model(cfg, pretrained=True):
    """Build the model (unknown backbone sizes/arguments fail here) and, with
    ``pretrained``, load its backbone checkpoint strictly (wrong architecture or size)."""
    from mmengine.registry import DefaultScope
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        try:
            model = registry.build(cfg.model)
        except Exception as err:
            return [f'model: cannot build it from the config: {err}']
        backbone = getattr(model, 'backbone', None)
        init_cfg = getattr(backbone, 'init_cfg', None) or {}
        if pretrained and isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            try:
                backbone.init_weights()
            except Exception as err:
                return [f'model.backbone.init_cfg: pretrained checkpoint '
                        f'{init_cfg.get("checkpoint")} cannot be used: {err}']
    return []


def check_checkpoint(path, what):
    from backbones.checkpoint import CheckpointError, check_checkpoint_file
    try:
        check_checkpoint_file(path)
    except CheckpointError as err:
        return [f'{what}: {err}']
    return []


def preflight(cfg, splits, checkpoint=None, data=True, pretrained=True, progress=True):
    """Raise :class:`PreflightError` listing every problem found; return None if none."""
    problems = check_model(cfg, pretrained)
    if checkpoint:
        problems += check_checkpoint(checkpoint, 'checkpoint')
    if data:
        problems += check_data(cfg, splits, progress=progress)
    if problems:
        raise PreflightError(problems)


def find_resume_checkpoint(work_dir, log=print):
    """The checkpoint ``--resume`` (no path) continues from, or None to start afresh.

    mmengine reads ``last_checkpoint`` only; a crash while that small file is rewritten
    leaves it empty. Checkpoint files themselves are written atomically, so the newest
    ``epoch_N.pth`` / ``iter_N.pth`` is complete and is taken instead (and said so).
    """
    pointer = osp.join(work_dir, 'last_checkpoint')
    named = None
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        for candidate in (named, osp.join(work_dir, osp.basename(named or ''))):
            if named and osp.isfile(candidate):
                return candidate
    found = []
    if osp.isdir(work_dir):
        for name in os.listdir(work_dir):
            stem, ext = osp.splitext(name)
            kind, _, number = stem.partition('_')
            if ext == '.pth' and kind in ('epoch', 'iter') and number.isdigit():
                found.append((int(number), osp.join(work_dir, name)))
    if not found:
        if named is not None:
            log(f'warning: {pointer} names {named!r}, which does not exist, and the work '
                f'dir holds no epoch_N/iter_N checkpoint: starting from scratch')
        return None
    newest = max(found)[1]
    log(f'warning: {pointer} is ' + (f'unusable ({named!r})' if named is not None
                                      else 'missing') + f'; resuming from {newest}')
    return newest


def remove_partial_writes(work_dir, log=print):
    """Delete the temp files of checkpoint writes that a kill interrupted. Only called when
    resuming, when no other process writes into ``work_dir``."""
    if not osp.isdir(work_dir):
        return []
    stale = [f for f in os.listdir(work_dir) if f.startswith('.') and f.endswith('.part')]
    for name in stale:
        os.remove(osp.join(work_dir, name))
    if stale:
        log(f'removed {len(stale)} unfinished checkpoint write(s) in {work_dir}: '
            f'{", ".join(stale[:3])}')
    return stale
