"""Params (M) and MACs (G) of a whole detector or segmentor, as in the paper's tables.

``tools/get_flops.py`` is the command line. Defaults follow the paper: a detector at 800x1280
(Table 2), a segmentor at 512x2048 (Table 3).
Counting uses mmengine's FlopAnalyzer, which counts one multiply-add as one MAC, traced
through the model's ``tensor`` forward: for Mask R-CNN backbone, FPN, RPN and the RoI heads
on the RPN's proposals; for UperNet backbone and decode head, i.e. without the auxiliary
head, which only runs in training. Params count every parameter (auxiliary head included),
which is what reproduces the published UperNet sizes (results/NOTES.md).

The selective scan of SSM backbones is invisible to that counter (a CUDA kernel, or many
small element-wise ops in the torch backend). While counting, the scan module itself runs a
stand-in op of the same shapes (:func:`backbones.ops.counting_scans`), counted by
:func:`selective_scan_macs`.

``results/complexity.csv`` caches one row per config, keyed on what determines the count:
the resolved model config without its pretrained-weights path, and the input shape; a fresh
clone anywhere reuses the committed rows.
"""
import csv
import fcntl
import fnmatch
import hashlib
import io
import json
import os.path as osp
import time
from contextlib import contextmanager

from ..engine.fileio import write_file_atomic
from ..engine.launch import REPO, find_configs, load_config
from ..ops import counting_scans

__all__ = ['measure', 'measure_all', 'selective_scan_macs', 'config_digest', 'DEFAULT_SHAPE',
           'CONFIG_DIRS']
CONFIG_DIRS = (osp.join(REPO, 'det_configs'), osp.join(REPO, 'seg_configs'))

DEFAULT_SHAPE = {'mmdet': (800, 1280), 'mmseg': (512, 2048)}


def selective_scan_macs(batch, channels, length, d_state, with_d=True):
    """MACs of one selective scan over ``length`` tokens.

    Per token, channel and state: 9 operations: the discretisation (delta*A, its exp,
    delta*B*u: 4), the state update (h = exp(delta*A)*h + delta*B*u: 2) and the output
    (y += C*h: 2), plus 1 for reading the state into the output sum. Per token and channel,
    1 more for the skip term D*u. This is the count the mamba-ssm authors give for their
    kernel and the one VMamba's published complexities use (9*B*L*D*N + B*D*L), so our
    MACs compare with the tables like for like.
    """
    macs = 9 * batch * length * channels * d_state
    if with_d:
        macs += batch * channels * length
    return macs


def _scan_handle(inputs, outputs):
    from mmengine.analysis.jit_handles import get_shape
    u_shape, a_shape = get_shape(inputs[0]), get_shape(inputs[2])
    batch, channels, length = u_shape
    with_d = len(inputs) > 5 and get_shape(inputs[5]) is not None
    return selective_scan_macs(batch, channels, length, a_shape[-1], with_d)


def _dummy_batch(scope, shape):
    import torch
    h, w = shape
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                scale_factor=(1.0, 1.0))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        sample = DetDataSample(metainfo=meta)
    else:
        from mmseg.structures import SegDataSample
        sample = SegDataSample(metainfo=meta)
    return torch.randn(1, 3, h, w), [sample]


def measure(config, shape=None):
    """Returns dict(params_m, macs_g, shape) for ``config`` (a path)."""
    from functools import partial

    import torch
    from mmengine.analysis import FlopAnalyzer, parameter_count
    from mmengine.registry import MODELS, DefaultScope

    cfg = load_config(config)
    scope = cfg.default_scope
    shape = tuple(shape or DEFAULT_SHAPE[scope])
    model_cfg = cfg.model
    model_cfg.backbone.init_cfg = None  # complexity does not depend on the weights
    torch.manual_seed(0)  # the number of RPN proposals (so RoI-head MACs) depends on weights
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(model_cfg)
    model.eval()
    inputs, samples = _dummy_batch(scope, shape)
    model.forward = partial(model.forward, data_samples=samples, mode='tensor')
    with counting_scans() as op_name, torch.no_grad():
        analyzer = FlopAnalyzer(model, inputs)
        analyzer.set_op_handle(op_name, _scan_handle)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        macs = analyzer.total()
    params = parameter_count(model)['']
    return dict(params_m=round(params / 1e6, 2), macs_g=round(macs / 1e9, 1),
                shape=f'{shape[0]}x{shape[1]}')


def config_digest(cfg):
    """Hash of the resolved model config (bases included), without the pretrained-weights
    path: any edit of the model invalidates its cached row; where the checkout lives, the
    data paths and the schedule do not."""
    model = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)
    backbone = dict(model.get('backbone') or {})
    backbone.pop('init_cfg', None)
    model['backbone'] = backbone
    text = json.dumps(model, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


FIELDS = ['config', 'config_digest', 'params_m', 'macs_g', 'shape']


def _write_rows(out, rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator='\n')
    writer.writeheader()
    writer.writerows({k: r[k] for k in FIELDS} for r in rows)
    write_file_atomic(buf.getvalue(), out)


def _read_rows(out):
    if not osp.isfile(out):
        return {}
    with open(out, newline='') as f:
        return {r['config']: r for r in csv.DictReader(f)}


@contextmanager
def _locked(out):
    """Serialise read-merge-write of ``out`` between processes (parallel --all / --only runs
    would otherwise drop each other's new rows)."""
    with open(out + '.lock', 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def measure_all(out, shape=None, force=False, log=print, only=None):
    """Measure every model config (or those whose file name matches one of the glob patterns
    ``only``) into ``out`` (CSV, in config order). Rows of unchanged configs are kept from a
    previous run unless ``force``; rows of configs outside ``only`` are kept as they are. The
    file is rewritten after each measurement, merged under a lock with what is on disk then
    (so an interrupted run loses nothing and parallel runs keep each other's rows); rows of
    deleted configs are dropped."""
    old = {} if force else _read_rows(out)
    configs = find_configs(CONFIG_DIRS)
    names = [osp.basename(p) for p in configs]
    if only:
        picked = [(p, n) for p, n in zip(configs, names)
                  if any(fnmatch.fnmatch(n, pat) for pat in only)]
        if not picked:
            raise ValueError(f'no config matches {only}')
    else:
        picked = list(zip(configs, names))
    measured = {}

    def write():
        with _locked(out):
            table = {n: r for n, r in _read_rows(out).items() if n in names}
            table.update(measured)
            _write_rows(out, [table[n] for n in names if n in table])
            return table

    for i, (path, name) in enumerate(picked, 1):
        cfg, start = load_config(path), time.time()
        digest = config_digest(cfg)
        wanted = 'x'.join(map(str, shape or DEFAULT_SHAPE[cfg.default_scope]))
        prev = old.get(name, {})
        if prev.get('config_digest') == digest and prev.get('shape') == wanted:
            log(f'[get_flops {i}/{len(picked)}] {name}: unchanged, '
                f"{prev['params_m']}M params, {prev['macs_g']}G MACs")
            continue
        measured[name] = dict(config=name, config_digest=digest, **measure(path, shape))
        log(f'[get_flops {i}/{len(picked)}] {name}: {measured[name]["params_m"]}M params, '
            f'{measured[name]["macs_g"]}G MACs at {measured[name]["shape"]} '
            f'({time.time() - start:.0f}s)')
        write()
    table = write()
    return [table[n] for n in names if n in table]
