"""Benchmarks of the suite: where users spend their time, measured side by side.

    python tools/benchmark.py scan [--stages 1 3] [--repeats 5]       # scan vs a step loop
    python tools/benchmark.py backbone [--shapes 800x1280x1 512x512x2]  # ours vs timm, VMamba
    python tools/benchmark.py cp [--configs ...] [--shape H W]          # with_cp peak memory
    python tools/benchmark.py coco [--images 500] [--repeats 3]         # faster-coco-eval
    python tools/benchmark.py train CONFIG [--iters 10] [--toy-data DIR]
    python tools/benchmark.py infer CONFIG [--iters 10] [--toy-data DIR]
    python tools/benchmark.py report [--check]                          # README section

Each command writes ``results/benchmarks/<name>.json`` (``--out`` elsewhere, atomically) with
the machine, versions, device, git commit, command line and time. Ratios are measured in one
process with interleaved repeats after a warm-up (these machines are shared and noisy), and
reported as medians. CPU runs use ``--threads`` intra-op threads (default 1: on a shared
machine a second OpenMP thread that is descheduled stalls every op).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``. On CPU torch has no peak counter, so
the measurements run in a fresh subprocess with glibc's mmap threshold fixed at 128 KiB (every
tensor is mmapped and returned to the OS when freed, so the resident set follows the live
tensors) and reads the kernel's high-water mark (VmHWM, reset through /proc/self/clear_refs
before each call) minus the resident set just before the measured call.
"""
import argparse
import datetime
import glob
import importlib.metadata
import json
import os
import os.path as osp
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
for _p in (REPO, TOOLS):
    if _p not in sys.path:
        sys.path.insert(0, _p)

OUT_DIR = osp.join(REPO, 'results', 'benchmarks')
README = osp.join(REPO, 'README.md')
BEGIN, END = '<!-- benchmarks:begin -->', '<!-- benchmarks:end -->'
SCHEMA = 1
PACKAGES = ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'timm', 'faster-coco-eval',
            'pycocotools', 'numpy')
MMAP_ENV = {'MALLOC_MMAP_THRESHOLD_': '131072'}
DET_CONFIGS = ('det_configs/mask-rcnn_mambaout-t_fpn_8xb2-amp-1x_coco.py',
               'det_configs/mask-rcnn_vmamba-t_fpn_8xb2-amp-1x_coco.py')


# ---------------------------------------------------------------------------------------
# Records: machine, versions, device, provenance; atomic JSON
# ---------------------------------------------------------------------------------------
def _cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit():
    def git(*args):
        return subprocess.run(['git', *args], cwd=REPO, capture_output=True, text=True).stdout
    commit = git('rev-parse', 'HEAD').strip() or None
    return {'commit': commit, 'dirty': bool(git('status', '--porcelain', '--untracked-files=no')
                                            .strip())}


def _versions():
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_name(device):
    import torch
    if device.type == 'cuda':
        return f'cuda: {torch.cuda.get_device_name(device)}'
    return f'cpu: {_cpu_model()}'


def record(name, args, device, results, targets, notes=()):
    """The common envelope of every benchmark JSON."""
    import torch
    return {
        'schema': SCHEMA,
        'benchmark': name,
        'command': 'python tools/benchmark.py ' + shlex.join(sys.argv[1:]),
        'timestamp': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'git': _git_commit(),
        'machine': {'cpu': _cpu_model(), 'logical_cores': os.cpu_count(),
                    'usable_cores': len(os.sched_getaffinity(0)),
                    'platform': platform.platform(), 'python': platform.python_version()},
        'device': device_name(device),
        'threads': torch.get_num_threads(),
        'versions': _versions(),
        'results': results,
        'targets': targets,
        'notes': list(notes),
    }


def target(name, goal, value, met, why=''):
    return {'name': name, 'goal': goal, 'value': value, 'met': bool(met), 'why': why}


def write_record(rec, out_dir, name):
    from leaderboard import write_atomic
    path = osp.join(out_dir, f'{name}.json')
    write_atomic(path, json.dumps(rec, indent=1, sort_keys=False) + '\n')
    print(f'wrote {osp.relpath(path)}')
    return path


