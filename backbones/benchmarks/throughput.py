"""``train`` / ``infer``: images per second, peak memory and data-loading share of a config.

The config's own dataloader and model (random init: no checkpoint needed), ``--iters``
iterations after ``--warmup``; ``--toy-data`` points the config at the toy datasets
(:func:`backbones.datasets.toy_options.toy_cfg_options`), as ``tools/train.py`` would.

Finding where a GPU training iteration goes (``train`` only; the issue measured MambaOut-T
Mask R-CNN at 3.4-4.2 s per iteration on toy data resized to 1333x800, far above the
backbone's cost, with every image a new size). One process, one model, several *runs*
(``results['runs']``; the top-level fields stay those of the first real-loader run):

* ``--synthetic HxW``: fixed-size in-memory batches (one (H, W) for every image: 800x1333 is
  a padded Mask R-CNN input, 512x512 an UperNet crop; random boxes, masks or label maps
  built with mmdet / mmseg's own data structures) beside the real loader, whose image sizes
  vary (toy images of random aspect, resized with ``keep_ratio``). Synthetic img/s >> loader
  img/s says the cost follows the data (new shapes, or loading: see ``data_share``); both
  slow says it is in the step itself at any shape.
* per-iteration log (``diagnostics.per_iteration``): batch input shape (the data
  preprocessor's output), whether that shape is new in this run (and in this process:
  caches carry over from run to run, so compare runs in their order), host time
  (until ``step`` returns) and total time (after a device synchronize: every iteration is
  synchronised in these runs), reserved memory. Summaries: ``distinct_shapes``;
  ``first_iteration_s`` (one-time costs: CUDA context, cuDNN handles, Triton compiles);
  ``new_shape_median_s`` vs ``repeat_shape_median_s`` (a per-shape cost, e.g. cuDNN choosing
  or building a plan, any autotuning, allocator growth, shows as new >> repeat; repeat close
  to the synthetic time says it is all per-shape cost); ``host_share`` (host time / total:
  near 1 with a low kernel share below means the host is the bottleneck: launches, plan
  building, host syncs inside the heads; low means the GPU is); ``reserved_growth_mib`` and
  ``alloc_retries`` (the caching allocator growing or freeing and retrying on new, larger
  shapes: cudaMalloc / cudaFree synchronise).
* ``--cudnn default benchmark off``: every run repeated under each cuDNN setting (default:
  as torch starts, benchmark off; benchmark: autotune per new shape; off: cuDNN disabled,
  native kernels). A per-shape cost that grows with ``benchmark`` and vanishes with ``off``
  is cuDNN's per-shape plan selection; one that stays with ``off`` is not cuDNN; a repeated
  shape much faster under ``benchmark`` says the default heuristics pick slow kernels.
* ``--profile-steps``: after the timed iterations, one step at a new and one at a repeated
  batch (raw image sizes) under ``torch.profiler``: wall time, the GPU kernels' total (kernel
  time << wall: host-bound) and the top ops by self CPU and self device time.
"""
import argparse
import contextlib
import copy
import json
import os.path as osp
import re
import statistics
import time

import torch
from mmengine.config import DictAction

from ..engine.launch import load_config, setup_device
from .common import Benchmark, head, make_record, mib, peak_bytes, sync

__all__ = ['Throughput', 'parse_cfg_options']


class CfgOptions(DictAction):
    """mmengine's ``DictAction`` (``key=value`` items, values parsed as Python literals), with
    a usage error instead of a traceback for an item without ``=``."""

    def __call__(self, parser, namespace, values, option_string=None):
        bad = [v for v in values or () if '=' not in v]
        if bad:
            parser.error(f'{option_string or "--cfg-options"} expects key=value, got {bad[0]!r}')
        super().__call__(parser, namespace, values, option_string)


