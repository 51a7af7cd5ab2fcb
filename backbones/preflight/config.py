"""Config mistakes that otherwise fail with a bare traceback after the work dir exists, or
not at all.

* Keys that no component reads: every ``type=...`` dict outside the model (loops,
  optimizer and its wrapper, schedulers, hooks, dataloaders, samplers, datasets, pipeline
  steps, metrics) is compared with the constructor of the class it names. mmengine builds
  most of them only when ``runner.train()`` reaches them, and a few options (the
  optimizer's ``paramwise_cfg``) are read with ``.get``, so a typo there is ignored
  silently. Model dicts are built by :func:`check_model`, which reports theirs.
* Unknown ``type`` names, batch sizes / worker counts / schedule lengths that are not
  positive integers.
* A head whose ``num_classes`` differs from the dataset's class count (mmdet fails in the
  COCO metric at the first validation; mmseg scores the wrong classes), train and
  validation sets with different classes, and a COCO metric scoring against another
  annotation file than the dataset it evaluates.
* Every other section, with the nearest known key for one nothing reads: the model's own
  components (every ``type=...`` dict below ``model``, against its class) and its
  ``train_cfg`` / ``test_cfg`` (against what mmdet's two-stage detectors and mmseg's
  encoder-decoders read, :data:`MODEL_CFG_KEYS`), ``env_cfg``, ``randomness``,
  ``auto_scale_lr``, ``log_processor``, ``visualizer``, ``custom_imports``, the TTA model
  and pipeline, and the top level itself: a key one edit away from a Runner key, or an
  mmdet 2.x key (``lr_config``, ``runner``...) that mmengine no longer reads.
* Settings that must agree between splits: the label convention (``reduce_zero_label``) of
  train / val / test and of each pipeline's LoadAnnotations, and an evaluation split that
  reads the training data.
* ``--cfg-options`` (:func:`check_cfg_options`, before they are merged): a value of another
  type than the one it replaces, a path through a list that does not exist, and a
  top-level variable of the config file (``pretrained``, ``data_root``...), which was
  substituted when the file was read, so that changing it changes nothing.

A problem ending in ``[--allow ID]`` has a legitimate exception: ``--allow ID`` lets that
one check through (a warning, recorded in the run record), where ``--no-data-check`` would
switch off every data check.
"""
import functools
import inspect
import os.path as osp
import re

from ..datasets.walk import iter_datasets

__all__ = ['check_config', 'check_cfg_options', 'accepted_arguments', 'PARAMWISE_KEYS',
           'RUNNER_KEYS', 'MODEL_CFG_KEYS', 'NMS_KEYS', 'LEGACY_KEYS', 'dataset_default']

#: Options ``DefaultOptimWrapperConstructor`` reads from ``paramwise_cfg`` (mmengine
#: 0.10.7; tests/test_preflight.py compares this with its source).
PARAMWISE_KEYS = frozenset({'bias_decay_mult', 'bias_lr_mult', 'bypass_duplicate',
                            'custom_keys', 'dcn_offset_lr_mult', 'dwconv_decay_mult',
                            'flat_decay_mult', 'norm_decay_mult'})
#: Dataloader keys mmengine's ``Runner.build_dataloader`` consumes itself.
_LOADER_KEYS = {'dataset', 'sampler', 'batch_sampler', 'collate_fn', 'worker_init_fn',
                'num_batch_per_epoch'}
_META = {'type', '_scope_'}
#: Top-level keys something reads: mmengine's Runner (``from_cfg``, ``wrap_model``,
#: ``build_model``...), mmengine's config loader and our tools (tests/test_preflight.py
#: finds each in those sources).
RUNNER_KEYS = frozenset({
    'model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader',
    'train_cfg', 'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper', 'param_scheduler',
    'val_evaluator', 'test_evaluator', 'default_hooks', 'custom_hooks', 'data_preprocessor',
    'load_from', 'resume', 'launcher', 'env_cfg', 'log_processor', 'log_level', 'visualizer',
    'default_scope', 'randomness', 'experiment_name', 'model_wrapper_cfg',
    'find_unused_parameters', 'sync_bn', 'compile', 'efficient_conv_bn_eval',
    'activation_checkpointing', 'runner_type', 'custom_imports', 'tta_model', 'tta_pipeline'})