# ---------------------------------------------------------------------------------------
# Timing and memory
# ---------------------------------------------------------------------------------------
def _sync(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_interleaved(fns, repeats, device, warmup=1):
    """Median seconds per call of each ``name -> fn``, the calls interleaved round by round
    so that a slow phase of a shared machine hits every contender alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: {'median_s': statistics.median(ts), 'min_s': min(ts),
                   'times_s': [round(t, 5) for t in ts]} for name, ts in times.items()}


def _proc_status():
    with open('/proc/self/status') as f:
        text = f.read()
    return {k: int(re.search(rf'^{k}:\s+(\d+) kB', text, re.M).group(1)) * 1024
            for k in ('VmRSS', 'VmHWM')}


def peak_bytes(fn, device):
    """Run ``fn`` once; bytes of memory it needed above what was live before it."""
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to the current resident set
    before = _proc_status()['VmRSS']
    fn()
    return _proc_status()['VmHWM'] - before


def run_probe(argv, threads, timeout=3600):
    """Run ``benchmark.py _probe ...`` in a fresh process (see the module docstring)."""
    env = dict(os.environ, **MMAP_ENV, PYTHONWARNINGS='ignore')
    cmd = [sys.executable, osp.abspath(__file__), '_probe', '--threads', str(threads), *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('PROBE ')]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f'probe {argv} failed ({proc.returncode}):\n{proc.stderr[-3000:]}')
    return json.loads(lines[-1][len('PROBE '):])


def _mib(n):
    return round(n / 2 ** 20, 1)


def max_diff(a, b):
    """Largest absolute difference, and the same relative to the reference's largest value."""
    a, b = a.detach().double(), b.detach().double()
    d = (a - b).abs().max().item()
    return {'max_abs': d, 'max_rel': d / max(b.abs().max().item(), 1e-30)}


# ---------------------------------------------------------------------------------------
# 1. Selective scan
# ---------------------------------------------------------------------------------------
def vmamba_scan_shape(arch, stage, size, batch=1):
    """(batch, K * d_inner, L, N, K) of the selective scan in ``stage`` (1-4) of ``arch``."""
    from backbones.vmamba import VMamba
    zoo = VMamba.arch_zoo[arch]
    settings = VMamba.version_settings[zoo['version']]
    dim = zoo['embed_dim'] * 2 ** (stage - 1)
    d_inner = int(settings['ssm_ratio'] * dim)
    k = 4  # the cross2d route: four scan orders
    tokens = (size // 2 ** (stage + 1)) ** 2
    return batch, k * d_inner, tokens, settings['d_state'], k


def scan_inputs(b, d, L, N, groups, device, seed=0):
    """Inputs in the ranges VMamba feeds its scan (softplus(delta + bias) ~ 1e-3..1e-1)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    ins = dict(u=r(b, d, L), delta=r(b, d, L) * 0.5,
               A=-torch.arange(1, N + 1, dtype=torch.float32).repeat(d, 1),
               B=r(b, groups, N, L), C=r(b, groups, N, L), D=torch.ones(d),
               delta_bias=torch.log(torch.expm1(torch.rand(d, generator=g) * 0.099 + 0.001)))
    return {k: v.to(device) for k, v in ins.items()}


def scan_reference(u, delta, A, B, C, D, delta_bias, delta_softplus=True):
    """The recurrence token by token in float32: the discretisation vectorised over the
    sequence, then one step per token (the form of mamba-ssm's ``selective_scan_ref``)."""
    import torch
    import torch.nn.functional as F
    d, g = u.shape[1], B.shape[1]
    dt = delta + delta_bias[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    Bx = B.repeat_interleave(d // g, dim=1)  # (b, d, N, L)
    Cx = C.repeat_interleave(d // g, dim=1)
    dA = torch.exp(torch.einsum('bdl,dn->bdln', dt, A))
    dBu = torch.einsum('bdl,bdnl->bdln', dt * u, Bx)
    h = u.new_zeros(u.shape[0], d, A.shape[1])
    ys = []
    # unbind, not dA[:, :, t]: the backward of indexing would build a full-size gradient
    # per token (quadratic in L); unbind's backward stacks them once
    for a_t, x_t, c_t in zip(dA.unbind(2), dBu.unbind(2), Cx.unbind(-1)):
        h = a_t * h + x_t
        ys.append(torch.einsum('bdn,bdn->bd', h, c_t))
    return torch.stack(ys, dim=-1) + D[:, None] * u


def _scan_call(impl, mode, ins, gy):
    """A zero-argument callable running ``impl`` ('torch' | 'reference') in ``mode``."""
    import torch

    from backbones.selective_scan import selective_scan_torch
    fn = selective_scan_torch if impl == 'torch' else scan_reference
    if mode == 'fwd':
        def call():
            with torch.no_grad():
                return fn(**ins, delta_softplus=True)
        return call
    leaves = {k: v.detach().clone().requires_grad_() for k, v in ins.items()}

    def call():
        for v in leaves.values():
            v.grad = None
        y = fn(**leaves, delta_softplus=True)
        y.backward(gy)
        return y, {k: v.grad for k, v in leaves.items()}
    return call


def cmd_scan(args, device):
    import torch
    results, targets = [], []
    for stage in args.stages:
        b, d, L, N, K = vmamba_scan_shape(args.arch, stage, args.size)
        d, L = args.channels or d, args.length or L
        ins = scan_inputs(b, d, L, N, K, device)
        gy = torch.randn(b, d, L, generator=torch.Generator().manual_seed(1)).to(device)
        shape = {'batch': b, 'channels': d, 'length': L, 'd_state': N, 'groups': K}
        row = {'stage': stage, 'shape': shape}
        # equality first, on one run of each
        y_ref, g_ref = _scan_call('reference', 'fwdbwd', ins, gy)()
        y, g = _scan_call('torch', 'fwdbwd', ins, gy)()
        diffs = {'y': max_diff(y, y_ref), **{f'grad_{k}': max_diff(g[k], g_ref[k]) for k in g}}
        row['equal'] = {'diffs': diffs, 'tolerance': args.tol,
                        'ok': all(v['max_rel'] <= args.tol for v in diffs.values())}
        del y_ref, g_ref, y, g
        peaks = None if args.no_memory else \
            run_probe(['scan', '--shape', *map(str, (b, d, L, N, K))], args.threads)
        for mode in ('fwd', 'fwdbwd'):
            t = time_interleaved({impl: _scan_call(impl, mode, ins, gy)
                                  for impl in ('torch', 'reference')},
                                 args.repeats, device)
            mem = {impl: _mib(peaks[f'{impl}-{mode}']) for impl in ('torch', 'reference')} \
                if peaks else None
            speedup = t['reference']['median_s'] / t['torch']['median_s']
            row[mode] = {'time': t, 'speedup': round(speedup, 2), 'peak_mib': mem}
            met = speedup >= 10 and row['equal']['ok']
            why = ''
            if args.profile:
                row[mode]['profile'] = profile_top(_scan_call('torch', mode, ins, gy),
                                                   args.profile)
                why = ('where the torch backend spends its time (self CPU): ' + ', '.join(
                    f"{p['op']} {p['share']:.0%}" for p in row[mode]['profile'][:6]))
            targets.append(target(f'stage {stage} {mode}: torch backend vs step loop', '>= 10x',
                                  round(speedup, 2), met, '' if met else why))
        results.append(row)
        print(json.dumps({k: row[k] for k in ('stage', 'shape')}),
              {m: row[m]['speedup'] for m in ('fwd', 'fwdbwd')}, 'equal', row['equal']['ok'])
    notes = [f'VMamba {args.arch} at {args.size}x{args.size}: stage s has K=4 routes x d_inner '
             'channels over (size / 2^(s+1))^2 tokens; reference = per-token fp32 loop '
             '(mamba-ssm selective_scan_ref form); equality = max |diff| / max |reference|.']
    return record('scan', args, device, results, targets, notes)


def profile_top(fn, n):
    """The ``n`` ops with the most self CPU time in one call of ``fn``."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows) or 1
    return [{'op': e.key, 'calls': e.count, 'self_ms': round(e.self_cpu_time_total / 1e3, 2),
             'share': round(e.self_cpu_time_total / total, 3)} for e in rows[:n]]


def python_profile(fn, n):
    """The ``n`` Python-level functions with the most self time in one call of ``fn``."""
    import cProfile
    import pstats
    prof = cProfile.Profile()
    prof.runcall(fn)
    st = pstats.Stats(prof).stats
    total = sum(v[2] for v in st.values()) or 1
    rows = sorted(st.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return [{'function': f'{osp.basename(k[0])}:{k[2]}' if k[0] != '~' else k[2],
             'self_s': round(v[2], 3), 'share': round(v[2] / total, 3)} for k, v in rows]


# ---------------------------------------------------------------------------------------
# 2. Backbones
# ---------------------------------------------------------------------------------------
BACKBONES = ('mambaout-t', 'timm-mambaout-t', 'vmamba-t', 'vmamba-v2-t')


class _TimmNCHW:
    """timm's features_only MambaOut-T returns NHWC maps; dense heads need NCHW (as ours
    returns), so the comparison includes that layout change."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        return tuple(y.permute(0, 3, 1, 2).contiguous() for y in self.model(x))


def build_backbone(name):
    """``name`` -> (module, callable returning the NCHW feature maps)."""
    import re as _re

    import timm
    import torch

    from backbones.checkpoint import load_state_dict_strict
    from backbones.mambaout import MambaOut
    from backbones.vmamba import VMamba
    if name == 'timm-mambaout-t':
        m = timm.create_model('mambaout_tiny', features_only=True, drop_path_rate=0.0)
        return m, _TimmNCHW(m)
    if name == 'mambaout-t':
        m = MambaOut('tiny', drop_path_rate=0.0)
        # the weights of 'timm-mambaout-t' (same seed), so the two must agree to fp32 precision
        torch.manual_seed(0)
        ref = timm.create_model('mambaout_tiny', features_only=True)
        sd = {_re.sub(r'^stages_(\d+)\.', r'stages.\1.', k): v for k, v in ref.state_dict().items()}
        load_state_dict_strict(m, MambaOut.convert_pretrained(sd), allow_missing=('out_norms.',))
        return m, m.forward_stages
    if name in ('vmamba-t', 'vmamba-v2-t'):
        m = VMamba('v0-tiny' if name == 'vmamba-t' else 'v2-tiny', drop_path_rate=0.0)
        return m, m
    raise SystemExit(f'error: unknown backbone {name!r}; valid: {", ".join(BACKBONES)}')


def _backbone_call(fn, model, x, mode):
    import torch
    if mode == 'fwd':
        def call():
            model.eval()
            with torch.no_grad():
                return fn(x)
        return call

    def call():
        model.train()
        model.zero_grad(set_to_none=True)
        outs = fn(x)
        sum(o.float().mean() for o in outs).backward()
        return outs
    return call


def parse_shape(text):
    m = re.fullmatch(r'(\d+)x(\d+)x(\d+)', text)
    if not m:
        raise argparse.ArgumentTypeError(f'shape must be HxWxBATCH, got {text!r}')
    return tuple(int(v) for v in m.groups())


def cmd_backbone(args, device):
    import torch
    torch.manual_seed(0)
    built = {}
    for name in args.models:
        torch.manual_seed(0)
        built[name] = build_backbone(name)
        built[name][0].to(device)
    if args.channels_last:
        for model, _ in built.values():
            model.to(memory_format=torch.channels_last)
    results, targets = [], []
    for h, w, batch in args.shapes:
        x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
        row = {'input': [batch, 3, h, w]}
        if {'mambaout-t', 'timm-mambaout-t'} <= set(built):
            with torch.no_grad():
                for m, _ in built.values():
                    m.eval()
                ours = built['mambaout-t'][1](x)
                theirs = built['timm-mambaout-t'][1](x)
            row['mambaout_equal_timm'] = max(max_diff(a, b)['max_rel']
                                             for a, b in zip(ours, theirs))
        for mode in ('fwd', 'fwdbwd'):
            t = time_interleaved({name: _backbone_call(fn, m, x, mode)
                                  for name, (m, fn) in built.items()}, args.repeats, device)
            row[mode] = {'time': t}
            if {'mambaout-t', 'timm-mambaout-t'} <= set(built):
                ratio = t['mambaout-t']['median_s'] / t['timm-mambaout-t']['median_s']
                row[mode]['ours_over_timm'] = round(ratio, 3)
                targets.append(target(f'MambaOut-T {h}x{w} b{batch} {mode}: ours / timm',
                                      '<= 1.0', round(ratio, 3), ratio <= 1.0))
        results.append(row)
        print(row['input'], {m: {k: round(v['median_s'], 3) for k, v in row[m]['time'].items()}
                             for m in ('fwd', 'fwdbwd')})
    notes = ['ours: MambaOut.forward_stages (NCHW, before the output norms); timm: '
             'mambaout_tiny features_only, NHWC maps made NCHW-contiguous; same weights, '
             'drop_path 0; fwd in eval mode under no_grad, fwdbwd in train mode with the '
             'mean of every map as the loss.']
    return record('backbone', args, device, results, targets, notes)


# ---------------------------------------------------------------------------------------
# 3. Activation checkpointing
# ---------------------------------------------------------------------------------------
def build_detector(config, with_cp, device):
    """Mask R-CNN of ``config`` with the backbone's with_cp set, drop_path 0, random init."""
    from mmengine.registry import DefaultScope

    from _common import load_config
    cfg = load_config(config)
    cfg.model.backbone.with_cp = with_cp
    cfg.model.backbone.drop_path_rate = 0.0
    cfg.model.backbone.init_cfg = None  # no pretrained file needed to measure memory
    DefaultScope.get_instance(f'benchmark-{time.time_ns()}', scope_name=cfg.default_scope)
    from mmdet.registry import MODELS
    import torch
    torch.manual_seed(0)  # same random weights in every process
    return MODELS.build(cfg.model).to(device)


def synthetic_batch(h, w, batch, device, seed=0):
    """Images and ground truth (boxes, labels, masks) for one Mask R-CNN training step."""
    import numpy as np
    import torch
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
    import torch
    torch.manual_seed(0)  # the RPN / RoI samplers draw at random: same draws every time
    batch = model.data_preprocessor(data, True)
    losses = model(**batch, mode='loss')
    loss, _ = model.parse_losses(losses)
    loss.backward()
    return loss


def cmd_cp(args, device):
    import torch
    results, targets = [], []
    tmp = tempfile.mkdtemp(prefix='bench-cp-')
    for config in args.configs:
        if not osp.isfile(config):
            raise SystemExit(f'error: config file not found: {config}')
        row = {'config': config, 'input': [args.batch, 3, *args.shape]}
        grads = {}
        for cp_on in (False, True):
            out = osp.join(tmp, f'{osp.basename(config)}-{cp_on}.pt')
            probe = run_probe(['cp', '--config', config, '--with-cp', str(int(cp_on)),
                               '--shape', *map(str, args.shape), '--batch', str(args.batch),
                               '--grads', out], args.threads)
            row['with_cp' if cp_on else 'without_cp'] = {
                'peak_step_mib': _mib(probe['peak']), 'step_s': round(probe['step_s'], 3),
                'loss': probe['loss']}
            grads[cp_on] = torch.load(out, weights_only=True)
            os.unlink(out)
        worst = max((max_diff(grads[True][k], grads[False][k])['max_rel'] for k in grads[False]),
                    default=0.0)
        row['grads_max_rel_diff'] = worst
        row['grads_equal'] = worst <= args.tol and grads[True].keys() == grads[False].keys()
        off, on = row['without_cp']['peak_step_mib'], row['with_cp']['peak_step_mib']
        row['saving'] = round(1 - on / off, 3)
        targets.append(target(f'{osp.basename(config)}: peak activation memory saved by with_cp',
                              '>= 40%', f'{row["saving"]:.0%}',
                              row['saving'] >= 0.4 and row['grads_equal']))
        results.append(row)
        print(config, row['without_cp'], row['with_cp'], 'grads equal', row['grads_equal'])
    os.rmdir(tmp)
    notes = ['peak = memory above what was resident before the measured training step '
             '(forward + backward of the whole detector; parameters and their gradients are '
             'allocated by an unmeasured warm-up step first), one fresh process per setting: '
             + ('CUDA max_memory_allocated' if device.type == 'cuda' else
                'VmHWM - VmRSS with glibc mmap threshold 128 KiB (tensors go back to the OS '
                'when freed)') + '; gradients compared over every parameter, same seed.']
    return record('cp', args, device, results, targets, notes)


# ---------------------------------------------------------------------------------------
# Probes (one fresh process each): peak memory of one call
# ---------------------------------------------------------------------------------------
def cmd_probe(args, device):
    import torch
    if args.what == 'scan':
        b, d, L, N, K = args.shape
        ins = scan_inputs(b, d, L, N, K, device)
        gy = torch.randn(b, d, L, generator=torch.Generator().manual_seed(1)).to(device)
        # the mmap threshold returns every tensor to the OS when freed, and peak_bytes resets
        # the high-water mark: one process measures the four calls one after the other
        out = {f'{impl}-{mode}': peak_bytes(_scan_call(impl, mode, ins, gy), device)
               for impl in ('torch', 'reference') for mode in ('fwd', 'fwdbwd')}
    else:
        model = build_detector(args.config, bool(args.with_cp), device)
        model.train()
        data = synthetic_batch(*args.shape, args.batch, device)
        detector_step(model, data)  # warm-up: allocates the parameters' gradients
        for p in model.parameters():
            if p.grad is not None:
                p.grad.zero_()
        t0 = time.perf_counter()
        box = {}
        peak = peak_bytes(lambda: box.setdefault('loss', detector_step(model, data)), device)
        step_s = time.perf_counter() - t0
        torch.save({k: p.grad for k, p in model.named_parameters() if p.grad is not None},
                   args.grads)
        out = {'peak': peak, 'step_s': step_s, 'loss': float(box['loss'])}
    print('PROBE ' + json.dumps(out))


# ---------------------------------------------------------------------------------------
# 4. COCO evaluation
# ---------------------------------------------------------------------------------------
def _polygon(kind, cx, cy, r, rng):
    """The toy datasets' shapes (tools/make_toy_data.py), as an (n, 2) array."""
    import numpy as np
    from make_toy_data import _polygon as toy_polygon
    return np.asarray(toy_polygon(kind, cx, cy, r, rng), dtype=np.float64)


def toy_coco(num_images, seed=0, size=(480, 640), dets_per_image=100):
    """Ground truth (COCO dict) and detections (mmdet CocoMetric results) for ``num_images``:
    detections jitter each object's polygon (box and mask move together), miss some, swap a
    few labels, with scores that fall as the jitter grows, and low-scored false positives
    fill each image up to about ``dets_per_image`` (what Mask R-CNN's test_cfg keeps)."""
    import numpy as np
    import pycocotools.mask as mask_utils

    from backbones.toy import TOY_COCO_CLASSES
    rng = np.random.default_rng(seed)
    h, w = size
    images, anns, preds = [], [], []

    def encode(poly):
        rle = mask_utils.merge(mask_utils.frPyObjects([poly.ravel().tolist()], h, w))
        return rle

    for img_id in range(1, num_images + 1):
        images.append({'id': img_id, 'width': w, 'height': h, 'file_name': f'{img_id:06d}.jpg'})
        boxes, scores, labels, masks = [], [], [], []
        for _ in range(rng.integers(1, 9)):
            label = int(rng.integers(0, 3))
            r = rng.uniform(8, 150)
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            poly = _polygon(TOY_COCO_CLASSES[label], cx, cy, r, rng)
            rle = encode(poly)
            x, y, bw, bh = mask_utils.toBbox(rle).tolist()
            anns.append({'id': len(anns) + 1, 'image_id': img_id, 'category_id': label + 1,
                         'bbox': [x, y, bw, bh], 'area': float(mask_utils.area(rle)),
                         'iscrowd': 0, 'segmentation': [poly.ravel().tolist()]})
            if rng.random() < 0.1:
                continue  # missed
            jitter = rng.normal(0, 0.12, 3)
            dpoly = (poly - [cx, cy]) * (1 + jitter[2]) + [cx + jitter[0] * r, cy + jitter[1] * r]
            dpoly = np.clip(dpoly, 0, [w - 1, h - 1])
            drle = encode(dpoly)
            boxes.append(mask_utils.toBbox(drle) + [0, 0, 0, 0])
            scores.append(float(np.clip(1 - np.abs(jitter).sum() + rng.normal(0, 0.1), 0.01, 1)))
            labels.append(label if rng.random() > 0.05 else int(rng.integers(0, 3)))
            masks.append(drle)
        # false positives: a detector keeps up to 100 boxes per image above score 0.05
        # (mmdet's Mask R-CNN test_cfg), most of them wrong and low-scored
        for _ in range(max(0, int(rng.integers(dets_per_image * 3 // 4, dets_per_image + 1))
                           - len(boxes))):
            r = rng.uniform(8, 80)
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            drle = encode(_polygon('rectangle', cx, cy, r, rng))
            boxes.append(mask_utils.toBbox(drle))
            scores.append(float(rng.uniform(0.01, 0.6)))
            labels.append(int(rng.integers(0, 3)))
            masks.append(drle)
        xywh = np.array(boxes, np.float64).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        preds.append(({'img_id': img_id, 'width': w, 'height': h},  # (gt, pred), as mmdet
                      {'img_id': img_id, 'bboxes': xyxy, 'scores': np.array(scores),
                       'labels': np.array(labels, np.int64), 'masks': masks}))
    gt = {'images': images, 'annotations': anns,
          'categories': [{'id': i + 1, 'name': n} for i, n in enumerate(TOY_COCO_CLASSES)]}
    return gt, preds


def coco_metric(ann_file, backend, workers=None):
    """FastCocoMetric on ``backend``, or mmdet's stock CocoMetric for 'mmdet_CocoMetric'."""
    from mmdet.evaluation import CocoMetric

    from backbones.coco_metric import FastCocoMetric
    from backbones.toy import TOY_COCO_CLASSES
    kwargs = dict(ann_file=ann_file, metric=['bbox', 'segm'])
    metric = CocoMetric(**kwargs) if backend == 'mmdet_CocoMetric' else \
        FastCocoMetric(**kwargs, backend=backend, iou_workers=workers)
    metric.dataset_meta = {'classes': TOY_COCO_CLASSES}
    return metric


def raw_stats(ann_file, result_prefix, backend):
    """COCOeval's 12 stats per IoU type at full precision (mmdet rounds to 3 decimals)."""
    import contextlib
    import io
    if backend == 'faster_coco_eval':
        from faster_coco_eval import COCO, COCOeval_faster as COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    stats, seconds = {}, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
        for iou in ('bbox', 'segm'):
            with open(f'{result_prefix}.{iou}.json') as f:
                dets = json.load(f)
            if iou == 'segm':
                for d in dets:
                    d.pop('bbox')  # as mmdet does: mask areas, not box areas
            t0 = time.perf_counter()
            ev = COCOeval(gt, gt.loadRes(dets), iou)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            seconds += time.perf_counter() - t0
            stats[iou] = [float(s) for s in ev.stats]
    return stats, seconds


def cmd_coco(args, device):
    import contextlib
    import io

    from mmengine.logging import MMLogger
    MMLogger.get_instance('benchmark', log_level='WARNING')
    tmp = tempfile.mkdtemp(prefix='bench-coco-')
    gt, preds = toy_coco(args.images, seed=args.seed, dets_per_image=args.dets_per_image)
    ann_file = osp.join(tmp, 'instances.json')
    with open(ann_file, 'w') as f:
        json.dump(gt, f)
    backends = ('faster_coco_eval', 'pycocotools', 'mmdet_CocoMetric')
    metrics, values = {}, {}
    for b in backends:
        metrics[b] = coco_metric(ann_file, b, workers=args.threads)  # same discipline as torch
        metrics[b].outfile_prefix = osp.join(tmp, b)

    def evaluate(b):
        # compute_metrics only turns RLE counts from bytes to str in place: no copy needed
        with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its tables
            values[b] = metrics[b].compute_metrics(preds)

    t = time_interleaved({b: (lambda b=b: evaluate(b)) for b in backends}, args.repeats, device)
    stats, engine_s = {}, {}
    for b in backends[:2]:
        stats[b], engine_s[b] = raw_stats(ann_file, osp.join(tmp, 'pycocotools'), b)
    worst = max(abs(x - y) for iou in ('bbox', 'segm')
                for x, y in zip(stats['faster_coco_eval'][iou], stats['pycocotools'][iou]))
    same_metrics = values['faster_coco_eval'] == values['pycocotools'] == \
        values['mmdet_CocoMetric']
    speedup = t['pycocotools']['median_s'] / t['faster_coco_eval']['median_s']
    results = {'images': args.images, 'gt_objects': len(gt['annotations']),
               'detections': int(sum(len(p[1]['scores']) for p in preds)),
               'time': t, 'speedup': round(speedup, 2),
               'speedup_vs_mmdet_CocoMetric':
                   round(t['mmdet_CocoMetric']['median_s'] / t['faster_coco_eval']['median_s'], 2),
               'engine_only_s': engine_s, 'engine_only_speedup':
                   round(engine_s['pycocotools'] / engine_s['faster_coco_eval'], 2),
               'metrics': values['faster_coco_eval'], 'metrics_identical': same_metrics,
               'stats': stats, 'stats_max_abs_diff': worst}
    results['profile_faster'] = python_profile(lambda: evaluate('faster_coco_eval'), 8)
    for f in glob.glob(osp.join(tmp, '*')):
        os.unlink(f)
    os.rmdir(tmp)
    ok = worst <= 1e-4 and same_metrics
    why = (f"COCOeval alone (loadRes, evaluate, accumulate, summarize) is "
           f"{results['engine_only_speedup']}x faster; the rest is work both backends share "
           f"(mmdet's results2json, JSON I/O, RLE areas). Self time of the faster path: " +
           ', '.join(f"{p['function']} {p['share']:.0%}" for p in results['profile_faster'][:5]))
    targets = [target('FastCocoMetric faster-coco-eval vs pycocotools (bbox + segm)', '>= 3x',
                      round(speedup, 2), speedup >= 3 and ok, '' if speedup >= 3 else why),
               target('identical AP', '<= 1e-4', worst, ok)]
    print(f'{args.images} images: faster-coco-eval {t["faster_coco_eval"]["median_s"]:.2f}s, '
          f'pycocotools {t["pycocotools"]["median_s"]:.2f}s, x{speedup:.2f}, max diff {worst}')
    notes = ['time = the whole compute_metrics (results to JSON, loadRes, evaluate, '
             'accumulate, summarize) for bbox and segm, after the metric is built (ground truth '
             f'loaded), faster-coco-eval with iou_workers={args.threads}; contenders: '
             'FastCocoMetric on faster-coco-eval, FastCocoMetric on '
             'pycocotools (its fallback), mmdet\'s stock CocoMetric (what the configs used '
             'before); stats = COCOeval.stats at full precision from both engines on the same '
             'result files.']
    return record('coco', args, device, results, targets, notes)


# ---------------------------------------------------------------------------------------
# 5. Training / inference throughput of any config
# ---------------------------------------------------------------------------------------
def _load_for_device(args):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from _common import load_config, setup_device
    if not osp.isfile(args.config):
        raise SystemExit(f'error: config file not found: {args.config}')
    options = dict(args.cfg_options or {})
    if args.toy_data:
        from backbones.toy import toy_cfg_options
        scope = Config.fromfile(args.config).get('default_scope')
        root = osp.join(args.toy_data, 'coco' if scope == 'mmdet' else 'ade/ADEChallengeData2016')
        if not osp.isdir(root):
            raise SystemExit(f'error: no toy data at {root} (python tools/make_toy_data.py '
                             f'--out {args.toy_data})')
        for opt in toy_cfg_options(Config.fromfile(args.config), root, scale=args.toy_scale,
                                   batch_size=args.batch_size or 2):
            key, value = opt.split('=', 1)
            options.setdefault(key, _parse_value(value))
    cfg = load_config(args.config, options)
    if args.batch_size:
        cfg.train_dataloader.batch_size = args.batch_size
    notes = setup_device(cfg, 'none')
    DefaultScope.get_instance(f'benchmark-{time.time_ns()}', scope_name=cfg.default_scope)
    return cfg, notes


def _parse_value(text):
    """A --cfg-options value as mmengine's DictAction parses it."""
    from mmengine.config import DictAction
    return DictAction._parse_iterable(text)


def _build_model(cfg, device):
    from mmengine.registry import MODELS
    cfg.model.get('backbone', {}).pop('init_cfg', None)  # random init: no checkpoint needed
    return MODELS.build(cfg.model).to(device)


def _loop(step, loader, iters, warmup, device):
    """Run ``step(data)`` on ``iters`` batches after ``warmup``; time spent waiting for
    data vs in total, and peak memory above the start."""
    import torch
    it = iter(loader)

    def next_batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    for _ in range(warmup):
        step(next_batch())
    box = {'data': 0.0, 'images': 0}

    def timed():
        for _ in range(iters):
            t0 = time.perf_counter()
            data = next_batch()
            box['data'] += time.perf_counter() - t0
            step(data)
            box['images'] += len(data['inputs'])
        _sync(device)

    t0 = time.perf_counter()
    peak = peak_bytes(timed, device)
    total = time.perf_counter() - t0
    out = {'iters': iters, 'images': box['images'], 'seconds': round(total, 3),
           'img_per_s': round(box['images'] / total, 3),
           'data_share': round(box['data'] / total, 4), 'peak_mib': _mib(peak)}
    if device.type == 'cuda':
        out['peak_allocated_mib'] = _mib(torch.cuda.max_memory_allocated(device))
    else:
        import resource
        out['max_rss_mib'] = _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return out


def cmd_throughput(args, device):
    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import Runner
    cfg, notes = _load_for_device(args)
    model = _build_model(cfg, device)
    if args.command == 'train':
        model.train()
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        loader_cfg = cfg.train_dataloader
        loader = Runner.build_dataloader(loader_cfg)

        def step(data):
            model.train_step(data, optim)
    else:
        model.eval()
        loader_cfg = cfg.test_dataloader
        loader = Runner.build_dataloader(loader_cfg)

        def step(data):
            with torch.no_grad():
                model.test_step(data)
    res = _loop(step, loader, args.iters, args.warmup, device)
    res.update(config=args.config, batch_size=loader_cfg.get('batch_size'),
               optim_wrapper=cfg.optim_wrapper.get('type') if args.command == 'train' else None,
               toy_data=bool(args.toy_data))
    print(json.dumps(res))
    notes = list(notes) + ['peak = memory above the start of the timed iterations' +
                           (' (VmHWM - VmRSS; this process runs with the default allocator, '
                            'so it is a lower bound)' if device.type != 'cuda' else '')]
    return record(args.command, args, device, res, [], notes)


# ---------------------------------------------------------------------------------------
# README section
# ---------------------------------------------------------------------------------------
ORDER = ('scan', 'backbone', 'cp', 'coco', 'train', 'infer')


def load_records(directory):
    """``name -> record`` for every JSON in ``directory``, in the issue's order."""
    recs = {}
    for path in sorted(glob.glob(osp.join(directory, '*.json'))):
        with open(path) as f:
            rec = json.load(f)
        if rec.get('schema') != SCHEMA or 'benchmark' not in rec:
            raise SystemExit(f'error: {path} is not a benchmark record of schema {SCHEMA}')
        recs[osp.splitext(osp.basename(path))[0]] = rec
    rank = {b: i for i, b in enumerate(ORDER)}
    return dict(sorted(recs.items(), key=lambda kv: (rank.get(kv[1]['benchmark'], 99), kv[0])))


def _s(x):
    return f'{x:.3f}' if x < 1 else f'{x:.2f}'


def render(recs):
    """The README's performance section (between the markers) from the records."""
    out = [BEGIN, '<!-- generated by `python tools/benchmark.py report`; do not edit -->', '']
    machines = sorted({f"{r['device']}, {r['machine']['usable_cores']} usable cores, "
                       f"{r['threads']} torch thread(s), torch {r['versions']['torch']}"
                       for r in recs.values()})
    out += ['Measured on: ' + '; '.join(machines) + '. Medians of interleaved repeats after a '
            'warm-up; each table names the command that made it (`results/benchmarks/NAME.json` '
            'holds every repeat, the versions and the commit). The machine is shared: absolute '
            'seconds move with its load (compare ratios within a row, not seconds across '
            'tables or passes).', '']
    for name, rec in recs.items():
        out += RENDERERS.get(rec['benchmark'], _render_generic)(name, rec)
    missed = [(name, t) for name, r in recs.items() for t in r['targets'] if not t['met']]
    if missed:
        out += ['Targets missed:', '']
        out += [f"- `{name}`: {t['name']}: {t['value']} (goal {t['goal']}). {t['why']}".rstrip()
                for name, t in missed]
        out.append('')
    out.append(END)
    return '\n'.join(out)


def _head(name, rec, title):
    return [f"**{title}** (`{rec['command']}`, {rec['timestamp'][:10]})", '']


def _render_scan(name, rec):
    out = _head(name, rec, 'Selective scan, torch backend vs the per-token loop')
    out += ['| stage | (B, D, L, N) | fwd: ours / loop | x | fwd+bwd: ours / loop | x | '
            'peak fwd+bwd: ours / loop | equal (max rel diff) |', '|' + ' --- |' * 8]
    for r in rec['results']:
        s = r['shape']
        cells = [str(r['stage']), f"({s['batch']}, {s['channels']}, {s['length']}, {s['d_state']})"]
        for m in ('fwd', 'fwdbwd'):
            t = r[m]['time']
            cells += [f"{_s(t['torch']['median_s'])} s / {_s(t['reference']['median_s'])} s",
                      f"{r[m]['speedup']}x"]
        mem = r['fwdbwd']['peak_mib']
        cells.append(f"{mem['torch']} / {mem['reference']} MiB" if mem else 'n/a')
        worst = max(v['max_rel'] for v in r['equal']['diffs'].values())
        cells.append(f"{'yes' if r['equal']['ok'] else 'NO'} ({worst:.1e})")
        out.append('| ' + ' | '.join(cells) + ' |')
    return out + [''] + _render_profile(rec) + _scan_why(rec) + _notes(rec)


def _scan_why(rec):
    """For a missed ratio: how fast each side streams through the states, from the record."""
    out = []
    for r in rec['results']:
        s = r['shape']
        elems = s['batch'] * s['channels'] * s['d_state']
        for mode in ('fwd', 'fwdbwd'):
            if r[mode]['speedup'] >= 10:
                continue
            t = r[mode]['time']
            rate = {k: elems * s['length'] / t[k]['median_s'] / 1e6 for k in t}
            out.append(
                f"- why stage {r['stage']} {mode} is {r[mode]['speedup']}x: the loop's "
                f"{s['length']} steps each work on {elems}-element (B x D x N) slices, big "
                f"enough to amortise the per-op overhead that makes it slow on long sequences "
                f"({rate['reference']:.0f} M state updates/s here); ours streams the same "
                f"states through a few element-wise passes ({rate['torch']:.0f} M/s) and is "
                f"bound by memory traffic: the multiplies, scans (addcmul_) and layout copies "
                f"of the profile above, not by Python steps")
    return out + [''] if out else out


def _render_profile(rec):
    out = []
    for r in rec['results']:
        for mode, label in (('fwd', 'forward'), ('fwdbwd', 'forward+backward')):
            if r[mode].get('profile'):
                ops = ', '.join(f"{p['op']} {p['share']:.0%}" for p in r[mode]['profile'][:6])
                out.append(f"- profile of the torch backend, stage {r['stage']} {label} "
                           f"(self CPU time): {ops}")
    return out + [''] if out else out


def _render_backbone(name, rec):
    out = _head(name, rec, 'Backbones (seconds per call)')
    models = list(rec['results'][0]['fwd']['time'])
    out += ['| input | pass | ' + ' | '.join(models) + ' | MambaOut-T ours / timm |',
            '|' + ' --- |' * (len(models) + 3)]
    for r in rec['results']:
        for m in ('fwd', 'fwdbwd'):
            t = r[m]['time']
            out.append(f"| {'x'.join(map(str, r['input']))} | {m} | "
                       + ' | '.join(_s(t[k]['median_s']) for k in models)
                       + f" | {r[m].get('ours_over_timm', 'n/a')} |")
    return out + [''] + _notes(rec)


def _render_cp(name, rec):
    out = _head(name, rec, 'Activation checkpointing, one Mask R-CNN training step')
    out += ['| config | input | peak without / with `with_cp` | saved | step time without / '
            'with | gradients equal |', '|' + ' --- |' * 6]
    for r in rec['results']:
        out.append(f"| `{osp.basename(r['config'])}` | {'x'.join(map(str, r['input']))} | "
                   f"{r['without_cp']['peak_step_mib']} / {r['with_cp']['peak_step_mib']} MiB | "
                   f"{r['saving']:.0%} | {r['without_cp']['step_s']} / {r['with_cp']['step_s']} s"
                   f" | {'yes' if r['grads_equal'] else 'NO'} ({r['grads_max_rel_diff']:.1e}) |")
    return out + [''] + _notes(rec)


def _render_coco(name, rec):
    r = rec['results']
    t = r['time']
    out = _head(name, rec, 'COCO evaluation (bbox + segm), FastCocoMetric')
    out += ['| images / objects / detections | faster-coco-eval | pycocotools (fallback) | x | '
            "mmdet's CocoMetric | x | max stat diff | metrics identical |", '|' + ' --- |' * 8,
            f"| {r['images']} / {r['gt_objects']} / {r['detections']} | "
            f"{_s(t['faster_coco_eval']['median_s'])} s | {_s(t['pycocotools']['median_s'])} s | "
            f"{r['speedup']}x | {_s(t['mmdet_CocoMetric']['median_s'])} s | "
            f"{r['speedup_vs_mmdet_CocoMetric']}x | {r['stats_max_abs_diff']:.1e} | "
            f"{'yes' if r['metrics_identical'] else 'NO'} |", '']
    return out + _notes(rec)


def _render_throughput(name, rec):
    r = rec['results']
    toy = ' (toy data)' if r['toy_data'] else ''
    out = _head(name, rec, f"{rec['benchmark'].capitalize()} throughput, "
                           f"`{osp.basename(r['config'])}`{toy}")
    out += ['| batch | img/s | peak | data-loading share |', '|' + ' --- |' * 4,
            f"| {r['batch_size']} | {r['img_per_s']} | {r['peak_mib']} MiB | "
            f"{r['data_share']:.0%} |", '']
    return out


def _render_generic(name, rec):
    return _head(name, rec, rec['benchmark']) + ['```', json.dumps(rec['results'])[:500], '```', '']


def _notes(rec):
    return [f'_{n}_' for n in rec['notes']] + [''] if rec['notes'] else []


RENDERERS = {'scan': _render_scan, 'backbone': _render_backbone, 'cp': _render_cp,
             'coco': _render_coco, 'train': _render_throughput, 'infer': _render_throughput}


def cmd_report(args, device):
    recs = load_records(args.dir)
    if not recs:
        raise SystemExit(f'error: no benchmark JSONs in {args.dir}')
    with open(args.readme) as f:
        text = f.read()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f'error: {args.readme} needs exactly one {BEGIN} ... {END} block')
    head, rest = text.split(BEGIN)
    new = head + render(recs) + rest.split(END, 1)[1]
    if args.check:
        if new != text:
            raise SystemExit(f'error: {args.readme} is out of date with {args.dir}: run '
                             'python tools/benchmark.py report')
        print(f'{args.readme} is up to date')
        return None
    from leaderboard import write_atomic
    write_atomic(args.readme, new)
    print(f'wrote the performance section of {args.readme} from {len(recs)} records')
    return None


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)

    def common(p, name):
        p.add_argument('--out', default=OUT_DIR, help='folder for the JSON (default: '
                                                      'results/benchmarks)')
        p.add_argument('--name', default=name, help=f'JSON file name (default: {name})')
        p.add_argument('--threads', type=int, default=1, help='torch intra-op threads on CPU')
        p.add_argument('--device', default=None, help='cpu | cuda (default: cuda if present)')
        return p

    p = common(sub.add_parser('scan', help='selective scan vs the step loop'), 'scan')
    p.add_argument('--arch', default='v0-tiny', help='VMamba arch whose scan shapes to use')
    p.add_argument('--size', type=int, default=512, help='input side (default 512)')
    p.add_argument('--stages', type=int, nargs='+', default=[1, 3], choices=[1, 2, 3, 4])
    p.add_argument('--channels', type=int, help='override the channels (tests)')
    p.add_argument('--length', type=int, help='override the sequence length (tests)')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--tol', type=float, default=1e-4)
    p.add_argument('--profile', type=int, default=12, help='top ops of a forward (0: none)')
    p.add_argument('--no-memory', action='store_true', help='skip the peak-memory probes')

    p = common(sub.add_parser('backbone', help='backbones: ours vs timm'), 'backbone')
    p.add_argument('--shapes', type=parse_shape, nargs='+',
                   default=[(800, 1280, 1), (512, 512, 2)], help='HxWxBATCH ...')
    p.add_argument('--models', nargs='+', default=list(BACKBONES), choices=BACKBONES)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--channels-last', action='store_true')

    p = common(sub.add_parser('cp', help='with_cp peak memory of a Mask R-CNN step'), 'cp')
    p.add_argument('--configs', nargs='+', default=list(DET_CONFIGS))
    p.add_argument('--shape', type=int, nargs=2, default=[512, 832], metavar=('H', 'W'))
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--tol', type=float, default=1e-4)

    p = common(sub.add_parser('coco', help='COCO evaluation: faster-coco-eval vs pycocotools'),
               'coco')
    p.add_argument('--images', type=int, default=500)
    p.add_argument('--dets-per-image', type=int, default=100,
                   help='detections per image, about (Mask R-CNN keeps up to 100)')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--seed', type=int, default=0)

    for cmd in ('train', 'infer'):
        p = common(sub.add_parser(cmd, help=f'{cmd} throughput of a config'), None)
        p.add_argument('config')
        p.add_argument('--iters', type=int, default=10)
        p.add_argument('--warmup', type=int, default=2)
        p.add_argument('--batch-size', type=int, help='train batch size (default: the config)')
        p.add_argument('--toy-data', help='toy data root (tools/make_toy_data.py --out)')
        p.add_argument('--toy-scale', type=int, default=256)
        p.add_argument('--cfg-options', nargs='+', default=None, type=str,
                       help='key=value overrides')

    p = sub.add_parser('report', help="regenerate the README's performance section")
    p.add_argument('--dir', default=OUT_DIR)
    p.add_argument('--readme', default=README)
    p.add_argument('--check', action='store_true', help='fail if the README is out of date')

    p = sub.add_parser('_probe')  # internal: one peak-memory measurement in a fresh process
    p.add_argument('what', choices=['scan', 'cp'])
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--device', default=None)
    p.add_argument('--shape', type=int, nargs='+')
    p.add_argument('--config')
    p.add_argument('--with-cp', type=int)
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--grads')
    args = parser.parse_args(argv)
    if args.command in ('train', 'infer'):
        if args.cfg_options:
            opts = {}
            for kv in args.cfg_options:
                if '=' not in kv:
                    parser.error(f'--cfg-options expects key=value, got {kv!r}')
                k, v = kv.split('=', 1)
                opts[k] = _parse_value(v)
            args.cfg_options = opts
        args.name = args.name or f'{args.command}_{osp.splitext(osp.basename(args.config))[0]}'
    return args


def main(argv=None):
    import warnings
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
    args = parse_args(argv)
    import torch

    import backbones  # noqa: F401  (registers backbones and FastCocoMetric)
    device = torch.device(args.device if getattr(args, 'device', None)
                          else 'cuda' if torch.cuda.is_available() else 'cpu')
    if device.type == 'cpu' and getattr(args, 'threads', None):
        torch.set_num_threads(args.threads)
    commands = {'scan': cmd_scan, 'backbone': cmd_backbone, 'cp': cmd_cp, 'coco': cmd_coco,
                'train': cmd_throughput, 'infer': cmd_throughput, 'report': cmd_report,
                '_probe': cmd_probe}
    rec = commands[args.command](args, device)
    if rec is not None:
        write_record(rec, args.out, args.name)


if __name__ == '__main__':
    main()
