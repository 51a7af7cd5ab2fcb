"""Stage 1 of tools/gpu_check.sh: what a bare GPU machine checks with torch, triton and timm.

    python tools/gpu_stage1.py --out stage1.json [--repeats 5] [--dry-run]

1. Correctness on the device: every selective-scan backend that runs there against the
   float64 step reference (``backbones.ops.reference``), output and every gradient, at small
   awkward shapes: N = 16 and N = 1, fp32 and fp16 inputs, and (triton) through the cross2d
   route and a partition route (atrous 2x2).
2. Stage-1 timings at VMamba-T stage 1 (800x1344 batch 2: (2, 4 x 192, 67200), N = 16 and
   N = 1): every backend, forward and forward+backward, fp32 inputs (triton also fp16 and
   routed through cross2d), with each time over the floor of the card (the committed
   ``results/benchmarks/sass.json`` has the floors of H100 SXM and H200) and the proxy's
   estimate (instruction counts of the kernels compiled for sm_90, same record) beside it.
3. Backbones forward+backward under fp16 autocast at 800x1344 batch 2: MambaOut-T, and
   VMamba-T and V2-T per scan backend, each over MambaOut-T's time.

Imports nothing but torch, triton, timm and this repository (no mmengine / mmcv / cv2 /
rich / pytest). ``--dry-run`` runs the same code on CPU at tiny sizes with one repeat (the
CI check that the set-up works without the GPU stack).
"""
import argparse
import json
import os.path as osp
import platform
import statistics
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from backbones.models import backbone_class  # noqa: E402
from backbones.ops import (  # noqa: E402
    available_backends,
    get_scan_route,
    selective_scan,
    selective_scan_routed,
)
from backbones.ops.reference import reference_scan  # noqa: E402

SASS = osp.join(REPO, 'results', 'benchmarks', 'sass.json')
#: VMamba-T stage 1 at 800x1344 batch 2: (batch, K, d_inner, H, W); d_state per arch.
STAGE1 = (2, 4, 192, 200, 336)
ARCHS = {'v0-tiny': 16, 'v2-tiny': 1}
BACKBONE_INPUT = (2, 3, 800, 1344)


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def median_ms(fn, repeats, device):
    fn()  # warm-up (compiles the Triton kernels)
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 4)


def inputs(b, K, dg, L, N, device, dtype=torch.float32, seed=0, routed=False):
    """Scan inputs in VMamba's ranges; ``routed``: x (b, dg, L) and map-order projections."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    d = K * dg
    ins = dict(u=r(b, dg, L) if routed else r(b, d, L),
               delta=(r(b, K, dg, L) if routed else r(b, d, L)) * 0.5,
               A=-torch.arange(1, N + 1, dtype=torch.float32).repeat(d, 1),
               B=r(b, K, N, L), C=r(b, K, N, L), D=torch.ones(d),
               delta_bias=torch.log(torch.expm1(torch.rand(d, generator=g) * 0.099 + 0.001)))
    low = ('u', 'delta', 'B', 'C')
    return {k: v.to(device, dtype if k in low else torch.float32) for k, v in ins.items()}


def scan_fn(backend, route=None, hw=None):
    """A scan function of the keyword inputs: a backend, or triton through ``route``."""
    if route is None:
        return lambda **ins: selective_scan(**ins, delta_softplus=True, backend=backend)
    r = get_scan_route(route)

    def routed(u, delta, A, B, C, D, delta_bias):
        index = r.index(*hw, u.device)
        return selective_scan_routed(u, delta, A, B, C, D, delta_bias, True, index=index)
    return routed


def reference_fn(route=None, hw=None):
    """The float64 step loop, composed with the route's own scan / merge when routed."""
    if route is None:
        return lambda **ins: reference_scan(**ins, delta_softplus=True)
    r = get_scan_route(route)

    def routed(u, delta, A, B, C, D, delta_bias):
        b, dg, P = u.shape
        K = r.num_routes
        index = r.index(*hw, u.device)
        take = lambda t: torch.gather(t, 3, index[None, :, None].expand(  # noqa: E731
            b, K, t.shape[2], index.shape[1]))
        us = u[:, :, index].transpose(1, 2).reshape(b, K * dg, -1)
        ys = reference_scan(us, take(delta).flatten(1, 2), A, take(B), take(C), D, delta_bias,
                            delta_softplus=True)
        flat = ys.view(b, K, dg, -1).transpose(1, 2).reshape(b, dg, -1)
        return flat.new_zeros(b, dg, P).index_add_(2, index.flatten(), flat)
    return routed