#: mmdet 2.x / mmseg 0.x keys that mmengine does not read, and what replaced them.
LEGACY_KEYS = {'optimizer_config': 'optim_wrapper (clip_grad, loss_scale)',
               'lr_config': 'param_scheduler', 'runner': 'train_cfg (type, max_epochs / '
               'max_iters)', 'total_epochs': 'train_cfg.max_epochs',
               'evaluation': 'train_cfg.val_interval and val_evaluator',
               'checkpoint_config': 'default_hooks.checkpoint',
               'log_config': 'default_hooks.logger', 'workflow': 'train_cfg / val_cfg',
               'data': 'train_dataloader / val_dataloader / test_dataloader',
               'fp16': 'optim_wrapper.type=AmpOptimWrapper (or --amp)',
               'dist_params': 'env_cfg.dist_cfg', 'cudnn_benchmark': 'env_cfg.cudnn_benchmark'}
#: What the model's own ``train_cfg`` / ``test_cfg`` may hold, by the kind of model that
#: reads them (mmdet 3.3 two-stage detectors with a standard RoI head, mmseg 1.2
#: encoder-decoders); tests/test_preflight.py finds every key in their sources.
MODEL_CFG_KEYS = {
    'TwoStageDetector': {
        'train_cfg': {'rpn': {'assigner', 'sampler', 'allowed_border', 'pos_weight', 'debug'},
                      'rpn_proposal': {'nms_pre', 'max_per_img', 'nms', 'min_bbox_size',
                                       'score_thr'},
                      'rcnn': {'assigner', 'sampler', 'mask_size', 'pos_weight', 'debug',
                               'soft_mask_target'}},
        'test_cfg': {'rpn': {'nms_pre', 'max_per_img', 'nms', 'min_bbox_size', 'score_thr'},
                     'rcnn': {'score_thr', 'nms', 'max_per_img', 'mask_thr_binary'}}},
    'EncoderDecoder': {'train_cfg': {}, 'test_cfg': {'mode', 'crop_size', 'stride'}},
}
#: Keys of an ``nms=dict(...)`` (mmcv's ``batched_nms`` pops the first three, passes the
#: rest to ``nms``).
NMS_KEYS = frozenset({'type', 'class_agnostic', 'split_thr', 'iou_threshold', 'offset',
                      'score_threshold', 'max_num'})
#: Layer-config dicts whose builders (mmcv's build_norm_layer & co.) consume keys of their
#: own (``requires_grad``...) before the layer class sees the rest: not compared.
_LAYER_CFGS = {'norm_cfg', 'act_cfg', 'conv_cfg', 'upsample_cfg', 'plugins', 'dcn'}


@functools.lru_cache(maxsize=None)
def accepted_arguments(obj):
    """Keyword names the constructor of ``obj`` (a class or function) accepts, or None when
    it takes any (``**kwargs`` that leave for code we cannot see)."""
    names = _accepted(obj)
    return None if names is None else frozenset(names)


def _accepted(obj):
    if not isinstance(obj, type):
        return _named(obj)
    for klass in obj.__mro__:
        if klass is object:
            return None
        if '__init__' not in vars(klass):
            continue
        names = _named(klass.__init__)
        if names is None:
            return None
        if not _takes_kwargs(klass.__init__):
            return names | _inherited(obj, klass)
        if not _forwards_kwargs(klass.__init__):
            return None  # **kwargs go somewhere we cannot see (e.g. timm.create_model)
    return None


@functools.lru_cache(maxsize=None)
def _forwards_kwargs(init):
    """Whether an ``__init__`` taking ``**kwargs`` passes them on to ``super().__init__``."""
    try:
        source = inspect.getsource(init)
    except (OSError, TypeError):
        return False
    name = next(p.name for p in inspect.signature(init).parameters.values()
                if p.kind == p.VAR_KEYWORD)
    return re.search(r'super\([^)]*\)\.__init__\((?:[^()]|\([^()]*\))*\*\*' + name + r'\b',
                     source) is not None


def _inherited(obj, last):
    """Named arguments of the ``__init__`` methods between ``obj`` and ``last``."""
    names = set()
    for klass in obj.__mro__:
        if '__init__' in vars(klass):
            names |= _named(klass.__init__) or set()
        if klass is last:
            break
    return names


