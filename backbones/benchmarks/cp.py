"""``cp``: peak memory of one Mask R-CNN training step without and with ``with_cp``.

Each setting runs in a fresh process (:func:`.common.run_probe`); the gradients of the two
must be equal. The default configs are the det configs of the rows whose ``benchmark``
column in :mod:`backbones.metadata` names ``det``.
"""
import os
import os.path as osp
import tempfile
import time

import torch

from ..engine.launch import REPO, load_config
from ..metadata import load_rows
from .common import (
    Benchmark,
    head,
    make_record,
    max_diff,
    mib,
    notes_md,
    peak_bytes,
    run_probe,
    target,
)

__all__ = ['ActivationCheckpointing', 'default_configs']


def default_configs():
    """Det configs (relative to the checkout) of the metadata rows marked ``det``."""
    return [osp.relpath(r.config_path('det'), REPO) for r in load_rows() if 'det' in r.benchmark]


def resolve_config(config):
    """``config`` as given, or relative to the checkout (the defaults are), or an error."""
    for path in (config, osp.join(REPO, config)):
        if osp.isfile(path):
            return osp.abspath(path)
    raise SystemExit(f'error: config file not found: {config}')


def build_detector(config, with_cp, device):
    """Mask R-CNN of ``config`` with the backbone's with_cp set, drop_path 0, random init."""
    from mmengine.registry import DefaultScope
    cfg = load_config(config)
    cfg.model.backbone.with_cp = with_cp
    cfg.model.backbone.drop_path_rate = 0.0
    cfg.model.backbone.init_cfg = None  # no pretrained file needed to measure memory
    DefaultScope.get_instance(f'benchmark-{time.time_ns()}', scope_name=cfg.default_scope)
    from mmdet.registry import MODELS
    torch.manual_seed(0)  # same random weights in every process
    return MODELS.build(cfg.model).to(device)


def synthetic_batch(h, w, batch, device, seed=0):
    """Images and ground truth (boxes, labels, masks) for one Mask R-CNN training step."""
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append((torch.rand(3, h, w, generator=g) * 255).to(torch.uint8))
        n = 5
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3]) + 16
        boxes = torch.cat([xy, xy + wh], 1)
        masks = np.zeros((n, h, w), np.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
            masks[i, y0:y1, x0:x1] = 1
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             scale_factor=(1.0, 1.0), pad_shape=(h, w)))
        labels = torch.randint(0, 80, (n,), generator=g)
        sample.gt_instances = InstanceData(bboxes=boxes, labels=labels,
                                           masks=BitmapMasks(masks, h, w))
        samples.append(sample)
    return {'inputs': inputs, 'data_samples': samples}


def detector_step(model, data):
    """One training step's forward and backward (no optimizer update)."""
    torch.manual_seed(0)  # the RPN / RoI samplers draw at random: same draws every time
    batch = model.data_preprocessor(data, True)
    losses = model(**batch, mode='loss')
    loss, _ = model.parse_losses(losses)
    loss.backward()
    return loss


class ActivationCheckpointing(Benchmark):
    name = 'cp'
    help = 'with_cp peak memory of a Mask R-CNN step'

    def add_arguments(self, p):
        p.add_argument('--configs', nargs='+', default=default_configs())
        p.add_argument('--shape', type=int, nargs=2, default=[512, 832], metavar=('H', 'W'))
        p.add_argument('--batch', type=int, default=1)
        p.add_argument('--tol', type=float, default=1e-4)

    def run(self, args, device):
        results, targets = [], []
        tmp = tempfile.mkdtemp(prefix='bench-cp-')
        for config in args.configs:
            row = self._config(args, device, config, resolve_config(config), tmp)
            targets.append(target(f'{osp.basename(config)}: peak activation memory saved by '
                                  'with_cp', '>= 40%', f'{row["saving"]:.0%}',
                                  row['saving'] >= 0.4 and row['grads_equal']))
            results.append(row)
            print(config, row['without_cp'], row['with_cp'], 'grads equal', row['grads_equal'])
        os.rmdir(tmp)
        notes = ['peak = memory above what was resident before the measured training step '
                 '(forward + backward of the whole detector; parameters and their gradients '
                 'are allocated by an unmeasured warm-up step first), one fresh process per '
                 'setting: ' + ('CUDA max_memory_allocated' if device.type == 'cuda' else
                                'VmHWM - VmRSS with glibc mmap threshold 128 KiB (tensors go '
                                'back to the OS when freed)')
                 + '; gradients compared over every parameter, same seed.']
        return make_record(self.name, args, device, results, targets, notes)

    def _config(self, args, device, config, path, tmp):
        """The row of one config: both settings measured, gradients compared."""
        row = {'config': config, 'input': [args.batch, 3, *args.shape]}
        grads = {}
        for cp_on in (False, True):
            out = osp.join(tmp, f'{osp.basename(config)}-{cp_on}.pt')
            probe = run_probe(self.name, {'config': path, 'with_cp': cp_on, 'shape': args.shape,
                                          'batch': args.batch, 'grads': out},
                              device, args.threads)
            row['with_cp' if cp_on else 'without_cp'] = {
                'peak_step_mib': mib(probe['peak']), 'step_s': round(probe['step_s'], 3),
                'loss': probe['loss']}
            grads[cp_on] = torch.load(out, weights_only=True)
            os.unlink(out)
        worst = max((max_diff(grads[True][k], grads[False][k])['max_rel'] for k in grads[False]),
                    default=0.0)
        row['grads_max_rel_diff'] = worst
        row['grads_equal'] = worst <= args.tol and grads[True].keys() == grads[False].keys()
        off, on = row['without_cp']['peak_step_mib'], row['with_cp']['peak_step_mib']
        row['saving'] = round(1 - on / off, 3)
        return row

    def probe(self, spec, device):
        model = build_detector(spec['config'], bool(spec['with_cp']), device)
        model.train()
        data = synthetic_batch(*spec['shape'], spec['batch'], device)
        detector_step(model, data)  # warm-up: allocates the parameters' gradients
        for p in model.parameters():
            if p.grad is not None:
                p.grad.zero_()
        t0 = time.perf_counter()
        box = {}
        peak = peak_bytes(lambda: box.setdefault('loss', detector_step(model, data)), device)
        step_s = time.perf_counter() - t0
        torch.save({k: p.grad for k, p in model.named_parameters() if p.grad is not None},
                   spec['grads'])
        return {'peak': peak, 'step_s': step_s, 'loss': float(box['loss'])}

    def render(self, name, rec):
        out = head(rec, 'Activation checkpointing, one Mask R-CNN training step')
        out += ['| config | input | peak without / with `with_cp` | saved | step time without '
                '/ with | gradients equal |', '|' + ' --- |' * 6]
        for r in rec['results']:
            off, on = r['without_cp'], r['with_cp']
            out.append(f"| `{osp.basename(r['config'])}` | {'x'.join(map(str, r['input']))} | "
                       f"{off['peak_step_mib']} / {on['peak_step_mib']} MiB | "
                       f"{r['saving']:.0%} | {off['step_s']} / {on['step_s']} s"
                       f" | {'yes' if r['grads_equal'] else 'NO'} "
                       f"({r['grads_max_rel_diff']:.1e}) |")
        return out + [''] + notes_md(rec)
