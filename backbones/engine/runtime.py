"""Runtime fixes the pinned OpenMMLab stack needs on current torch: the complete list.

Importing ``backbones`` applies the first two; the tools apply the CPU ones.

1. :func:`allow_mmengine_checkpoints`: torch >= 2.6 loads checkpoints with
  ``weights_only=True``. mmengine 0.10.7 saves its
  ``MessageHub`` (``HistoryBuffer`` objects holding numpy arrays) into every checkpoint, so
  resuming or testing from its own checkpoints fails. :func:`allow_mmengine_checkpoints`
  adds exactly those classes to torch's allow-list instead of turning ``weights_only`` off,
  so a checkpoint that carries anything else (e.g. pickled code) is still refused.
2. :func:`cache_package_model_index`: mmengine's loader of package model-index files is
   replaced, for the whole process, by one that parses each file once and hands every
   caller its own deep copy (no mutable state is shared between config loads).
3. :func:`adapt_cfg_to_device` / :func:`init_cpu_distributed` (tools/train.py, test.py):
   GPU configs run on a CPU-only machine, each change logged, the files untouched.
4. ``CPUDistributedDataParallel`` (registered in mmengine's MODEL_WRAPPERS on import).

Private mmengine APIs used here and elsewhere: :mod:`backbones.engine.mmengine_api`.
"""
import copy
import functools
import pickle

import numpy as np
import torch


def _numpy_globals():
    """numpy objects that pickled arrays and scalars refer to (numpy 1.x and 2.x names)."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    objs = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    kinds = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
             np.uint64, np.float16, np.float32, np.float64]
    objs += [type(np.dtype(k)) for k in kinds]  # numpy.dtypes.Float64DType & co.
    return objs


def _history_buffer_getattr(obj, name):
    """Stands in for ``getattr`` while unpickling.

    mmengine pickles its registered statistics (``HistoryBuffer._statistics_methods``)
    as ``getattr(HistoryBuffer, 'mean')`` & co. Allowing the real ``getattr`` would
    let a checkpoint reach any attribute of anything it can name; this version resolves
    exactly those statistics methods and refuses everything else.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    # The four built-ins are registered lazily (first HistoryBuffer()), hence listed here.
    if obj is HistoryBuffer and (name in ('min', 'max', 'current', 'mean')
                                 or name in HistoryBuffer._statistics_methods):  # private
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); only HistoryBuffer statistics '
        'methods are allowed')


def mmengine_checkpoint_globals():
    """Every non-tensor global that mmengine / mmdet / mmseg checkpoints legitimately hold."""
    from mmengine.logging.history_buffer import HistoryBuffer
    getattr_entries = [(_history_buffer_getattr, f'{module}.getattr')
                       for module in ('builtins', '__builtin__')]
    return [HistoryBuffer] + _numpy_globals() + getattr_entries


def allow_mmengine_checkpoints():
    """Allow-list mmengine's checkpoint contents for ``torch.load(weights_only=True)``."""
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())


def cache_package_model_index():
    """Parse each installed package's model-index YAML files once per process.

    To resolve a ``mmdet::`` / ``mmseg::`` base, mmengine first parses every metafile of
    that package (~80 YAML files, about 0.2 s) and only then falls back to the plain path;
    it does so for each base of each config, so loading one of our configs cost about 1 s
    and the 20 configs of the leaderboard about 20 s. The files are read-only package data.
    """
    from mmengine.config import utils
    if getattr(utils.load, '_bench_cached', False):
        return
    parse = functools.lru_cache(maxsize=None)(utils.load)

    @functools.wraps(utils.load)
    def load(file, *args, **kwargs):
        try:
            return copy.deepcopy(parse(file, *args, **kwargs))
        except TypeError:  # unhashable arguments (a file object): no caching
            return parse.__wrapped__(file, *args, **kwargs)

    load._bench_cached = True
    load.cache_info = parse.cache_info
    utils.load = load


# ---------------------------------------------------------------------------------------
# Running GPU configs on a CPU-only machine (tests, CI, the toy main job)
# ---------------------------------------------------------------------------------------
_AMP_ONLY_KEYS = ('loss_scale', 'dtype', 'use_fsdp')


def adapt_cfg_to_device(cfg, launcher='none', log=print):
    """Make a GPU config runnable where CUDA is absent, in memory only (files untouched).

    * ``AmpOptimWrapper`` asserts CUDA at build time, so it becomes a plain fp32
      ``OptimWrapper`` (mmengine's CPU autocast only supports bfloat16 anyway).
    * With a distributed launcher: gloo instead of nccl, and a DDP wrapper without
      ``device_ids`` that also reverts SyncBN (no CPU kernel) to plain BN.

    Returns the list of changes made; each one is also passed to ``log``.
    """
    changes = []
    if torch.cuda.is_available():
        return changes
    optim_wrapper = cfg.get('optim_wrapper')
    if optim_wrapper is not None and optim_wrapper.get('type') == 'AmpOptimWrapper':
        optim_wrapper['type'] = 'OptimWrapper'
        for key in _AMP_ONLY_KEYS:
            optim_wrapper.pop(key, None)
        changes.append('no CUDA device: AmpOptimWrapper replaced by OptimWrapper (fp32 training)')
    if launcher != 'none':
        env_cfg = dict(cfg.get('env_cfg') or {})
        env_cfg['dist_cfg'] = dict(env_cfg.get('dist_cfg') or {}, backend='gloo')
        cfg['env_cfg'] = env_cfg
        wrapper = dict(cfg.get('model_wrapper_cfg') or {})
        wrapper['type'] = 'CPUDistributedDataParallel'
        wrapper.setdefault('broadcast_buffers', False)
        wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
        cfg['model_wrapper_cfg'] = wrapper
        changes.append('no CUDA device: distributed on CPU with the gloo backend; '
                       'SyncBN layers become BN')
    for change in changes:
        log(change)
    return changes


def init_cpu_distributed(launcher):
    """Join the process group with gloo, as mmengine's launcher would with nccl.

    mmengine's ``pytorch`` launcher calls ``torch.cuda.set_device`` and so cannot start
    on a CPU-only machine; once the group exists, the Runner skips its own init.
    """
    import torch.distributed as dist
    if launcher == 'none' or torch.cuda.is_available() or dist.is_initialized():
        return False
    if launcher != 'pytorch':
        raise RuntimeError(f'launcher {launcher!r} needs GPUs; on CPU use --launcher pytorch '
                           '(tools/dist_train.sh)')
    dist.init_process_group(backend='gloo')
    return True


def leave_process_group():
    """After a finished run: wait for every rank, then close the group.

    Without it a rank that finishes first exits while gloo's threads in the others still
    hold its connection, and they abort ("terminate called without an active exception")
    after the results are written, failing the launcher.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _register_cpu_ddp():
    from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
    from mmengine.registry import MODEL_WRAPPERS

    if 'CPUDistributedDataParallel' in MODEL_WRAPPERS.module_dict:
        return

    @MODEL_WRAPPERS.register_module()
    class CPUDistributedDataParallel(MMDistributedDataParallel):
        """DDP for CPU processes: no ``device_ids`` (the Runner passes the local rank,
        which DDP rejects for CPU modules) and SyncBN reverted to BN."""

        def __init__(self, module, device_ids=None, **kwargs):
            super().__init__(module=revert_sync_batchnorm(module), device_ids=None, **kwargs)


_register_cpu_ddp()
