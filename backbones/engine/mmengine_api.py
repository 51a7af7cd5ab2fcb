"""Every private (underscore or undocumented) API of the OpenMMLab stack that the suite uses.

They are safe only because ``mmengine==0.10.7`` (and mmdet 3.3.0) are pinned. The rest of the
package reaches them only through the accessors below, so an upgrade has one file to read,
and :func:`check_private_apis` (run by ``tests/test_runtime.py``) fails loudly, naming the API,
when an installed version lacks one.

API, who uses it, and why:

* ``Runner._resume`` (``RandomStateHook``): tell ``--resume`` from ``load_from`` / testing.
* ``Runner._randomness_cfg`` (``RandomStateHook``): the run's ``diff_rank_seed``.
* ``CheckpointHook._save_checkpoint`` (``GracefulStopHook``): save at the stopping iteration;
  ``CheckpointHook.last_ckpt / file_backend / filename_tmpl / out_dir``: that file's name.
* ``IterBasedTrainLoop.dataloader_iterator`` (``RandomStateHook``): restore the generator
  states after mmengine's resume skip.
* ``AmpOptimWrapper.loss_scaler`` (``NonFiniteLossHook``, undocumented): the GradScaler whose
  scale drops on every skipped step. Were it renamed, AMP runs would pass for fp32 ones.
* ``HistoryBuffer._statistics_methods`` (``runtime.allow_mmengine_checkpoints``): the methods
  mmengine's checkpoints pickle.
* ``mmengine.config.utils.load`` (``runtime.cache_package_model_index``): parse the
  model-index files once.
* ``mmdet.evaluation.metrics.coco_metric.{COCO, COCOeval, dump}`` (``FastCocoMetric``):
  evaluate with faster-coco-eval.
"""
import importlib

__all__ = ['PRIVATE_APIS', 'check_private_apis', 'is_resuming', 'randomness_cfg',
           'save_checkpoint_now', 'checkpoint_path', 'replace_loop_iterator', 'loss_scaler']

#: (module, attribute path) of each private API above; instance attributes are checked on
#: the class or, for attributes set in ``__init__``, in the source of ``__init__``.
PRIVATE_APIS = (
    ('mmengine.runner', 'Runner._resume'),
    ('mmengine.runner', 'Runner._randomness_cfg'),
    ('mmengine.hooks', 'CheckpointHook._save_checkpoint'),
    ('mmengine.hooks', 'CheckpointHook.last_ckpt'),
    ('mmengine.hooks', 'CheckpointHook.file_backend'),
    ('mmengine.hooks', 'CheckpointHook.filename_tmpl'),
    ('mmengine.hooks', 'CheckpointHook.out_dir'),
    ('mmengine.runner', 'IterBasedTrainLoop.dataloader_iterator'),
    ('mmengine.optim', 'AmpOptimWrapper.loss_scaler'),
    ('mmengine.logging.history_buffer', 'HistoryBuffer._statistics_methods'),
    ('mmengine.config.utils', 'load'),
    ('mmdet.evaluation.metrics.coco_metric', 'COCO'),
    ('mmdet.evaluation.metrics.coco_metric', 'COCOeval'),
    ('mmdet.evaluation.metrics.coco_metric', 'dump'),
)


def _has(module_name, path):
    import inspect
    obj = importlib.import_module(module_name)
    *owners, attr = path.split('.')
    for name in owners:
        obj = getattr(obj, name, None)
        if obj is None:
            return False
    if hasattr(obj, attr):
        return True
    if isinstance(obj, type):  # set on instances: look for the assignment in its methods
        for cls in obj.__mro__:
            for fn in vars(cls).values():
                try:
                    source = inspect.getsource(fn)
                except (OSError, TypeError):
                    continue
                if f'self.{attr} =' in source or f'self.{attr}:' in source:
                    return True
    return False


def check_private_apis(apis=PRIVATE_APIS):
    """Raise RuntimeError naming every private API the installed stack lacks."""
    missing = [f'{module}.{path}' for module, path in apis if not _has(module, path)]
    if missing:
        import mmengine
        raise RuntimeError(
            f'the installed OpenMMLab stack (mmengine {mmengine.__version__}) lacks private '
            f'APIs this suite relies on: {", ".join(missing)}. The suite is pinned to '
            f'mmengine==0.10.7 / mmdet==3.3.0; see backbones/engine/mmengine_api.py.')


# ---- accessors: the only places the rest of the package touches them ------------------
def is_resuming(runner):
    """True when the run was started with ``--resume`` (not ``load_from`` or testing)."""
    return bool(getattr(runner, '_resume', False))


def randomness_cfg(runner):
    return runner._randomness_cfg


def checkpoint_path(hook, step):
    """The file a by-iteration ``CheckpointHook`` writes for ``step``."""
    return hook.file_backend.join_path(hook.out_dir, hook.filename_tmpl.format(step))


def save_checkpoint_now(hook, runner):
    """Have ``hook`` save a checkpoint of the current iteration; returns its path."""
    hook._save_checkpoint(runner)
    return hook.last_ckpt


def last_saved(hook):
    return getattr(hook, 'last_ckpt', None)


def replace_loop_iterator(loop, wrap):
    """Wrap the data iterator of an ``IterBasedTrainLoop``: ``wrap(iterator)``."""
    loop.dataloader_iterator = wrap(loop.dataloader_iterator)


def loss_scaler(wrapper):
    """The dynamic loss scaler (a ``torch.amp.GradScaler``) of an AMP optimizer wrapper, or
    None for an fp32 one."""
    scaler = getattr(wrapper, 'loss_scaler', None)
    return scaler if scaler is not None and hasattr(scaler, 'get_scale') else None