def _named(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _takes_kwargs(fn):
    try:
        return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True


def _registry(scope, name):
    return getattr(__import__(f'{scope}.registry', fromlist=[name]), name)


_FOUND = {}


def _registered(scope, registry, kind, in_scope):
    """``registry.get(kind)`` in ``in_scope``; classes found are remembered (mmengine's
    scope switch sleeps a few ms each time, over a hundred times per config)."""
    key = (scope, registry, kind, in_scope)
    if key not in _FOUND:
        from mmengine.registry import DefaultScope
        with DefaultScope.overwrite_default_scope(in_scope):
            cls = _registry(scope, registry).get(kind)
        if cls is None:
            return None  # not remembered: a later custom import may register it
        _FOUND[key] = cls
    return _FOUND[key]


def _component(scope, registry, node, where, extras=()):
    """Problems of one ``type=...`` dict: an unknown type, or keys its class does not take."""
    if not isinstance(node, dict) or 'type' not in node:
        return []
    kind = node['type']
    if isinstance(kind, str):
        cls = _registered(scope, registry, kind, node.get('_scope_', scope))
        if cls is None:
            return [f'{where}: unknown type {kind!r}: nothing of that name is in the '
                    f'{registry} registry of {scope} or mmengine (a typo, or a missing '
                    f'custom_imports?)']
    else:
        cls = kind
    accepted = accepted_arguments(cls)
    if accepted is None:
        return []
    unknown = sorted(set(node) - _META - accepted - set(extras))
    if not unknown:
        return []
    return [f'{where}: {_not_read(unknown, accepted, getattr(cls, "__name__", kind))}; '
            f'it would be ignored, or fail after the work dir exists']


def _not_read(unknown, accepted, reader):
    """'a, b are not read by READER (did you mean x?)' for the keys ``unknown``."""
    import difflib
    guesses = sorted({g for key in unknown
                      for g in difflib.get_close_matches(key, sorted(accepted), n=1)})
    hint = f' (did you mean {", ".join(guesses)}?)' if guesses else ''
    verb = 'is' if len(unknown) == 1 else 'are'
    return f'{", ".join(unknown)} {verb} not read by {reader}{hint}'


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_loader(cfg, split, scope):
    name = f'{split}_dataloader'
    loader = cfg.get(name)
    if not loader:
        return []
    problems = []
    if not _positive_int(loader.get('batch_size', 1)):
        problems.append(f'{name}.batch_size must be a positive integer, got '
                        f'{loader.get("batch_size")!r}')
    workers = loader.get('num_workers', 0)
    if not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 0):
        problems.append(f'{name}.num_workers must be an integer >= 0, got {workers!r}')
    from torch.utils.data import DataLoader
    known = _named(DataLoader.__init__) | _LOADER_KEYS
    unknown = sorted(set(loader) - known)
    if unknown:
        problems.append(f'{name}: {_not_read(unknown, known, "the dataloader")}')
    problems += _component(scope, 'DATA_SAMPLERS', loader.get('sampler'), f'{name}.sampler',
                           extras=('dataset', 'seed'))
    problems += _component(scope, 'DATA_SAMPLERS', loader.get('batch_sampler'),
                           f'{name}.batch_sampler', extras=('sampler', 'batch_size',
                                                            'drop_last'))
    if isinstance(loader.get('dataset'), dict):
        problems += _check_dataset_tree(scope, loader['dataset'], f'{name}.dataset')
    return problems


def _check_dataset_tree(scope, node, where):
    problems = _component(scope, 'DATASETS', node, where)
    if isinstance(node.get('dataset'), dict):
        return problems + _check_dataset_tree(scope, node['dataset'], f'{where}.dataset')
    for i, sub in enumerate(node.get('datasets') or []):
        problems += _check_dataset_tree(scope, sub, f'{where}.datasets.{i}')
    for i, step in enumerate(node.get('pipeline') or []):
        problems += _component(scope, 'TRANSFORMS', step, f'{where}.pipeline.{i}')
    return problems


def _as_list(node):
    return node if isinstance(node, (list, tuple)) else [node] if node else []


def _check_schedule(cfg, scope):
    problems = []
    for name, extras in (('train_cfg', ()), ('val_cfg', ('evaluator',)),
                         ('test_cfg', ('evaluator',))):
        loop = cfg.get(name)
        if not isinstance(loop, dict):
            continue
        if 'type' not in loop:  # mmengine's by_epoch shorthand
            kind = 'EpochBasedTrainLoop' if loop.get('by_epoch') else 'IterBasedTrainLoop'
            loop = dict(loop, type=kind) if name == 'train_cfg' else loop
            extras = ('by_epoch',)
        problems += _component(scope, 'LOOPS', loop, name, extras=extras)
        for key in ('max_epochs', 'max_iters', 'val_interval', 'val_begin'):
            if key in loop and not _positive_int(loop[key]):
                problems.append(f'{name}.{key} must be a positive integer, got {loop[key]!r}')
    for i, sched in enumerate(_as_list(cfg.get('param_scheduler'))):
        problems += _component(scope, 'PARAM_SCHEDULERS', sched, f'param_scheduler.{i}',
                               extras=('convert_to_iter_based',))
    return problems