def fwd_bwd(fn, ins, gy):
    leaves = {k: v.detach().clone().requires_grad_() for k, v in ins.items()}
    y = fn(**leaves)
    grads = torch.autograd.grad((y * gy.to(y.dtype)).sum(), list(leaves.values()))
    return y, dict(zip(leaves, grads))


def rel_err(got, ref):
    ref = ref.double()
    return (got.double() - ref).abs().max().item() / max(ref.abs().max().item(), 1.0)


# ---------------------------------------------------------------------------------------
def correctness(device, backends):
    out = []
    cases = [dict(N=16, L=300), dict(N=1, L=1031)]
    for backend in backends:
        for case in cases:
            for dtype in (torch.float32, torch.float16):
                ins = inputs(2, 4, 8, case['L'], case['N'], device, dtype)
                out.append(_check(backend, None, None, ins, case, dtype, device))
        if backend != 'triton':
            continue
        for route, hw in (('cross2d', (13, 21)), ('atrous2x2', (12, 22))):
            case = dict(N=16, L=hw[0] * hw[1])
            ins = inputs(2, get_scan_route(route).num_routes, 8, case['L'], 16, device,
                         routed=True)
            out.append(_check(backend, route, hw, ins, case, torch.float32, device))
    return out


def _check(backend, route, hw, ins, case, dtype, device):
    g = torch.Generator().manual_seed(1)
    shape = ins['u'].shape
    gy = torch.randn(*shape, generator=g).to(device)
    y, grads = fwd_bwd(scan_fn(backend, route, hw), ins, gy)
    ref_ins = {k: v.detach().cpu().double() for k, v in ins.items()}
    y_ref, g_ref = fwd_bwd(reference_fn(route, hw), ref_ins, gy.cpu().double())
    errs = {'y': rel_err(y.cpu(), y_ref), **{f'grad_{k}': rel_err(grads[k].cpu(), g_ref[k])
                                             for k in grads}}
    tol = 1e-3 if dtype == torch.float32 else 1e-2
    return {'backend': backend, 'route': route, 'N': case['N'], 'L': case['L'],
            'dtype': str(dtype).split('.')[-1], 'max_rel_err': {k: float(f'{v:.2e}')
                                                                for k, v in errs.items()},
            'ok': all(v <= tol for v in errs.values()), 'tolerance': tol}


# ---------------------------------------------------------------------------------------
def proxy(card):
    """Per (direction, N, dtype): the sass record's floor and estimate on ``card``."""
    if card is None or not osp.exists(SASS):
        return {}
    with open(SASS) as f:
        rec = json.load(f)
    out = {}
    for r in rec['results']['kernels']:
        if r['kernel'].startswith(('scan_fwd', 'scan_bwd', '_scan')):
            out[(r['direction'], r['d_state'], r['dtype'])] = {
                'floor_ms': r['floor_ms'][card], 'estimate_ms': r['estimate_ms'][card],
                'issue_bound_ms': r['issue_bound_ms']}
    return out


def card_of(device):
    if device.type != 'cuda':
        return None
    name = torch.cuda.get_device_name(device).lower()
    return 'H200' if 'h200' in name and 'gh200' not in name else \
        'H100 SXM' if 'h100' in name and not ('pcie' in name or 'nvl' in name) else None