def parse_cfg_options(pairs):
    """``['key=value', ...]`` -> dict, each value parsed as ``--cfg-options`` parses it."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptions)
    return parser.parse_args(['--cfg-options', *pairs]).cfg_options or {}


def _toy_options(args):
    """The overrides that run ``args.config`` on the toy data under ``args.toy_data``."""
    from mmengine.config import Config

    from ..datasets.toy_options import toy_cfg_options
    cfg = Config.fromfile(args.config)
    root = osp.join(args.toy_data, 'coco' if cfg.get('default_scope') == 'mmdet'
                    else 'ade/ADEChallengeData2016')
    if not osp.isdir(root):
        raise SystemExit(f'error: no toy data at {root} (python tools/make_toy_data.py '
                         f'--out {args.toy_data})')
    return parse_cfg_options(toy_cfg_options(cfg, root, scale=args.toy_scale,
                                             batch_size=args.batch_size or 2))


def load_for_device(args):
    """The config with the toy and ``--cfg-options`` overrides (the latter win), adapted to
    the machine; and the notes on what was adapted."""
    from mmengine.registry import DefaultScope
    if not osp.isfile(args.config):
        raise SystemExit(f'error: config file not found: {args.config}')
    options = dict(args.cfg_options or {})
    for key, value in (_toy_options(args) if args.toy_data else {}).items():
        options.setdefault(key, value)
    cfg = load_config(args.config, options)
    if args.batch_size:
        cfg.train_dataloader.batch_size = args.batch_size
    notes = setup_device(cfg, 'none')
    DefaultScope.get_instance(f'benchmark-{time.time_ns()}', scope_name=cfg.default_scope)
    return cfg, notes


def build_model(cfg, device):
    from mmengine.registry import MODELS
    cfg.model.get('backbone', {}).pop('init_cfg', None)  # random init: no checkpoint needed
    return MODELS.build(cfg.model).to(device)


def _cycle(loader):
    """Batches of ``loader`` forever (a new epoch when it runs out)."""
    while True:
        yield from loader


def timed_loop(step, loader, iters, warmup, device, log=None):
    """Run ``step(data)`` on ``iters`` batches after ``warmup``; time spent waiting for
    data vs in total, and peak memory above the start. ``loader``: any iterable of batches
    (re-iterated when it runs out). ``log`` (:class:`IterationLog`): also time and record
    every iteration, each synchronised (its ``summary`` goes into ``diagnostics``)."""
    batches = _cycle(loader)
    run = log.step if log else (lambda phase, data: step(data))
    for _ in range(warmup):
        run('warmup', next(batches))
    box = {'data': 0.0, 'images': 0}

    def timed():
        for _ in range(iters):
            t0 = time.perf_counter()
            data = next(batches)
            box['data'] += time.perf_counter() - t0
            run('timed', data)
            box['images'] += len(data['inputs'])
        sync(device)

    t0 = time.perf_counter()
    peak = peak_bytes(timed, device)
    total = time.perf_counter() - t0
    out = {'iters': iters, 'images': box['images'], 'seconds': round(total, 3),
           'img_per_s': round(box['images'] / total, 3),
           'data_share': round(box['data'] / total, 4), 'peak_mib': mib(peak)}
    if device.type == 'cuda':
        out['peak_allocated_mib'] = mib(torch.cuda.max_memory_allocated(device))
    else:
        import resource
        out['max_rss_mib'] = mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    if log:
        out['diagnostics'] = log.summary(batches)
    return out


# ---------------------------------------------------------------------------------------
# Diagnostics of the GPU training iteration (see the module docstring)
# ---------------------------------------------------------------------------------------
def _median(xs):
    return round(statistics.median(xs), 5) if xs else None


def _raw_key(data):
    """The batch's image sizes as loaded (before padding): what decides a new shape."""
    return tuple(tuple(t.shape) for t in data['inputs'])