def _check_optimizer(cfg, scope):
    wrapper = cfg.get('optim_wrapper')
    if not isinstance(wrapper, dict):
        return []
    problems = _component(scope, 'OPTIM_WRAPPERS', wrapper, 'optim_wrapper',
                          extras=('paramwise_cfg', 'constructor'))
    problems += _component(scope, 'OPTIMIZERS', wrapper.get('optimizer'),
                           'optim_wrapper.optimizer')
    paramwise = wrapper.get('paramwise_cfg') or {}
    unknown = sorted(set(paramwise) - PARAMWISE_KEYS)
    if wrapper.get('constructor', 'DefaultOptimWrapperConstructor') == \
            'DefaultOptimWrapperConstructor' and unknown:
        reader = "mmengine's DefaultOptimWrapperConstructor"
        problems.append(f'optim_wrapper.paramwise_cfg: '
                        f'{_not_read(unknown, PARAMWISE_KEYS, reader)}; it would be ignored '
                        f'without a word')
    return problems


def _check_hooks(cfg, scope):
    problems = []
    for name, hook in (cfg.get('default_hooks') or {}).items():
        problems += _component(scope, 'HOOKS', hook, f'default_hooks.{name}')
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        problems += _component(scope, 'HOOKS', hook, f'custom_hooks.{i}')
    return problems


def _check_evaluators(cfg, scope, splits):
    problems = []
    for split in splits:
        for i, metric in enumerate(_as_list(cfg.get(f'{split}_evaluator'))):
            if isinstance(metric, dict) and metric.get('type') != 'Evaluator':
                problems += _component(scope, 'METRICS', metric, f'{split}_evaluator'
                                       + (f'.{i}' if isinstance(cfg.get(f'{split}_evaluator'),
                                                                (list, tuple)) else ''))
    return problems


# ---- classes -------------------------------------------------------------------------
def dataset_classes(dataset_cfg, scope):
    """The class names a dataset config will use (its metainfo, else its class default)."""
    meta = dataset_cfg.get('metainfo') or {}
    if meta.get('classes') is not None:
        return list(meta['classes'])
    kind = dataset_cfg.get('type')
    cls = _registry(scope, 'DATASETS').get(kind) if isinstance(kind, str) else kind
    return list(getattr(cls, 'METAINFO', {}).get('classes', ())) or None


def _num_classes_entries(node, path='model'):
    """``(dotted path, value)`` of every ``num_classes`` in the model config, the RPN's
    (always 1: object / background) left out."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'num_classes':
                yield path + '.num_classes', value
            elif key != 'rpn_head':
                yield from _num_classes_entries(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _num_classes_entries(value, f'{path}.{i}')


def _check_classes(cfg, scope, splits):
    problems, seen = [], {}
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or not isinstance(loader.get('dataset'), dict):
            continue
        for _, dataset in iter_datasets(loader['dataset']):
            try:
                classes = dataset_classes(dataset, scope)
            except Exception:  # an unknown dataset type is reported by _component
                continue
            if classes:
                seen.setdefault(split, classes)
    if len({tuple(c) for c in seen.values()}) > 1:
        problems.append('the datasets use different classes: ' + '; '.join(
            f'{split}: {len(c)} ({", ".join(map(str, c[:4]))}{", ..." if len(c) > 4 else ""})'
            for split, c in seen.items()))
    if not seen:
        return problems
    split, classes = next(iter(seen.items()))
    model = cfg.get('model', {})
    model = model.get('module', model)  # a TTA model wraps the detector / segmentor
    for path, value in _num_classes_entries(model):
        if value != len(classes):
            problems.append(f'{path} is {value!r}, but the {split} dataset has {len(classes)} '
                            f'classes ({", ".join(map(str, classes[:4]))}'
                            f'{", ..." if len(classes) > 4 else ""}): set every head\'s '
                            f'num_classes to {len(classes)}, or the dataset\'s '
                            f'metainfo.classes to the model\'s')
    return problems


def _same_bytes(a, b):
    """Two files with the same content (a copy of the annotation file scores the same)."""
    import filecmp
    try:
        return osp.getsize(a) == osp.getsize(b) and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _check_metric_ann_files(cfg, splits):
    """A COCO metric's ``ann_file`` must be the annotation file of the dataset it scores."""
    problems = []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or not isinstance(loader.get('dataset'), dict):
            continue
        leaves = list(iter_datasets(loader['dataset']))
        if len(leaves) != 1 or not leaves[0][1].get('ann_file'):
            continue
        dataset = leaves[0][1]
        ann = dataset['ann_file']
        root = dataset.get('data_root') or ''
        expected = osp.realpath(ann if osp.isabs(ann) or not root else osp.join(root, ann))
        for metric in _as_list(cfg.get(f'{split}_evaluator')):
            path = metric.get('ann_file') if isinstance(metric, dict) else None
            if path and osp.realpath(path) != expected and not _same_bytes(path, expected):
                problems.append(f'{split}_evaluator.ann_file is {path}, but the {split} '
                                f'dataset reads {expected}: the metric would score the '
                                f'predictions against other ground truth')
    return problems


