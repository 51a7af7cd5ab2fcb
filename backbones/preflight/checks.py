"""Checks run by tools/train.py and tools/test.py before the Runner touches the work dir.

A bad path, a broken annotation file or image, an out-of-range ADE20K label, a config typo
or a checkpoint of another model otherwise surfaces minutes (or, for labels, hours) into a
run, after logs and checkpoints have been started, or never: the run produces wrong
numbers. Here every problem found is reported at once and nothing is written. What is
checked:

* the config (:mod:`.config`): keys no component reads, unknown types, class counts,
  batch sizes, metric annotation files;
* the model (:func:`check_model`): it builds, its backbone's outputs are what its neck /
  heads take, and its pretrained backbone loads strictly with finite weights;
* checkpoints (:func:`check_checkpoint`): no pickled code, complete, and (when a model is
  given) weights that fit the model exactly and are finite;
* the data (:func:`check_data`): COCO files (:mod:`.coco`), every image they or an ADE20K
  folder list (:mod:`.images`), label maps (:mod:`.seg`).
"""
import os.path as osp
import re

from ..datasets.walk import iter_datasets
from .coco import check_coco, check_coco_json, load_coco
from .config import check_config, dataset_classes, dataset_default
from .images import probe_images, summarise_probes
from .seg import check_seg_labels, check_seg_pairs

__all__ = ['PreflightError', 'preflight', 'check_model', 'check_checkpoint', 'check_data',
           'check_dataset', 'check_coco_json', 'check_seg_labels']


class PreflightError(Exception):
    """One or more problems that would make the run fail or produce wrong numbers."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__('\n'.join(f'  - {p}' for p in self.problems))


# ---------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------
def _join(root, path):
    return path if not root or osp.isabs(path) else osp.join(root, path)


def _default(dataset_cfg, scope, name, fallback):
    return dataset_default(dataset_cfg, scope, name, fallback)


def loader_settings(dataset_cfg, scope):
    """What the dataset's pipeline does when it reads files, which the checks must agree
    with: the image loader's ``color_type`` and decoding backend (EXIF orientation, pixel
    limit), the label-map backend, whether masks are loaded, and an explicit
    ``reduce_zero_label`` of mmseg's LoadAnnotations."""
    found = dict(color_type='color', img_backend='cv2', with_mask=False,
                 seg_backend='pillow' if scope == 'mmseg' else 'cv2', reduce_zero_label=None)
    for step in dataset_cfg.get('pipeline') or []:
        if not isinstance(step, dict):
            continue
        kind = step.get('type')
        name = (kind if isinstance(kind, str) else getattr(kind, '__name__', '')).split('.')[-1]
        if name == 'LoadImageFromFile':
            found['color_type'] = _step_value(step, scope, 'color_type', 'color')
            found['img_backend'] = _step_value(step, scope, 'imdecode_backend', 'cv2')
        elif name == 'LoadAnnotations':
            found['with_mask'] = bool(_step_value(step, scope, 'with_mask', False))
            found['seg_backend'] = _step_value(step, scope, 'imdecode_backend',
                                               found['seg_backend'])
            found['reduce_zero_label'] = step.get('reduce_zero_label')
    return found


def _step_value(step, scope, name, fallback):
    """``step[name]``, else the default of the transform class it names."""
    if name in step:
        return step[name]
    import inspect
    kind = step.get('type')
    try:
        registry = __import__(f'{scope}.registry', fromlist=['TRANSFORMS']).TRANSFORMS
        cls = registry.get(kind) if isinstance(kind, str) else kind
        param = inspect.signature(cls.__init__).parameters.get(name)
    except Exception:  # an unknown transform is reported by the config checks
        return fallback
    return fallback if param is None or param.default is param.empty else param.default


def _check_coco_dataset(ann_path, dataset_cfg, split, cfg, opts, warnings):
    data, problems = load_coco(ann_path)
    if data is None:
        return problems
    scope = cfg.get('default_scope')
    loader = loader_settings(dataset_cfg, scope)
    needs_anns = split != 'test' or not _format_only(cfg.get('test_evaluator'))
    problems = check_coco(data, ann_path, dataset_classes(dataset_cfg, scope), needs_anns,
                          warnings, with_mask=loader['with_mask'] or _scores_masks(cfg, split))
    img_dir = _join(dataset_cfg.get('data_root') or '',
                    (dataset_cfg.get('data_prefix') or {}).get('img', '') or '')
    if not opts['images'] or not osp.isdir(img_dir):
        return problems
    images = [img for img in data['images'] if isinstance(img, dict) and 'file_name' in img]
    paths = [osp.join(img_dir, img['file_name']) for img in images]
    sizes = {p: (img.get('width'), img.get('height')) for p, img in zip(paths, images)}
    probes = probe_images(paths, opts['full'], opts['progress'],
                          desc=f'checking {split} images', backend=loader['img_backend'])
    return problems + summarise_probes(probes, f'{split}: {img_dir}', sizes,
                                       loader['color_type'], warnings)