class IterationLog:
    """Per-iteration times and shapes of one run, and profiles of chosen steps.

    The batch shape is read from the model's data preprocessor output (a forward hook), so
    it is the padded shape the network sees.
    """

    #: Batch shapes every log of this process has seen: process-wide caches (cuDNN plans,
    #: the allocator's blocks) carry over from one run to the next.
    process_seen = set()

    def __init__(self, model, step, device, profile_steps=False, max_extra=8):
        self.step_fn, self.device, self.rows = step, device, []
        self.profile_steps, self.max_extra = profile_steps, max_extra
        self._shape, self._seen, self._raw = None, set(), set()
        self._retries0 = self._alloc_retries()
        self._hook = model.data_preprocessor.register_forward_hook(self._on_preprocessed)

    def _on_preprocessed(self, module, inputs, out):
        x = out.get('inputs') if isinstance(out, dict) else None
        self._shape = list(x.shape) if torch.is_tensor(x) else None

    def _alloc_retries(self):
        if self.device.type != 'cuda':
            return 0
        return torch.cuda.memory_stats(self.device).get('num_alloc_retries', 0)

    def _reserved(self):
        if self.device.type != 'cuda':
            return None
        return mib(torch.cuda.memory_reserved(self.device))

    def step(self, phase, data):
        """Run one step on ``data``, synchronised, and log it."""
        self._raw.add(_raw_key(data))
        sync(self.device)
        t0 = time.perf_counter()
        self.step_fn(data)
        t1 = time.perf_counter()
        sync(self.device)
        t2 = time.perf_counter()
        key = tuple(self._shape or ())
        new, new_here = key not in self._seen, key not in self.process_seen
        self._seen.add(key)
        self.process_seen.add(key)
        self.rows.append({'phase': phase, 'shape': self._shape, 'new_shape': new,
                          'new_in_process': new_here,
                          'host_s': round(t1 - t0, 5), 'total_s': round(t2 - t0, 5),
                          'reserved_mib': self._reserved()})

    def summary(self, batches):
        """The run's summaries (module docstring), then the profiles; unhooks."""
        rows = self.rows
        later = rows[1:]
        shapes = {}
        for r in rows:
            shapes[str(r['shape'])] = shapes.get(str(r['shape']), 0) + 1
        reserved = [r['reserved_mib'] for r in rows if r['reserved_mib'] is not None]
        out = {
            'distinct_shapes': len(shapes), 'shape_counts': shapes,
            'first_iteration_s': rows[0]['total_s'] if rows else None,
            'new_shape_median_s': _median([r['total_s'] for r in later if r['new_shape']]),
            'new_shape_count': sum(r['new_shape'] for r in later),
            'repeat_shape_median_s': _median([r['total_s'] for r in later
                                              if not r['new_shape']]),
            'repeat_shape_count': sum(not r['new_shape'] for r in later),
            'new_in_process_count': sum(r['new_in_process'] for r in rows),
            'host_share': round(sum(r['host_s'] for r in rows)
                                / max(sum(r['total_s'] for r in rows), 1e-9), 4),
            'reserved_growth_mib': round(reserved[-1] - reserved[0], 1) if reserved else None,
            'alloc_retries': self._alloc_retries() - self._retries0,
            'per_iteration': rows}
        if self.profile_steps:
            out['profile'] = self._profile(batches)
        self._hook.remove()
        return out

    def _profile(self, batches):
        """One step at a new and one at a repeated batch (raw sizes), under the profiler,
        from at most ``max_extra`` further batches."""
        seen, out = set(self._raw), {}
        for _ in range(self.max_extra):
            if len(out) == 2:
                break
            data = next(batches)
            kind = 'repeated_shape' if _raw_key(data) in seen else 'new_shape'
            seen.add(_raw_key(data))
            if kind not in out:
                out[kind] = profile_step(self.step_fn, data, self.device)
        return out


def profile_step(step, data, device, top=6):
    """Wall time, total device-kernel time and the top ops of one ``step(data)``."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    sync(device)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        step(data)
        sync(device)
    wall = time.perf_counter() - t0
    events = prof.key_averages()

    def dev_us(e):
        return getattr(e, 'self_device_time_total', 0) or getattr(e, 'self_cuda_time_total', 0)

    def rows(key):
        ranked = sorted(events, key=key, reverse=True)[:top]
        return [{'op': e.key[:80], 'calls': e.count, 'self_ms': round(key(e) / 1e3, 2)}
                for e in ranked]
    kernel_s = sum(dev_us(e) for e in events) / 1e6
    return {'wall_s': round(wall, 4), 'device_kernels_s': round(kernel_s, 4),
            'kernel_share': round(kernel_s / wall, 4) if wall else None,
            'top_cpu': rows(lambda e: e.self_cpu_time_total),
            'top_device': rows(dev_us) if device.type == 'cuda' else []}


# ---------------------------------------------------------------------------------------
# Synthetic fixed-size batches and cuDNN settings
# ---------------------------------------------------------------------------------------
def parse_hw(text):
    m = re.fullmatch(r'(\d+)x(\d+)', text)
    if not m:
        raise argparse.ArgumentTypeError(f'size must be HxW, got {text!r}')
    return int(m.group(1)), int(m.group(2))


def _num_classes(node):
    """The smallest ``num_classes`` anywhere in a model config (labels valid for every head)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'num_classes' and isinstance(value, int):
                found.append(value)
            else:
                found.append(_num_classes(value))
    elif isinstance(node, (list, tuple)):
        found = [_num_classes(v) for v in node]
    found = [v for v in found if v]
    return min(found) if found else None