def check_config(cfg, splits):
    """Every config mistake above, for the loaders / evaluators of ``splits``."""
    scope = cfg.get('default_scope')
    problems = _check_top_level(cfg)
    for split in splits:
        problems += _check_loader(cfg, split, scope)
    if 'train' in splits:
        problems += _check_schedule(cfg, scope)
        problems += _check_optimizer(cfg, scope)
        problems += _check_hooks(cfg, scope)
    problems += _check_sections(cfg, scope, splits)
    problems += _check_evaluators(cfg, scope, splits)
    problems += _check_classes(cfg, scope, splits)
    problems += _check_metric_ann_files(cfg, splits)
    problems += _check_splits(cfg, scope, splits)
    problems += check_model_keys(cfg)
    return problems


# ---- every other section -------------------------------------------------------------
def _edits(a, b):
    """Edit distance between ``a`` and ``b`` (a swap of neighbours counts once)."""
    prev2, prev = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            row.append(min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb)))
            if prev2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


@functools.lru_cache(maxsize=None)
def _near_miss(key, known):
    """The known key ``key`` is a slip of (one or two edits, for names of 6+ letters)."""
    if len(key) < 6:
        return None
    close = sorted((_edits(key, k), k) for k in known if abs(len(k) - len(key)) <= 2)
    return close[0][1] if close and close[0][0] <= 2 else None


def _check_top_level(cfg):
    problems = []
    for key in sorted(cfg.keys()):
        if key in RUNNER_KEYS:
            continue
        if key in LEGACY_KEYS:
            problems.append(f'{key}: an mmdet 2.x / mmseg 0.x key that mmengine does not read '
                            f'(it would be ignored without a word); use {LEGACY_KEYS[key]}')
            continue
        near = _near_miss(key, RUNNER_KEYS)
        if near:
            problems.append(f'{key}: nothing reads this top-level key (did you mean {near}?); '
                            f'as it is, {near} keeps its base value [--allow config-key]')
    return problems


def _plain_keys(node, known, where, reader):
    """Keys of a plain dict (no ``type``) that ``reader`` does not read."""
    if not isinstance(node, dict):
        return []
    unknown = sorted(set(node) - set(known))
    return [f'{where}: {_not_read(unknown, set(known), reader)}; it would be ignored '
            f'without a word'] if unknown else []


def _signature_keys(fn):
    names = _named(fn) or set()
    return names - {'self'}