def _scores_masks(cfg, split):
    """Whether the ``split``'s COCO metric scores masks (it reads every object's mask
    from the annotation file)."""
    evaluator = cfg.get(f'{split}_evaluator') if split != 'train' else None
    for metric in evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]:
        names = metric.get('metric', 'bbox') if isinstance(metric, dict) else ()
        if 'segm' in ([names] if isinstance(names, str) else list(names)) and \
                not metric.get('format_only'):
            return True
    return False


def _format_only(evaluator):
    metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    return any(isinstance(m, dict) and m.get('format_only') for m in metrics)


def _check_seg_dataset(dataset_cfg, split, cfg, opts, warnings):
    scope = cfg.get('default_scope')
    root = dataset_cfg.get('data_root') or ''
    prefixes = dataset_cfg.get('data_prefix') or {}
    img_dir = _join(root, prefixes.get('img_path') or '')
    ann_dir = _join(root, prefixes.get('seg_map_path') or '')
    num_classes = opts['seg_num_classes']
    if not (prefixes.get('seg_map_path') and num_classes and osp.isdir(ann_dir)):
        return []
    reduce_zero = bool(_default(dataset_cfg, scope, 'reduce_zero_label', False))
    ignore = dataset_cfg.get('ignore_index', 255)
    loader = loader_settings(dataset_cfg, scope)
    if dataset_cfg.get('ann_file') or not (opts['images'] and osp.isdir(img_dir)):
        # a name list (ann_file) decides the pairs; the label values are still checked
        return check_seg_labels(ann_dir, num_classes, reduce_zero, ignore, opts['progress'],
                                seg_backend=loader['seg_backend'])
    return check_seg_pairs(img_dir, ann_dir, _default(dataset_cfg, scope, 'img_suffix', '.jpg'),
                           _default(dataset_cfg, scope, 'seg_map_suffix', '.png'),
                           num_classes, reduce_zero, ignore, full=opts['full'],
                           progress=opts['progress'], warnings=warnings,
                           color_type=loader['color_type'], img_backend=loader['img_backend'],
                           seg_backend=loader['seg_backend'])


def check_dataset(dataset_cfg, split, cfg, seg_num_classes=None, progress=True,
                  images=True, full=False, warnings=None):
    """Problems with one (innermost) dataset config of ``split``."""
    scope = cfg.get('default_scope')
    opts = dict(seg_num_classes=seg_num_classes, progress=progress, images=images, full=full)
    root = dataset_cfg.get('data_root') or ''
    if root and not osp.isdir(root):
        return [f'{split}: data root not found: {root} (set data_root, or see the README '
                f'for where the datasets go)']
    problems = []
    ann_file = dataset_cfg.get('ann_file') or ''
    ann_path = _join(root, ann_file)
    if ann_file and not osp.isfile(ann_path):
        problems.append(f'{split}: annotation file not found: {ann_path}')
    for key, prefix in (dataset_cfg.get('data_prefix') or {}).items():
        if prefix and not osp.isdir(_join(root, prefix)):
            problems.append(f'{split}: data_prefix.{key} folder not found: '
                            f'{_join(root, prefix)}')
    if problems:
        return problems
    if scope == 'mmdet' and ann_path.endswith('.json'):
        found = _check_coco_dataset(ann_path, dataset_cfg, split, cfg, opts, warnings)
    elif scope == 'mmseg':
        found = _check_seg_dataset(dataset_cfg, split, cfg, opts, warnings)
    else:
        found = []
    return [f'{split}: {p}' if not p.startswith(f'{split}: ') else p for p in found]


def _seg_num_classes(cfg):
    model = cfg.get('model', {})
    head = model.get('module', model).get('decode_head')
    heads = head if isinstance(head, list) else [head]
    return next((h['num_classes'] for h in heads if h and 'num_classes' in h), None)


def check_data(cfg, splits, progress=True, images=True, full=False, warnings=None):
    """Problems with the datasets of ``splits``: annotation files, images, label maps.
    ``images``: open every image (header and end); ``full``: decode every image too."""
    problems = []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for _, dataset_cfg in iter_datasets(loader['dataset']):
            problems += check_dataset(dataset_cfg, split, cfg, _seg_num_classes(cfg),
                                      progress, images, full, warnings)
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
def build_model(cfg):
    """``(model, problems)``: the model of ``cfg`` built in its scope, or None."""
    from mmengine.registry import DefaultScope
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        try:
            return registry.build(cfg.model), []
        except Exception as err:
            return None, [f'model: cannot build it from the config: '
                          f'{str(err).strip() or reason(err)}']