def _det_sample(h, w, num_classes, g, n=4):
    """A DetDataSample of an (h, w) image with ``n`` random boxes and their box masks."""
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    wh = torch.rand(n, 2, generator=g) * 0.4 + 0.1
    xy = torch.rand(n, 2, generator=g) * (1 - wh)
    boxes = torch.cat([xy, xy + wh], 1) * torch.tensor([w, h, w, h])
    masks = np.zeros((n, h, w), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.round().int().tolist()):
        masks[i, y1:y2, x1:x2] = 1
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         scale_factor=(1.0, 1.0), flip=False))
    sample.gt_instances = InstanceData(
        bboxes=boxes, labels=torch.randint(0, num_classes, (n,), generator=g),
        masks=BitmapMasks(masks, h, w))
    return sample


def _seg_sample(h, w, num_classes, g):
    """A SegDataSample of an (h, w) crop with a random label map."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                         flip=False))
    blocks = torch.randint(0, num_classes, (1, 1, -(-h // 32), -(-w // 32)), generator=g)
    labels = torch.nn.functional.interpolate(blocks.float(), scale_factor=32.0)
    sample.gt_sem_seg = PixelData(data=labels[0, :, :h, :w].long())
    return sample


class SyntheticBatches:
    """Fixed-size batches in the loader's format (uint8 CHW images on the CPU, data
    samples), a fresh copy each time (the data preprocessor pads masks in place)."""

    def __init__(self, cfg, hw, batch_size, seed=0):
        h, w = hw
        g = torch.Generator().manual_seed(seed)
        classes = _num_classes(cfg.model) or 2
        sample = _det_sample if cfg.get('default_scope') == 'mmdet' else _seg_sample
        self.template = {
            'inputs': [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
                       for _ in range(batch_size)],
            'data_samples': [sample(h, w, classes, g) for _ in range(batch_size)]}

    def __iter__(self):
        while True:
            yield copy.deepcopy(self.template)


CUDNN_MODES = ('default', 'benchmark', 'off')


@contextlib.contextmanager
def cudnn_mode(mode):
    """``default``: the flags as they are; ``benchmark``: autotune per shape; ``off``: cuDNN
    disabled. Restored afterwards."""
    flags = torch.backends.cudnn
    saved = flags.enabled, flags.benchmark
    if mode == 'benchmark':
        flags.enabled, flags.benchmark = True, True
    elif mode == 'off':
        flags.enabled = False
    try:
        yield {'enabled': flags.enabled, 'benchmark': flags.benchmark}
    finally:
        flags.enabled, flags.benchmark = saved


class Throughput(Benchmark):
    """``train`` (train_step with the config's optimizer) or ``infer`` (test_step)."""

    def __init__(self, command):
        if command not in ('train', 'infer'):
            raise ValueError(f'throughput command must be train or infer, got {command!r}')
        self.name = command
        self.help = f'{command} throughput of a config'

    def add_arguments(self, p):
        p.add_argument('config')
        p.add_argument('--iters', type=int, default=10)
        p.add_argument('--warmup', type=int, default=2)
        p.add_argument('--batch-size', type=int, help='train batch size (default: the config)')
        p.add_argument('--toy-data', help='toy data root (tools/make_toy_data.py --out)')
        p.add_argument('--toy-scale', type=int, default=256)
        p.add_argument('--cfg-options', nargs='+', action=CfgOptions,
                       help='key=value overrides')
        if self.name != 'train':
            return
        p.add_argument('--synthetic', type=parse_hw, metavar='HxW',
                       help='also run fixed-size synthetic batches of HxW images (800x1333: '
                            'padded Mask R-CNN input; 512x512: UperNet crops)')
        p.add_argument('--no-loader', action='store_true',
                       help="with --synthetic: skip the config's own loader")
        p.add_argument('--cudnn', nargs='+', choices=CUDNN_MODES, default=['default'],
                       help='run everything under each cuDNN setting (default: default)')
        p.add_argument('--diagnose', action='store_true',
                       help='per-iteration log and summaries (implied by --synthetic, '
                            '--profile-steps, several --cudnn and --device cuda)')
        p.add_argument('--profile-steps', action='store_true',
                       help='profile one step at a new and one at a repeated batch shape')

    def record_name(self, args):
        stem = osp.splitext(osp.basename(args.config))[0] if args else 'CONFIG-NAME'
        return f'{self.name}_{stem}'

    def run(self, args, device):
        cfg, notes = load_for_device(args)
        model = build_model(cfg, device)
        step, loader_cfg = self._step(cfg, model)
        from mmengine.runner import Runner
        if self._diagnosing(args, device):
            res, runs = self._runs(args, device, cfg, model, step, loader_cfg)
        else:
            res = timed_loop(step, Runner.build_dataloader(loader_cfg), args.iters,
                             args.warmup, device)
        res.update(config=args.config, batch_size=loader_cfg.get('batch_size'),
                   optim_wrapper=cfg.optim_wrapper.get('type') if self.name == 'train' else None,
                   toy_data=bool(args.toy_data))
        if self._diagnosing(args, device):
            res['runs'] = runs
            notes = list(notes) + ['runs: every iteration synchronised and logged (see '
                                   'backbones/benchmarks/throughput.py for what each '
                                   'diagnostic tells apart); the top-level numbers are the '
                                   'first real-loader run (the first run without a loader)']
        print(json.dumps({k: v for k, v in res.items() if k != 'runs'}))
        notes = list(notes) + ['peak = memory above the start of the timed iterations' +
                               (' (VmHWM - VmRSS; this process runs with the default allocator, '
                                'so it is a lower bound)' if device.type != 'cuda' else '')]
        return make_record(self.name, args, device, res, [], notes)

    def _diagnosing(self, args, device):
        if self.name != 'train':
            return False
        return bool(args.diagnose or args.synthetic or args.profile_steps or device.type == 'cuda'
                    or args.cudnn != ['default'])

    def _runs(self, args, device, cfg, model, step, loader_cfg):
        """Every (cuDNN setting, data) run, synthetic first (one model, one process); the
        first loader run's numbers (else the first run's) as the top-level result."""
        from mmengine.runner import Runner
        if args.no_loader and not args.synthetic:
            raise SystemExit('error: --no-loader needs --synthetic')
        sources = []
        if args.synthetic:
            h, w = args.synthetic
            sources.append((f'synthetic {h}x{w}', SyntheticBatches(
                cfg, args.synthetic, loader_cfg.get('batch_size') or 2)))
        if not args.no_loader:
            sources.append(('loader', Runner.build_dataloader(loader_cfg)))
        runs = []
        for mode in args.cudnn:
            for label, batches in sources:
                with cudnn_mode(mode) as flags:
                    log = IterationLog(model, step, device, args.profile_steps)
                    out = timed_loop(step, batches, args.iters, args.warmup, device, log)
                runs.append({'data': label, 'cudnn': mode, 'cudnn_flags': flags, **out})
                print(json.dumps({k: runs[-1][k] for k in ('data', 'cudnn', 'img_per_s',
                                                           'peak_mib')}))
        first = next((r for r in runs if r['data'] == 'loader'), runs[0])
        top = {k: v for k, v in first.items()
               if k not in ('data', 'cudnn', 'cudnn_flags', 'diagnostics')}
        return top, runs

    def _step(self, cfg, model):
        """The step function of this command, and the config of the loader it consumes."""
        if self.name == 'train':
            from mmengine.optim import build_optim_wrapper
            model.train()
            optim = build_optim_wrapper(model, cfg.optim_wrapper)
            return (lambda data: model.train_step(data, optim)), cfg.train_dataloader
        model.eval()

        def step(data):
            with torch.no_grad():
                model.test_step(data)
        return step, cfg.test_dataloader

    def render(self, name, rec):
        r = rec['results']
        toy = ' (toy data)' if r['toy_data'] else ''
        out = head(rec, f"{rec['benchmark'].capitalize()} throughput, "
                        f"`{osp.basename(r['config'])}`{toy}")
        out += ['| batch | img/s | peak | data-loading share |', '|' + ' --- |' * 4,
                f"| {r['batch_size']} | {r['img_per_s']} | {r['peak_mib']} MiB | "
                f"{r['data_share']:.0%} |", '']
        return out + _runs_table(r.get('runs'))


def _runs_table(runs):
    """The diagnostic runs (records that have them): one line each."""
    if not runs:
        return []
    out = ['| data | cuDNN | img/s | peak | data share | distinct shapes | first iter s | '
           'new-shape s | repeat-shape s | host share |', '|' + ' --- |' * 10]
    for r in runs:
        d = r['diagnostics']
        cells = [r['data'], r['cudnn'], r['img_per_s'], f"{r['peak_mib']} MiB",
                 f"{r['data_share']:.0%}", d['distinct_shapes'], d['first_iteration_s'],
                 d['new_shape_median_s'], d['repeat_shape_median_s'], d['host_share']]
        out.append('| ' + ' | '.join(map(_cell, cells)) + ' |')
    return out + ['']


def _cell(value):
    if value is None:
        return 'n/a'
    return f'{value:.3f}' if isinstance(value, float) else str(value)