def stage1_times(device, backends, repeats, shape):
    b, K, dg, H, W = shape
    L = H * W
    expected = proxy(card_of(device))
    out = []
    for arch, N in ARCHS.items():
        variants = [(backend, torch.float32, None) for backend in backends]
        if 'triton' in backends:
            variants += [('triton', torch.float16, None), ('triton', torch.float32, 'cross2d')]
        for backend, dtype, route in variants:
            ins = inputs(b, K, dg, L, N, device, dtype, routed=route is not None)
            fn = scan_fn(backend, route, (H, W))
            gy = torch.randn(*ins['u'].shape, device=device)
            leaves = {k: v.detach().clone().requires_grad_() for k, v in ins.items()}

            def fwd():
                with torch.no_grad():
                    fn(**ins)

            def fwdbwd():
                y = fn(**leaves)
                y.backward(gy)
            row = {'arch': arch, 'N': N, 'backend': backend, 'route': route,
                   'dtype': str(dtype).split('.')[-1], 'shape': [b, K * dg, L, N],
                   'fwd_ms': median_ms(fwd, repeats, device),
                   'fwdbwd_ms': median_ms(fwdbwd, repeats, device)}
            row['fwdbwd_over_fwd'] = round(row['fwdbwd_ms'] / row['fwd_ms'], 3)
            p = expected.get(('fwd', N, row['dtype'])) if backend == 'triton' else None
            if p is not None:
                row['floor_ms'], row['proxy_fwd_estimate_ms'] = p['floor_ms'], p['estimate_ms']
                row['fwd_over_floor'] = round(row['fwd_ms'] / p['floor_ms'], 2)
                pb = expected.get(('bwd', N, row['dtype']))
                row['proxy_fwdbwd_estimate_ms'] = round(p['estimate_ms'] + pb['estimate_ms'], 4)
            out.append(row)
            print(json.dumps(row), flush=True)
    for row in out:  # each time over the torch backend's at the same arch
        ref = next((r for r in out if r['arch'] == row['arch'] and r['backend'] == 'torch'),
                   None)
        if ref:
            row['torch_over_this_fwdbwd'] = round(ref['fwdbwd_ms'] / row['fwdbwd_ms'], 2)
    return out


def backbones(device, backends, repeats, shape, precision):
    subjects = [('mambaout-t', 'MambaOut', dict(arch='tiny'))]
    for arch, name in (('v0-tiny', 'vmamba-t'), ('v2-tiny', 'vmamba-v2-t')):
        subjects += [(f'{name} ({backend})', 'VMamba', dict(arch=arch, scan_backend=backend))
                     for backend in backends]
    x = torch.randn(*shape, device=device)
    out = []
    for label, cls, kwargs in subjects:
        model = backbone_class(cls)(**kwargs).to(device)

        def step():
            for p in model.parameters():
                p.grad = None
            with torch.autocast(device.type, dtype=precision, enabled=device.type == 'cuda'):
                outs = model(x)
            sum(o.float().mean() for o in outs).backward()
        row = {'backbone': label, 'input': list(shape), 'fwdbwd_ms': median_ms(step, repeats,
                                                                               device)}
        out.append(row)
        print(json.dumps(row), flush=True)
    ref = out[0]['fwdbwd_ms']
    for row in out:
        row['over_mambaout_t'] = round(row['fwdbwd_ms'] / ref, 3)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', required=True, help='the JSON to write')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--dry-run', action='store_true',
                   help='CPU, tiny shapes, one repeat: the set-up only')
    p.add_argument('--skip', nargs='*', default=[], choices=['correctness', 'stage1',
                                                              'backbones'])
    args = p.parse_args(argv)
    if args.dry_run:
        device, repeats = torch.device('cpu'), 1
        shape, bb_input = (1, 4, 4, 8, 12), (1, 3, 64, 96)
    else:
        if not torch.cuda.is_available():
            raise SystemExit('error: no CUDA device (on a CPU machine use --dry-run)')
        device, repeats, shape, bb_input = torch.device('cuda'), args.repeats, STAGE1, \
            BACKBONE_INPUT
    backends = list(available_backends(device))
    rec = {'stage': 1, 'dry_run': args.dry_run, 'device': torch.cuda.get_device_name(device)
           if device.type == 'cuda' else f'cpu: {platform.processor() or platform.machine()}',
           'versions': {'torch': torch.__version__, 'python': platform.python_version(),
                        'triton': _version('triton'), 'timm': _version('timm')},
           'backends': backends, 'sass_record': osp.relpath(SASS, REPO)}
    t0 = time.time()
    if 'correctness' not in args.skip:
        rec['correctness'] = correctness(device, backends)
    if 'stage1' not in args.skip:
        rec['stage1'] = stage1_times(device, backends, repeats, shape)
    if 'backbones' not in args.skip:
        rec['backbones'] = backbones(device, backends, repeats, bb_input, torch.float16)
    rec['seconds'] = round(time.time() - t0, 1)
    with open(args.out, 'w') as f:
        json.dump(rec, f, indent=1)
    bad = [c for c in rec.get('correctness', []) if not c['ok']]
    print(f'[stage1] {len(rec.get("correctness", []))} correctness checks, {len(bad)} failed; '
          f'{rec["seconds"]} s; wrote {args.out}')
    return 1 if bad else 0


def _version(name):
    try:
        return __import__(name).__version__
    except Exception:  # noqa: BLE001 - reported, not needed
        return None


if __name__ == '__main__':
    sys.exit(main())