def _check_sections(cfg, scope, splits):
    """``env_cfg``, ``randomness``, ``auto_scale_lr``, ``log_processor``, ``visualizer``,
    ``custom_imports``, ``model_wrapper_cfg``, TTA model and pipeline, val / test loops."""
    from mmengine.runner import Runner
    from mmengine.utils.dl_utils import set_multi_processing
    problems = []
    env = cfg.get('env_cfg')
    problems += _plain_keys(env, {'cudnn_benchmark', 'mp_cfg', 'dist_cfg', 'resource_limit'},
                            'env_cfg', "mmengine's Runner.setup_env")
    if isinstance(env, dict):
        problems += _plain_keys(env.get('mp_cfg'), _signature_keys(set_multi_processing)
                                - {'distributed'}, 'env_cfg.mp_cfg', 'set_multi_processing')
    problems += _plain_keys(cfg.get('randomness'), _signature_keys(Runner.set_randomness),
                            'randomness', "mmengine's Runner.set_randomness")
    problems += _plain_keys(cfg.get('auto_scale_lr'), {'enable', 'base_batch_size'},
                            'auto_scale_lr', "mmengine's Runner.scale_lr")
    problems += _plain_keys(cfg.get('custom_imports'), {'imports', 'allow_failed_imports'},
                            'custom_imports', "mmengine's import_modules_from_strings")
    processor = cfg.get('log_processor')
    if isinstance(processor, dict):
        if 'type' in processor:
            problems += _component(scope, 'LOG_PROCESSORS', processor, 'log_processor')
        else:
            from mmengine.runner import LogProcessor
            problems += _plain_keys(processor, accepted_arguments(LogProcessor) or set(),
                                    'log_processor', 'LogProcessor')
    visualizer = cfg.get('visualizer')
    problems += _component(scope, 'VISUALIZERS', visualizer, 'visualizer')
    if isinstance(visualizer, dict):
        for i, backend in enumerate(visualizer.get('vis_backends') or []):
            problems += _component(scope, 'VISBACKENDS', backend, f'visualizer.vis_backends.{i}')
    problems += _component(scope, 'MODEL_WRAPPERS', cfg.get('model_wrapper_cfg'),
                           'model_wrapper_cfg')
    if 'test' in splits:
        tta = cfg.get('tta_model')
        problems += _component(scope, 'MODELS', tta, 'tta_model', extras=('module',))
        for i, step in enumerate(cfg.get('tta_pipeline') or []):
            problems += _component(scope, 'TRANSFORMS', step, f'tta_pipeline.{i}')
            for j, sub in enumerate(step.get('transforms') or [] if isinstance(step, dict)
                                    else []):
                for k, leaf in enumerate(sub if isinstance(sub, (list, tuple)) else [sub]):
                    problems += _component(scope, 'TRANSFORMS', leaf,
                                           f'tta_pipeline.{i}.transforms.{j}.{k}')
        if 'train' not in splits and isinstance(cfg.get('test_cfg'), dict):
            problems += _component(scope, 'LOOPS', cfg.test_cfg if 'type' in cfg.test_cfg
                                   else dict(cfg.test_cfg, type='TestLoop'), 'test_cfg',
                                   extras=('evaluator',))
    return problems


# ---- the model's own keys --------------------------------------------------------------
def _find_class(scope, kind, registries):
    if not isinstance(kind, str):
        return kind if isinstance(kind, type) else None
    for name in registries:
        try:
            cls = _registered(scope, name, kind, scope)
        except Exception:  # a registry of another scope's naming
            cls = None
        if cls is not None:
            return cls
    return None


def _walk_model(scope, node, where, problems):
    """Keys of every ``type=...`` dict below the model that its class does not take."""
    if isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            _walk_model(scope, item, f'{where}.{i}', problems)
        return
    if not isinstance(node, dict):
        return
    if 'type' in node:
        init = re.search(r'(^|\.)init_cfg(\.\d+)?$', where) is not None
        registries = ('WEIGHT_INITIALIZERS',) if init else ('MODELS', 'TASK_UTILS')
        cls = _find_class(scope, node['type'], registries)
        accepted = accepted_arguments(cls) if cls is not None else None
        if accepted is not None:
            # mmengine's initialize() reads an init_cfg's override itself
            extras = {'override'} if init else {'module'} if 'module' in node else set()
            unknown = sorted(set(node) - _META - accepted - extras)
            if unknown:
                problems.append(f'{where}: {_not_read(unknown, accepted, cls.__name__)}; it '
                                f'would be ignored, or fail after the work dir exists')
    for key, value in node.items():
        if key in _LAYER_CFGS or key in ('train_cfg', 'test_cfg') and where == 'model':
            continue
        _walk_model(scope, value, f'{where}.{key}', problems)


def _model_kind(scope, model):
    cls = _find_class(scope, model.get('type'), ('MODELS',))
    for klass in getattr(cls, '__mro__', ()):
        if klass.__name__ in MODEL_CFG_KEYS:
            return klass.__name__
    return None


def _check_nms(node, where):
    if isinstance(node, dict) and 'nms' in node and isinstance(node['nms'], dict):
        return _plain_keys(node['nms'], NMS_KEYS, f'{where}.nms', "mmcv's batched_nms / nms")
    return []


