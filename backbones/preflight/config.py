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
"""
import inspect
import os.path as osp

from ..datasets.walk import iter_datasets

__all__ = ['check_config', 'accepted_arguments', 'PARAMWISE_KEYS']

#: Options ``DefaultOptimWrapperConstructor`` reads from ``paramwise_cfg`` (mmengine
#: 0.10.7; tests/test_preflight.py compares this with its source).
PARAMWISE_KEYS = frozenset({'bias_decay_mult', 'bias_lr_mult', 'bypass_duplicate',
                            'custom_keys', 'dcn_offset_lr_mult', 'dwconv_decay_mult',
                            'flat_decay_mult', 'norm_decay_mult'})
#: Dataloader keys mmengine's ``Runner.build_dataloader`` consumes itself.
_LOADER_KEYS = {'dataset', 'sampler', 'batch_sampler', 'collate_fn', 'worker_init_fn',
                'num_batch_per_epoch'}
_META = {'type', '_scope_'}


def accepted_arguments(obj):
    """Keyword names the constructor of ``obj`` (a class or function) accepts, or None when
    it takes any (``**kwargs`` that leave for code we cannot see)."""
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
    return None


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


def _component(scope, registry, node, where, extras=()):
    """Problems of one ``type=...`` dict: an unknown type, or keys its class does not take."""
    if not isinstance(node, dict) or 'type' not in node:
        return []
    kind = node['type']
    if isinstance(kind, str):
        from mmengine.registry import DefaultScope
        with DefaultScope.overwrite_default_scope(node.get('_scope_', scope)):
            cls = _registry(scope, registry).get(kind)
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
            if path and osp.realpath(path) != expected:
                problems.append(f'{split}_evaluator.ann_file is {path}, but the {split} '
                                f'dataset reads {expected}: the metric would score the '
                                f'predictions against other ground truth')
    return problems


def check_config(cfg, splits):
    """Every config mistake above, for the loaders / evaluators of ``splits``."""
    scope = cfg.get('default_scope')
    problems = []
    for split in splits:
        problems += _check_loader(cfg, split, scope)
    if 'train' in splits:
        problems += _check_schedule(cfg, scope)
        problems += _check_optimizer(cfg, scope)
        problems += _check_hooks(cfg, scope)
    problems += _check_evaluators(cfg, scope, splits)
    problems += _check_classes(cfg, scope, splits)
    problems += _check_metric_ann_files(cfg, splits)
    return problems