def _channels(value, index):
    """What a head with ``in_channels=value`` and ``in_index=index`` expects, as a list."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    indices = list(index) if isinstance(index, (list, tuple)) else [index]
    return values, indices


def check_wiring(model):
    """The backbone's output channels are what the neck (detection) or the heads
    (segmentation) take; a mismatch otherwise fails in the first forward pass."""
    model = getattr(model, 'module', model)
    out = getattr(getattr(model, 'backbone', None), 'out_channels', None)
    if out is None:
        return []
    out = list(out)
    problems = []
    neck = getattr(model, 'neck', None)
    if neck is not None and hasattr(neck, 'in_channels'):
        if list(_channels(neck.in_channels, 0)[0]) != out:
            problems.append(f'model.neck.in_channels is {list(neck.in_channels)}, but the '
                            f'backbone returns {out} channels (out_indices '
                            f'{list(model.backbone.out_indices)})')
        return problems
    for name in ('decode_head', 'auxiliary_head'):
        heads = getattr(model, name, None)
        for i, head in enumerate(heads if isinstance(heads, (list, tuple)) or
                                 hasattr(heads, '__len__') else [heads]):
            if head is None or not hasattr(head, 'in_index'):
                continue
            values, indices = _channels(head.in_channels, head.in_index)
            if any(not -len(out) <= j < len(out) for j in indices):
                problems.append(f'model.{name}.in_index {head.in_index} is out of range for '
                                f'a backbone with {len(out)} outputs')
                continue
            expected = [out[j] for j in indices]
            if getattr(head, 'input_transform', None) == 'resize_concat':
                expected = [sum(expected)]
            if values != expected:
                problems.append(f'model.{name}.in_channels is {head.in_channels}, but the '
                                f'backbone returns {expected} at in_index {head.in_index}')
    return problems


def check_model(cfg, pretrained=True, return_model=False):
    """Build the model (unknown backbone sizes/arguments fail here), check how its parts
    connect and, with ``pretrained``, load its backbone checkpoint strictly (wrong
    architecture or size, NaN/inf weights)."""
    model, problems = build_model(cfg)
    if model is not None:
        problems = check_wiring(model)
        backbone = getattr(getattr(model, 'module', model), 'backbone', None)
        init_cfg = getattr(backbone, 'init_cfg', None) or {}
        if pretrained and isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            from mmengine.registry import DefaultScope
            with DefaultScope.overwrite_default_scope(cfg.default_scope):
                try:
                    backbone.init_weights()
                except Exception as err:
                    problems.append(f'model.backbone.init_cfg: pretrained checkpoint '
                                    f'{init_cfg.get("checkpoint")} cannot be used: '
                                    f'{str(err).strip() or reason(err)}')
    return (problems, model) if return_model else problems


def reason(err):
    """The text of an exception for a message: never empty (some carry none)."""
    text = str(err).strip()
    return f'{type(err).__name__}: {text}' if text else f'{type(err).__name__} (no details)'


def checkpoint_unreadable(path):
    """Why the file ``path`` cannot even be opened as a checkpoint, or None."""
    if not osp.exists(path):
        return f'checkpoint file not found: {path}'
    if osp.isdir(path):
        return f'{path} is a folder, not a checkpoint file (name the .pth file inside it)'
    try:
        with open(path, 'rb') as f:
            f.read(1)
    except OSError as err:
        return f'{path} cannot be read: {err.strerror or reason(err)}'
    if osp.getsize(path) == 0:
        return f'{path} is empty (0 bytes): an interrupted copy or download?'
    return None


def _legacy_fit(path, model, allow_partial):
    """A checkpoint in torch's pre-1.6 (non-zip) format: mmengine loads it like any other,
    so it is checked here by loading it (``weights_only``: pickled code is refused, never
    run); the zip-only scans of :mod:`..engine.checkpoint` cannot read it."""
    import pickle

    import torch

    from ..engine.checkpoint import (
        CheckpointError,
        check_finite,
        describe_mismatch,
        mmengine_state_dict,
        state_dict_mismatch,
    )
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f'refusing to load {path}: it contains pickled objects that are '
                              f'not plain tensors/containers, so loading it could run '
                              f'arbitrary code ({reason(err)[:200]})') from None
    except Exception as err:
        raise CheckpointError(f'{path} is not a complete torch checkpoint (truncated by a '
                              f'crash during writing, or not saved with torch.save; nor is it '
                              f'one in torch\'s legacy format: {reason(err)[:300]})') from None
    if model is None:
        return ''
    target = getattr(model, 'module', None)
    target = target if isinstance(target, torch.nn.Module) else model
    state_dict = mmengine_state_dict(ckpt)
    text = describe_mismatch(state_dict_mismatch(target.state_dict(), state_dict,
                                                 ignore_missing=('num_batches_tracked',)),
                             f'checkpoint {path}', f"the config's model "
                             f'({type(target).__name__})')
    if text and not allow_partial:
        raise CheckpointError(text)
    check_finite(state_dict, f'checkpoint {path}')
    return text


def check_checkpoint(path, what, model=None, allow_partial=False, partial=None):
    """Problems with the checkpoint ``path``: unreadable, unsafe or truncated; with
    ``model``, weights that do not fit it exactly or are not finite. ``allow_partial``: a
    key mismatch is appended to the list ``partial`` instead of being a problem."""
    import zipfile

    from ..engine.checkpoint import CheckpointError, check_checkpoint_file, check_fits_model
    path = str(path)
    why = checkpoint_unreadable(path)
    if why:
        return [f'{what}: {why}']
    try:
        if zipfile.is_zipfile(path):
            check_checkpoint_file(path)
            text = check_fits_model(model, path, allow_partial) if model is not None else ''
        else:
            text = _legacy_fit(path, model, allow_partial)
        if text and partial is not None:
            partial.append(text)
    except CheckpointError as err:
        return [f'{what}: {reason(err) if not str(err).strip() else err}']
    return []


#: Checks with a legitimate exception, each let through on its own by ``--allow ID``
#: (their problems end in ``[--allow ID]``).
ALLOWABLE = {
    'bad-boxes': 'COCO boxes that are not four finite numbers, negative or outside their '
                 'image: mmdet drops them; a few in a large set may be accepted knowingly',
    'eval-on-train': 'evaluate on the training data (an overfitting check; such a record '
                     'never reaches the tables)',
    'config-key': 'a top-level variable whose name is one or two edits from a Runner key',
}
_ALLOW_TAG = re.compile(r' \[--allow ([a-z-]+)\]$')


def _split_allowed(problems, allow):
    """``(problems left, warnings, ids used)``: problems tagged with an allowed check id
    become warnings."""
    left, warned, used = [], [], []
    for problem in problems:
        match = _ALLOW_TAG.search(problem)
        if match and match.group(1) in allow:
            warned.append(f'{problem[:match.start()]} (let through by --allow '
                          f'{match.group(1)})')
            used.append(match.group(1))
        else:
            left.append(problem)
    return left, warned, sorted(set(used))


def preflight(cfg, splits, checkpoint=None, data=True, pretrained=True, progress=True,
              fit_checkpoint=False, allow_partial=False, images=True, full=False, log=print,
              allow=()):
    """Raise :class:`PreflightError` listing every problem found; print the warnings.

    ``fit_checkpoint``: the checkpoint's weights must fit the model (testing, resuming);
    with ``allow_partial`` a mismatch is only a warning. ``images`` / ``full``: open /
    decode every image of the datasets. ``allow``: ids of :data:`ALLOWABLE` checks to let
    through. Returns ``dict(warnings=[...], partial=text, allowed=[ids])``, ``partial``
    naming the keys of a checkpoint allowed not to fit ('' when it fits), ``allowed`` the
    checks that were let through.
    """
    unknown = sorted(set(allow) - set(ALLOWABLE))
    if unknown:
        raise PreflightError([f'--allow {" ".join(unknown)}: no such check; the checks that '
                              f'can be let through one by one are: ' + '; '.join(
                                  f'{k} ({v})' for k, v in ALLOWABLE.items())])
    warnings, partial = [], []
    problems = check_config(cfg, splits)
    model_problems, model = check_model(cfg, pretrained, return_model=True)
    problems += model_problems
    if checkpoint:
        fit = model if fit_checkpoint and model is not None else None
        problems += check_checkpoint(checkpoint, 'checkpoint', fit, allow_partial, partial)
    if data:
        problems += check_data(cfg, splits, progress, images, full, warnings)
    problems, let_through, allowed = _split_allowed(_unique(problems), set(allow))
    warnings += let_through + [f'--allow-partial: {text}' for text in partial]
    for warning in warnings:
        log(f'warning: {warning}')
    if problems:
        raise PreflightError(problems)
    return dict(warnings=warnings, partial='\n'.join(partial), allowed=allowed)