def _check_model_cfgs(scope, model, where):
    """``model.train_cfg`` / ``model.test_cfg`` against what the model kind reads."""
    kind = _model_kind(scope, model)
    if kind is None:
        return []
    if kind == 'TwoStageDetector' and not isinstance((model.get('roi_head') or {}).get(
            'bbox_head'), dict):
        return []  # cascade heads take lists of rcnn settings: not described here
    problems = []
    for part, schema in MODEL_CFG_KEYS[kind].items():
        node = model.get(part)
        if not isinstance(node, dict):
            continue
        if isinstance(schema, set):
            problems += _plain_keys(node, schema, f'{where}.{part}', kind)
            continue
        problems += _plain_keys(node, set(schema), f'{where}.{part}', kind)
        for stage, keys in schema.items():
            problems += _plain_keys(node.get(stage), keys, f'{where}.{part}.{stage}', kind)
            problems += _check_nms(node.get(stage), f'{where}.{part}.{stage}')
    return problems


def check_model_keys(cfg):
    """Keys below ``model`` that nothing reads (the model build itself only fails on some,
    and names no alternative)."""
    scope = cfg.get('default_scope')
    model = cfg.get('model')
    if not isinstance(model, dict):
        return []
    problems = []
    _walk_model(scope, model, 'model', problems)
    inner = model.get('module') if isinstance(model.get('module'), dict) else model
    where = 'model.module' if inner is not model else 'model'
    return problems + _check_model_cfgs(scope, inner, where)


# ---- splits that must agree -------------------------------------------------------------
def dataset_default(dataset_cfg, scope, name, fallback):
    """``dataset_cfg[name]``, else the dataset class's default (e.g. ADE20KDataset's
    ``reduce_zero_label=True``, ``img_suffix='.jpg'``)."""
    if name in dataset_cfg:
        return dataset_cfg[name]
    kind = dataset_cfg.get('type')
    try:
        cls = _registry(scope, 'DATASETS').get(kind) if isinstance(kind, str) else kind
    except Exception:
        cls = None
    for klass in getattr(cls, '__mro__', ()):
        init = vars(klass).get('__init__')
        param = inspect.signature(init).parameters.get(name) if init else None
        if param is not None and param.default is not param.empty:
            return param.default
    return fallback


def _leaf(cfg, split):
    loader = cfg.get(f'{split}_dataloader')
    if not isinstance(loader, dict) or not isinstance(loader.get('dataset'), dict):
        return []
    return [d for _, d in iter_datasets(loader['dataset'])]


def _reads(dataset):
    """What a dataset reads: its annotation file, else its image folder (resolved)."""
    root = dataset.get('data_root') or ''
    prefix = dataset.get('data_prefix') or {}

    def full(path):
        return osp.realpath(path if osp.isabs(path) or not root else osp.join(root, path))
    if dataset.get('ann_file'):
        return 'annotation file', full(dataset['ann_file'])
    folder = prefix.get('img_path') or prefix.get('img')
    return ('image folder', full(folder)) if folder else (None, None)


def _check_splits(cfg, scope, splits):
    problems = []
    evaluated = [s for s in splits if s in ('val', 'test')]
    train = _leaf(cfg, 'train')
    for split in evaluated:
        trained_on = {_reads(d) for d in train} - {(None, None)}
        for dataset in _leaf(cfg, split):
            what, path = _reads(dataset)
            if (what, path) in trained_on:
                problems.append(f'{split}_dataloader reads the training data ({what} {path}, '
                                f'the same as train_dataloader): its numbers would measure '
                                f'the training set, not the held-out split '
                                f'[--allow eval-on-train]')
    if scope != 'mmseg':
        return problems
    conventions = {}
    for split in ('train', 'val', 'test'):
        for dataset in _leaf(cfg, split):
            reduce = bool(dataset_default(dataset, scope, 'reduce_zero_label', False))
            conventions.setdefault(split, reduce)
            for i, step in enumerate(dataset.get('pipeline') or []):
                if isinstance(step, dict) and str(step.get('type', '')).endswith(
                        'LoadAnnotations') and step.get('reduce_zero_label') is not None \
                        and bool(step['reduce_zero_label']) != reduce:
                    problems.append(
                        f'{split}_dataloader: pipeline.{i} LoadAnnotations has '
                        f'reduce_zero_label={step["reduce_zero_label"]}, the dataset '
                        f'{reduce}: mmseg stops with an assertion at the first batch; set it '
                        f'on the dataset only')
    if len(set(conventions.values())) > 1:
        problems.append('the splits read labels with different conventions: ' + ', '.join(
            f'{s} reduce_zero_label={v}' for s, v in conventions.items()) + ': a model '
            'trained on one is scored on labels shifted by one class')
    return problems


