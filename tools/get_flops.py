"""Params (M) and MACs (G) of a whole detector or segmentor, as in the paper's tables.

    python tools/get_flops.py CONFIG [--shape H W]
    python tools/get_flops.py --all [--out results/complexity.csv]   # every model config

Defaults follow the paper: a detector at 800x1280 (Table 2), a segmentor at 512x2048 (Table 3).
Counting uses mmengine's FlopAnalyzer, which counts one multiply-add as one MAC, traced
through the model's ``tensor`` forward: for Mask R-CNN backbone, FPN, RPN and the RoI heads
on the RPN's proposals; for UperNet backbone and decode head, i.e. without the auxiliary
head, which only runs in training. Params count every parameter (auxiliary head included),
which is what reproduces the published UperNet sizes (results/NOTES.md).

The selective scan of SSM backbones is invisible to that counter (a CUDA kernel, or many
small element-wise ops in the torch backend). While counting, every scan is replaced by a
stand-in op of the same shapes, and counted by :func:`selective_scan_macs`.
"""
import argparse
import csv
import io
import os.path as osp
import sys
import time
from contextlib import contextmanager

from _common import REPO, load_config

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


@contextmanager
def counted_selective_scan():
    """Swap every ``selective_scan`` used by the backbones for a shape-only stand-in."""
    import importlib
    import pkgutil

    import torch

    import backbones

    class SelectiveScanCount(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, delta, A, B, C, D):  # noqa: N803 - the SSM's own names
            return torch.zeros_like(u, dtype=torch.float32)

    def stand_in(u, delta, A, B, C, D=None, *args, **kwargs):  # noqa: N803
        if D is None:
            D = torch.zeros(0)
        return SelectiveScanCount.apply(u, delta, A, B, C, D)

    patched = []
    for info in pkgutil.iter_modules(backbones.__path__):
        module = importlib.import_module(f'backbones.{info.name}')
        if callable(getattr(module, 'selective_scan', None)):
            patched.append((module, module.selective_scan))
            module.selective_scan = stand_in
    try:
        yield 'prim::PythonOp.SelectiveScanCount'
    finally:
        for module, original in patched:
            module.selective_scan = original


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
    import torch
    from functools import partial

    from mmengine.analysis import FlopAnalyzer, parameter_count
    from mmengine.registry import DefaultScope, MODELS

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
    with counted_selective_scan() as op_name, torch.no_grad():
        analyzer = FlopAnalyzer(model, inputs)
        analyzer.set_op_handle(op_name, _scan_handle)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        macs = analyzer.total()
    params = parameter_count(model)['']
    return dict(params_m=round(params / 1e6, 2), macs_g=round(macs / 1e9, 1),
                shape=f'{shape[0]}x{shape[1]}')


def config_digest(cfg):
    """Hash of the resolved config (bases included): any edit invalidates its cached row."""
    import hashlib
    return hashlib.sha256(cfg.pretty_text.encode()).hexdigest()[:12]


FIELDS = ['config', 'config_digest', 'params_m', 'macs_g', 'shape']


def measure_all(out, shape=None, force=False, log=print):
    """Measure every model config into ``out`` (CSV). Rows of unchanged configs are kept
    from a previous run unless ``force``; the file is rewritten after each config, so an
    interrupted run keeps what it measured."""
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    from check_configs import find_configs
    from leaderboard import write_atomic
    old = {}
    if osp.isfile(out) and not force:
        with open(out, newline='') as f:
            old = {r['config']: r for r in csv.DictReader(f)}
    configs = find_configs([osp.join(REPO, 'det_configs'), osp.join(REPO, 'seg_configs')])
    rows = []
    for i, path in enumerate(configs, 1):
        cfg, name, start = load_config(path), osp.basename(path), time.time()
        digest = config_digest(cfg)
        wanted = 'x'.join(map(str, shape or DEFAULT_SHAPE[cfg.default_scope]))
        prev = old.get(name, {})
        if prev.get('config_digest') == digest and prev.get('shape') == wanted:
            rows.append(prev)
            log(f'[get_flops {i}/{len(configs)}] {name}: unchanged, '
                f"{prev['params_m']}M params, {prev['macs_g']}G MACs")
            continue
        rows.append(dict(config=name, config_digest=digest, **measure(path, shape)))
        log(f'[get_flops {i}/{len(configs)}] {name}: {rows[-1]["params_m"]}M params, '
            f'{rows[-1]["macs_g"]}G MACs at {rows[-1]["shape"]} ({time.time() - start:.0f}s)')
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator='\n')
        writer.writeheader()
        writer.writerows({k: r[k] for k in FIELDS} for r in rows)
        write_atomic(out, buf.getvalue())
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', help='config file')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: 800 1280 for det, 512 2048 for seg)')
    parser.add_argument('--all', action='store_true', help='measure every model config')
    parser.add_argument('--out', default=osp.join(REPO, 'results', 'complexity.csv'),
                        help='CSV written by --all')
    parser.add_argument('--force', action='store_true',
                        help='with --all: re-measure configs that did not change')
    args = parser.parse_args()
    if args.all == bool(args.config):
        parser.error('give either CONFIG or --all')
    if args.all:
        measure_all(args.out, args.shape, force=args.force)
        return
    res = measure(args.config, args.shape)
    print(f'{osp.basename(args.config)}: Params {res["params_m"]} M, MACs {res["macs_g"]} G '
          f'at {res["shape"]}')


if __name__ == '__main__':
    main()
