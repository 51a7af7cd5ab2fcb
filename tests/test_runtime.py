"""The runtime fixes: weights_only checkpoints, AMP / DDP / SyncBN on CPU."""
import hashlib
import os
import os.path as osp
import pickle

import pytest
import torch
from mmengine.config import Config

import backbones  # noqa: F401  (applies the allow-list)
from backbones.engine.checkpoint import CheckpointError, load_checkpoint_file
from backbones.engine.runtime import adapt_cfg_to_device, mmengine_checkpoint_globals
from conftest import REPO, TEST_CONFIGS


class _RunsCode:
    """Unpickling this calls os.getpid: stands in for any code a checkpoint could run."""

    def __reduce__(self):
        return (os.getpid, ())


def _mmengine_like_checkpoint():
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('test_runtime')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('iter', 3)
    return {'meta': {'epoch': 1, 'iter': 3, 'seed': 0, 'dataset_meta': {'classes': ('a', 'b')},
                     'cfg': 'model = dict()'},
            'state_dict': {'w': torch.ones(2)},
            'message_hub': hub.state_dict(),
            'optimizer': {'state': {}, 'param_groups': [{'lr': 0.1, 'params': [0]}]}}


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / 'epoch_1.pth'
    torch.save(_mmengine_like_checkpoint(), path)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt['message_hub']['log_scalars']['train/loss'].mean() == pytest.approx(1.0)
    assert load_checkpoint_file(path)['meta']['iter'] == 3


def test_mmengine_checkpoint_needs_the_allow_list(tmp_path):
    """Without our allow-list the same file fails: the fix is what makes it load."""
    path = tmp_path / 'epoch_1.pth'
    torch.save(_mmengine_like_checkpoint(), path)
    saved = torch.serialization.get_safe_globals()
    try:
        torch.serialization.clear_safe_globals()
        with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
            torch.load(path, weights_only=True)
    finally:
        torch.serialization.add_safe_globals(saved)


def test_pickled_code_is_still_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'payload': _RunsCode()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError, match='refusing to load'):
        load_checkpoint_file(path)


def test_allow_list_is_exact():
    """The allow-list is exactly these globals (compared as a set, not by membership: an
    added entry must be a decision someone makes here)."""
    names = {g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__name__}'
             for g in mmengine_checkpoint_globals()}
    dtypes = {f'numpy.dtypes.{k}DType' for k in (
        'Bool', 'Int8', 'Int16', 'Int32', 'Int64', 'UInt8', 'UInt16', 'UInt32', 'UInt64',
        'Float16', 'Float32', 'Float64')}
    core = 'numpy._core' if np_major() >= 2 else 'numpy.core'
    assert names == {'mmengine.logging.history_buffer.HistoryBuffer',
                     # getattr is only a stand-in that resolves HistoryBuffer statistics
                     'builtins.getattr', '__builtin__.getattr',
                     f'{core}.multiarray._reconstruct', f'{core}.multiarray.scalar',
                     'numpy.ndarray', 'numpy.dtype'} | dtypes


def np_major():
    import numpy
    return int(numpy.__version__.split('.')[0])


class _GetattrEscape:
    """Pickles as getattr(HistoryBuffer, '__init__'): the first step from an allowed class
    towards its module's globals, i.e. towards code."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


def test_getattr_limited_to_history_buffer(tmp_path):
    path = tmp_path / 'sneaky.pth'
    torch.save({'x': _GetattrEscape()}, path)
    with pytest.raises(CheckpointError, match='only HistoryBuffer statistics'):
        load_checkpoint_file(path)


def _sha(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def test_amp_swapped_on_cpu_without_editing_the_file(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    path = f'{TEST_CONFIGS}/mask-rcnn_r18_fpn_amp-1x_coco.py'
    before = _sha(path)
    cfg = Config.fromfile(path)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    logged = []
    changes = adapt_cfg_to_device(cfg, 'none', log=logged.append)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    assert cfg.optim_wrapper.optimizer.type == 'SGD'  # the optimizer itself is untouched
    assert logged == changes and 'AmpOptimWrapper' in logged[0]
    assert _sha(path) == before


def test_amp_kept_when_cuda_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = Config.fromfile(f'{TEST_CONFIGS}/mask-rcnn_r18_fpn_amp-1x_coco.py')
    assert adapt_cfg_to_device(cfg, 'pytorch') == []
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert 'model_wrapper_cfg' not in cfg


def test_cpu_ddp_wrapper_reverts_syncbn(monkeypatch, tmp_path):
    """The gloo path: a SyncBN model is wrapped without device_ids and trains on CPU."""
    import torch.distributed as dist
    from mmengine.registry import MODEL_WRAPPERS
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper')))
    adapt_cfg_to_device(cfg, 'pytorch', log=lambda _: None)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.type == 'CPUDistributedDataParallel'

    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    try:
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.SyncBatchNorm(4))
        wrapped = MODEL_WRAPPERS.build(dict(cfg.model_wrapper_cfg),
                                       default_args=dict(module=model, device_ids=[0]))
        assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in wrapped.modules())
        assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in wrapped.modules())
        wrapped.module(torch.randn(2, 3, 4, 4)).sum().backward()
    finally:
        dist.destroy_process_group()


def test_package_model_index_is_parsed_once_and_configs_are_unchanged(monkeypatch):
    from mmengine.config import utils as config_utils
    config = osp.join(REPO, 'det_configs', 'mask-rcnn_mambaout-t_fpn_8xb2-amp-1x_coco.py')
    assert hasattr(config_utils.load, 'cache_info')
    cached = Config.fromfile(config).pretty_text
    hits = config_utils.load.cache_info().hits
    Config.fromfile(config)
    assert config_utils.load.cache_info().hits > hits  # the second load re-parsed nothing
    monkeypatch.setattr(config_utils, 'load', config_utils.load.__wrapped__)
    assert Config.fromfile(config).pretty_text == cached


def test_every_private_mmengine_api_used_is_there():
    from backbones.engine.mmengine_api import check_private_apis
    check_private_apis()


@pytest.mark.parametrize('owner,attr', [('mmengine.hooks.CheckpointHook', '_save_checkpoint'),
                                        ('mmengine.runner.IterBasedTrainLoop', '__init__')])
def test_a_missing_private_api_fails_loudly_naming_it(owner, attr, monkeypatch):
    """A different mmengine without one of them is refused with its name, not an
    AttributeError deep inside a hook hours into a run."""
    import importlib

    from backbones.engine.mmengine_api import PRIVATE_APIS, check_private_apis
    module, cls = owner.rsplit('.', 1)
    if attr == '__init__':  # an attribute set in __init__: its assignment is gone
        monkeypatch.setattr(getattr(importlib.import_module(module), cls), '__init__',
                            lambda self: None)
        missing = f'{module}.{cls}.dataloader_iterator'
    else:
        monkeypatch.delattr(getattr(importlib.import_module(module), cls), attr)
        missing = f'{module}.{cls}.{attr}'
    with pytest.raises(RuntimeError, match=rf'lacks private APIs .*{missing}.*mmengine==0\.10\.7'):
        check_private_apis(PRIVATE_APIS)