# ---- --cfg-options ------------------------------------------------------------------------
def _lookup(node, parts):
    """``(found, value)`` of the dotted path ``parts`` in ``node``."""
    for part in parts:
        if hasattr(node, 'keys') and part in node:  # a dict, ConfigDict or the Config
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.lstrip('-').isdigit():
            index = int(part)
            if not -len(node) <= index < len(node):
                return False, None
            node = node[index]
        else:
            return False, None
    return True, node


def _uses(node, value, path=''):
    """Dotted paths below ``node`` whose value equals ``value``."""
    if isinstance(node, dict):
        for key, sub in node.items():
            yield from _uses(sub, value, f'{path}.{key}' if path else key)
    elif isinstance(node, (list, tuple)):
        for i, sub in enumerate(node):
            yield from _uses(sub, value, f'{path}.{i}')
    elif path and node == value and not isinstance(node, bool):
        yield path


def _kind(value):
    if isinstance(value, bool):
        return 'bool'
    if isinstance(value, (int, float)):
        return 'number'
    if isinstance(value, str):
        return 'str'
    if isinstance(value, (list, tuple)):
        return 'list'
    if isinstance(value, dict):
        return 'dict'
    return None if value is None else type(value).__name__


def check_cfg_options(cfg, options):
    """Problems with ``--cfg-options`` (``{dotted key: parsed value}``) against the loaded
    config ``cfg``, before they are merged (see the module docstring)."""
    problems = []
    for key, value in (options or {}).items():
        parts = key.split('.')
        top = parts[0]
        if top not in RUNNER_KEYS:
            if top in cfg:
                found, old = _lookup(cfg, parts)
                uses = sorted({u for u in _uses({k: v for k, v in cfg.items() if k != top},
                                                 old)} if found and _kind(old) in
                              ('str', 'number') else set())
                hint = (f'set the keys that use it: {", ".join(uses[:4])}' if uses else
                        'set the keys that use it')
                problems.append(f'--cfg-options {key}={value!r}: {top} is a variable of the '
                                f'config file, substituted where it is used when the file was '
                                f'read; changing it now changes nothing. {hint}')
            else:
                near = _near_miss(top, RUNNER_KEYS)
                problems.append(f'--cfg-options {key}: nothing reads the top-level key {top}'
                                + (f' (did you mean {near}?)' if near else ''))
            continue
        parent_found, parent = _lookup(cfg, parts[:-1])
        if isinstance(parent, (list, tuple)) and not parts[-1].lstrip('-').isdigit():
            problems.append(f'--cfg-options {key}: {".".join(parts[:-1])} is a list; address '
                            f'its items by index ({".".join(parts[:-1])}.0.{parts[-1]})')
            continue
        found, old = _lookup(cfg, parts)
        if not found:
            for depth in range(1, len(parts)):
                ok, node = _lookup(cfg, parts[:depth])
                if not ok:
                    break
                where = ".".join(parts[:depth])
                if isinstance(node, (list, tuple)):
                    if _lookup(node, parts[depth:depth + 1])[0]:
                        continue
                    problems.append(f'--cfg-options {key}: {where} is a list of {len(node)} '
                                    f'items; {parts[depth]!r} is not one of its indices '
                                    f'(0..{len(node) - 1})')
                    break
                if node is not None and not hasattr(node, 'keys'):
                    problems.append(f'--cfg-options {key}: {where} is a {_kind(node)} '
                                    f'({node!r}), which has no key {parts[depth]!r}')
                    break
            continue  # a new key of a dict: the component checks name it if unread
        if old is None or value is None:
            continue
        was, now = _kind(old), _kind(value)
        if was == now or {was, now} <= {'list', 'tuple'} or \
                (was in ('list', 'number') and now in ('list', 'number') and
                 key.endswith(('in_channels', 'out_indices', 'in_index', 'scale', 'size'))):
            continue
        if was in ('number', 'bool', 'list', 'dict'):
            problems.append(f'--cfg-options {key}={value!r}: the config has a {was} there '
                            f'({old!r}); {value!r} is a {now}'
                            + (' (a number was expected: check for a typo)' if was == 'number'
                               and now == 'str' else '')
                            + (' (booleans are written True / False)' if was == 'bool' else ''))
    return problems
