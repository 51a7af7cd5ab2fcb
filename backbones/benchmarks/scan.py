"""``scan``: the selective scan of every backend that runs on the device vs the step loop.

At VMamba's stage shapes: time (forward, forward+backward), peak memory, and equality of the
output and every gradient against :func:`backbones.ops.reference.reference_scan` in float32
(the per-token loop of mamba-ssm's ``selective_scan_ref``). On CPU the contenders are the
``torch`` backend and that loop; on CUDA every backend of ``available_backends('cuda')``.

Stage shapes: ``--size S`` is a square S x S input at batch 1 (the committed CPU records);
``--input HxWxB ...`` the exact inputs of the issue (``800x1344x2``: a padded Mask R-CNN
batch; ``512x512x2``: UperNet crops), stage s having K=4 routes x d_inner channels over
ceil(H / 2^(s+1)) x ceil(W / 2^(s+1)) tokens. With ``--input`` (or on CUDA) every row also
holds ``backends``: per backend the forward and forward+backward milliseconds, their ratio,
peak memory and the effective bandwidth of the forward: the minimal fp32 traffic
(:func:`forward_bytes`: read u, delta, B, C, write y) over its time, in GB/s and as a fraction
of the card's peak (:data:`DEVICE_PEAKS`; unknown card: null), beside the floor (that
traffic at peak bandwidth, or at N=16 the exp throughput where it is known, whichever is
longer). The issue's targets are evaluated at stage 1 only where measured: Triton forward
within 3x of the floor, its forward+backward within 3x of its own forward, Triton at least
as fast as mamba_ssm where that backend runs.

``--no-reference`` leaves the step loop out (at 800x1344 it takes minutes per call on a GPU);
the backends are then compared with the torch backend. ``--fused`` also times the fused-route
path (:func:`backbones.ops.scan_triton.selective_scan_routed`: cross-scan and cross-merge
by tile-local Triton copies around the scan) against the unfused one (``route.scan`` ->
scan -> ``route.merge``) of the cross2d route at each stage, with their equality.
"""
import functools
import json

import torch

from ..ops import available_backends, selective_scan
from ..ops.reference import reference_scan
from .common import (
    Benchmark,
    fmt_seconds,
    head,
    make_record,
    max_diff,
    mib,
    notes_md,
    peak_bytes,
    run_probe,
    target,
    time_interleaved,
)

__all__ = ['Scan', 'vmamba_scan_shape', 'scan_inputs', 'forward_bytes', 'device_peaks',
           'DEVICE_PEAKS']
REFERENCE = 'reference'
#: The backend whose numbers the table shows and ``speedup`` / ``equal`` name (always there).
PRIMARY = 'torch'
MODES = ('fwd', 'fwdbwd')
GOAL = 10  # x faster than the loop
#: The issue's targets (stage 1): Triton forward within FLOOR_GOAL x of the floor, its
#: forward+backward within BWD_GOAL x of its own forward.
FLOOR_GOAL, BWD_GOAL = 3.0, 3.0
#: Peak HBM bandwidth (GB/s) and exp2 throughput (/s, None: not known) by device name: the
#: first row whose words all occur in ``torch.cuda.get_device_name`` (lower case) wins; a
#: ``None`` bandwidth means "not known" (GH200 comes in HBM3 and HBM3e versions).
#: Sources: ../shared/reference/scan_performance_anchors.md Sec. 6 (H200 4.8, H100 SXM 3.35,
#: A100 80GB SXM 2.039 TB/s); NVIDIA datasheets for H100 PCIe 2.0, H100 NVL 3.9, A100 80GB
#: PCIe 1.935 and A100 40GB 1.555 TB/s. The exp rate (132 SMs x 16 SFU results/clk x
#: 1.98 GHz) is UNVERIFIED (anchors Sec. 6) and given for the 132-SM H100 SXM / H200 only.
DEVICE_PEAKS = (
    (('gh200',), None, None),
    (('h200',), 4800.0, 4.2e12),
    (('h100', 'nvl'), 3900.0, None),
    (('h100', 'pcie'), 2000.0, None),
    (('h100',), 3350.0, 4.2e12),
    (('a100', '80gb', 'pcie'), 1935.0, None),
    (('a100', '80gb'), 2039.0, None),
    (('a100',), 1555.0, None),
)
BANDWIDTH_NOTE = ('effective bandwidth = minimal fp32 traffic of the forward / its median '
                  'time, bytes = 4 * (2*B*D*L [read u, delta] + 2*B*K*N*L [read B, C] + '
                  'B*D*L [write y] + D*N + 2*D [A, D, delta_bias]); floor = max(bytes / peak '
                  'bandwidth, B*D*L*N exp2 / exp throughput where known); of_peak = GB/s / '
                  'the card\'s peak (null: card not in the table)')


def stage_grid(size, stage):
    """(H, W) tokens of ``stage`` (1-4) for an input ``size`` (int: square, or (H, W)):
    stride 2^(s+1), ceil as VMamba pads each downsampling."""
    h, w = (size, size) if isinstance(size, int) else size
    stride = 2 ** (stage + 1)
    return -(-h // stride), -(-w // stride)


def vmamba_scan_shape(arch, stage, size, batch=1):
    """(batch, K * d_inner, L, N, K) of the selective scan in ``stage`` (1-4) of ``arch``
    for an input of ``size`` (int: square, or (H, W))."""
    from ..models.vmamba import VMamba
    zoo = VMamba.arch_zoo[arch]
    settings = VMamba.version_settings[zoo['version']]
    dim = zoo['embed_dim'] * 2 ** (stage - 1)
    d_inner = int(settings['ssm_ratio'] * dim)
    k = 4  # the cross2d route: four scan orders
    h, w = stage_grid(size, stage)
    return batch, k * d_inner, h * w, settings['d_state'], k


def forward_bytes(b, d, L, N, K):
    """Minimal HBM traffic (bytes) of one fp32 forward: see :data:`BANDWIDTH_NOTE`."""
    return 4 * (2 * b * d * L + 2 * b * K * N * L + b * d * L + d * N + 2 * d)


def device_peaks(name):
    """(peak GB/s, exp2 per second) of the card called ``name``; None where not known."""
    low = (name or '').lower()
    for words, gbps, exps in DEVICE_PEAKS:
        if all(w in low for w in words):
            return gbps, exps
    return None, None


def floor_of(shape, device):
    """The forward's floor at ``shape`` (b, d, L, N, K) on ``device``: bytes, and ms at the
    card's peak bandwidth / exp rate (None where the card is not known)."""
    b, d, L, N, K = shape
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else None
    gbps, exps = device_peaks(name)
    nbytes = forward_bytes(b, d, L, N, K)
    mem_ms = nbytes / (gbps * 1e9) * 1e3 if gbps else None
    exp_ms = b * d * L * N / exps * 1e3 if exps else None
    known = [v for v in (mem_ms, exp_ms) if v is not None]
    return {'device_name': name, 'bytes': nbytes, 'peak_gbps': gbps, 'memory_ms': mem_ms,
            'exp_ms': exp_ms, 'ms': max(known) if known else None}


def scan_inputs(b, d, L, N, groups, device, seed=0):
    """Inputs in the ranges VMamba feeds its scan (softplus(delta + bias) ~ 1e-3..1e-1)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    ins = dict(u=r(b, d, L), delta=r(b, d, L) * 0.5,
               A=-torch.arange(1, N + 1, dtype=torch.float32).repeat(d, 1),
               B=r(b, groups, N, L), C=r(b, groups, N, L), D=torch.ones(d),
               delta_bias=torch.log(torch.expm1(torch.rand(d, generator=g) * 0.099 + 0.001)))
    return {k: v.to(device) for k, v in ins.items()}


def output_grad(b, d, L, device):
    return torch.randn(b, d, L, generator=torch.Generator().manual_seed(1)).to(device)


def contenders(device, reference=True):
    """``name -> scan function``: every backend that runs on ``device``, then the loop
    (``reference``)."""
    fns = {name: functools.partial(selective_scan, backend=name)
           for name in available_backends(device)}
    if reference:
        fns[REFERENCE] = functools.partial(reference_scan, dtype=torch.float32)
    return fns


def unavailable_backends(device):
    """``name -> why`` of every registered backend that cannot run on ``device``."""
    # the registry's own reasons (read-only), so the record says why a row is missing
    from ..ops.selective_scan import _BACKENDS
    return {name: b.unavailable(device) for name, b in _BACKENDS.items()
            if name not in available_backends(device)}


def scan_call(fn, mode, ins, gy):
    """A zero-argument callable running the scan ``fn`` in ``mode`` ('fwd' | 'fwdbwd')."""
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


def equality(fn, ref_out, ins, gy, tol):
    """Max relative differences of the output and every gradient of ``fn`` from the loop's."""
    y_ref, g_ref = ref_out
    y, g = scan_call(fn, 'fwdbwd', ins, gy)()
    diffs = {'y': max_diff(y, y_ref), **{f'grad_{k}': max_diff(g[k], g_ref[k]) for k in g}}
    return {'diffs': diffs, 'tolerance': tol,
            'ok': all(v['max_rel'] <= tol for v in diffs.values())}


def profile_top(fn, n):
    """The ``n`` ops with the most self CPU time in one call of ``fn``."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows) or 1
    return [{'op': e.key, 'calls': e.count, 'self_ms': round(e.self_cpu_time_total / 1e3, 2),
             'share': round(e.self_cpu_time_total / total, 3)} for e in rows[:n]]


class Scan(Benchmark):
    name = 'scan'
    help = 'selective scan vs the step loop'

    def add_arguments(self, p):
        from .backbone import parse_shape
        p.add_argument('--arch', default='v0-tiny',
                       help='VMamba arch whose scan shapes to use (v0-tiny: N=16, v2-tiny: N=1)')
        p.add_argument('--size', type=int, default=512,
                       help='square input side at batch 1 (default 512; see --input)')
        p.add_argument('--input', type=parse_shape, nargs='+', metavar='HxWxB',
                       help='exact inputs instead of --size, e.g. 800x1344x2 512x512x2')
        p.add_argument('--stages', type=int, nargs='+', default=[1, 3], choices=[1, 2, 3, 4])
        p.add_argument('--channels', type=int, help='override the channels (tests)')
        p.add_argument('--length', type=int, help='override the sequence length (tests)')
        p.add_argument('--repeats', type=int, default=5)
        p.add_argument('--tol', type=float, default=1e-4)
        p.add_argument('--profile', type=int, default=12, help='top ops of a forward (0: none)')
        p.add_argument('--no-memory', action='store_true', help='skip the peak-memory probes')
        p.add_argument('--no-reference', action='store_true',
                       help='leave the step loop out (backends compared with torch)')
        p.add_argument('--fused', action='store_true',
                       help='also time the fused-route path vs the unfused one (cross2d)')

    # ---- measuring ------------------------------------------------------------------
    def run(self, args, device):
        results, targets = [], []
        for size, batch in self._inputs(args):
            for stage in args.stages:
                row, row_targets = self._stage(args, device, stage, size, batch)
                results.append(row)
                targets += row_targets
                print(json.dumps({k: row[k] for k in ('stage', 'shape')}),
                      {m: row[m].get('speedup') for m in MODES},
                      'equal', row.get('equal', {}).get('ok'))
        notes = [self._shape_note(args)]
        if self._detailed(args, device):
            notes += self._detailed_notes(args, device)
        return make_record(self.name, args, device, results, targets, notes)

    @staticmethod
    def _shape_note(args):
        """How the stage shapes follow from the input (the committed records' wording for
        --size)."""
        if args.input:
            where = ', '.join(f'{h}x{w} batch {b}' for h, w, b in args.input)
            tokens = 'ceil(H / 2^(s+1)) x ceil(W / 2^(s+1)) tokens'
        else:
            where, tokens = f'{args.size}x{args.size}', '(size / 2^(s+1))^2 tokens'
        return (f'VMamba {args.arch} at {where}: stage s has K=4 routes x d_inner channels '
                f'over {tokens}; reference = per-token fp32 loop (mamba-ssm selective_scan_ref '
                'form); equality = max |diff| / max |reference|.')

    @staticmethod
    def _inputs(args):
        """``[(size, batch)]``: --input's (H, W) and batches, else --size at batch 1."""
        if args.input:
            return [((h, w), b) for h, w, b in args.input]
        return [(args.size, 1)]

    @staticmethod
    def _detailed(args, device):
        """Whether rows carry the per-backend table (bandwidth, floor, issue targets): with
        --input or on CUDA; the committed CPU records (--size) keep their fields."""
        return bool(args.input) or device.type == 'cuda'

    @staticmethod
    def _detailed_notes(args, device):
        notes = [BANDWIDTH_NOTE]
        if args.no_reference:
            notes.append('--no-reference: the step loop was not run; equality and ratios are '
                         'against the torch backend')
        missing = unavailable_backends(device)
        if missing:
            notes.append('backends not measured here: ' + '; '.join(
                f'{name}: {why}' for name, why in missing.items()))
        return notes

    def _stage(self, args, device, stage, size, batch):
        b, d, L, N, K = vmamba_scan_shape(args.arch, stage, size, batch)
        d, L = args.channels or d, args.length or L
        ins, gy = scan_inputs(b, d, L, N, K, device), output_grad(b, d, L, device)
        reference = not args.no_reference
        fns = contenders(device, reference)
        backends = [name for name in fns if name != REFERENCE]
        row = {'stage': stage,
               'shape': {'batch': b, 'channels': d, 'length': L, 'd_state': N, 'groups': K}}
        if args.input:
            row['input'] = [batch, 3, *size]
        base = REFERENCE if reference else PRIMARY
        # equality first, on one run of each
        base_out = scan_call(fns[base], 'fwdbwd', ins, gy)()
        equal = {name: equality(fns[name], base_out, ins, gy, args.tol)
                 for name in backends if name != base}
        del base_out
        if reference:
            row['equal'] = equal[PRIMARY]
        if len(backends) > 1 or not reference:
            row['equal_by_backend'] = equal
        peaks = None if args.no_memory else self._peaks(args, device, [b, d, L, N, K])
        targets = []
        for mode in MODES:
            t = time_interleaved({name: scan_call(fn, mode, ins, gy) for name, fn in fns.items()},
                                 args.repeats, device)
            row[mode] = {'time': t}
            if reference:
                targets += self._loop_targets(args, row, mode, fns, ins, gy, equal, stage)
            row[mode]['peak_mib'] = {name: mib(peaks[f'{name}-{mode}']) for name in fns} \
                if peaks else None
            if not reference:
                continue
            # keep the committed records' key order: time, speedup, peak_mib, speedups
            row[mode] = {k: row[mode][k] for k in ('time', 'speedup', 'peak_mib', 'speedups',
                                                   'profile') if k in row[mode]}
        del ins, gy
        if self._detailed(args, device):
            row['floor'] = floor_of((b, d, L, N, K), device)
            row['backends'] = backend_table(row, backends)
            if stage == 1:
                targets += issue_targets(row, _input_label(row))
        if args.fused:
            grid = _grid(L) if args.length else stage_grid(size, stage)
            row['fused'] = fused_comparison(args, device, (b, d, L, N, K), grid)
        return row, targets

    def _loop_targets(self, args, row, mode, fns, ins, gy, equal, stage):
        """Speedups over the step loop (in ``row[mode]``) and their >= GOAL targets."""
        t = row[mode]['time']
        backends = [name for name in fns if name != REFERENCE]
        speedups = {name: round(t[REFERENCE]['median_s'] / t[name]['median_s'], 2)
                    for name in backends}
        row[mode]['speedup'] = speedups[PRIMARY]
        if len(backends) > 1:
            row[mode]['speedups'] = speedups
        why = ''
        if args.profile:
            row[mode]['profile'] = profile_top(scan_call(fns[PRIMARY], mode, ins, gy),
                                               args.profile)
            why = ('where the torch backend spends its time (self CPU): ' + ', '.join(
                f"{p['op']} {p['share']:.0%}" for p in row[mode]['profile'][:6]))
        out = []
        for name in backends:
            met = speedups[name] >= GOAL and equal[name]['ok']
            out.append(target(f'stage {stage} {mode}: {name} backend vs step loop',
                              f'>= {GOAL}x', speedups[name], met,
                              why if name == PRIMARY and not met else ''))
        return out

    def _peaks(self, args, device, shape):
        """``'<name>-<mode>' -> bytes``: in this process on CUDA (max_memory_allocated is
        exact there, and a fresh process would compile the Triton kernels again), else in a
        fresh process (:func:`run_probe`)."""
        spec = {'shape': shape}
        if args.no_reference:
            spec['reference'] = False
        if device.type == 'cuda':
            return self.probe(spec, device)
        return run_probe(self.name, spec, device, args.threads)

    def probe(self, spec, device):
        b, d, L, N, K = spec['shape']
        ins, gy = scan_inputs(b, d, L, N, K, device), output_grad(b, d, L, device)
        # the mmap threshold returns every tensor to the OS when freed, and peak_bytes resets
        # the high-water mark: one process measures the calls one after the other
        return {f'{name}-{mode}': peak_bytes(scan_call(fn, mode, ins, gy), device)
                for name, fn in contenders(device, spec.get('reference', True)).items()
                for mode in MODES}

    # ---- the README section ---------------------------------------------------------
    def render(self, name, rec):
        if any('backends' in r for r in rec['results']):
            return render_backends(rec)
        out = head(rec, 'Selective scan, torch backend vs the per-token loop')
        out += ['| stage | (B, D, L, N) | fwd: ours / loop | x | fwd+bwd: ours / loop | x | '
                'peak fwd+bwd: ours / loop | equal (max rel diff) |', '|' + ' --- |' * 8]
        for r in rec['results']:
            s = r['shape']
            cells = [str(r['stage']),
                     f"({s['batch']}, {s['channels']}, {s['length']}, {s['d_state']})"]
            for m in MODES:
                t = r[m]['time']
                cells += [f"{fmt_seconds(t[PRIMARY]['median_s'])} s / "
                          f"{fmt_seconds(t[REFERENCE]['median_s'])} s", f"{r[m]['speedup']}x"]
            mem = r['fwdbwd']['peak_mib']
            cells.append(f"{mem[PRIMARY]} / {mem[REFERENCE]} MiB" if mem else 'n/a')
            cells.append(_equal_cell(r['equal']))
            out.append('| ' + ' | '.join(cells) + ' |')
        return out + [''] + _other_backends(rec) + _profiles(rec) + _why(rec) + notes_md(rec)


def _equal_cell(equal):
    worst = max(v['max_rel'] for v in equal['diffs'].values())
    return f"{'yes' if equal['ok'] else 'NO'} ({worst:.1e})"


def _other_backends(rec):
    """One line per backend beside torch (records of a device with more than one)."""
    out = []
    for r in rec['results']:
        for backend, equal in r.get('equal_by_backend', {}).items():
            if backend == PRIMARY:
                continue
            t, mem = (r[m]['time'][backend] for m in MODES), r['fwdbwd']['peak_mib']
            fwd, fwdbwd = (fmt_seconds(x['median_s']) for x in t)
            out.append(f"- `{backend}` backend, stage {r['stage']}: fwd {fwd} s "
                       f"({r['fwd']['speedups'][backend]}x the loop), fwd+bwd {fwdbwd} s "
                       f"({r['fwdbwd']['speedups'][backend]}x)"
                       + (f", peak fwd+bwd {mem[backend]} MiB" if mem else '')
                       + f', equal {_equal_cell(equal)}')
    return out + [''] if out else out


def _why(rec):
    """For a missed ratio: how fast each side streams through the states, from the record."""
    out = []
    for r in rec['results']:
        s = r['shape']
        elems = s['batch'] * s['channels'] * s['d_state']
        for mode in MODES:
            if r[mode]['speedup'] >= GOAL:
                continue
            t = r[mode]['time']
            rate = {k: elems * s['length'] / t[k]['median_s'] / 1e6 for k in t}
            out.append(
                f"- why stage {r['stage']} {mode} is {r[mode]['speedup']}x: the loop's "
                f"{s['length']} steps each work on {elems}-element (B x D x N) slices, big "
                f"enough to amortise the per-op overhead that makes it slow on long sequences "
                f"({rate[REFERENCE]:.0f} M state updates/s here); ours streams the same "
                f"states through a few element-wise passes ({rate[PRIMARY]:.0f} M/s) and is "
                f"bound by memory traffic: the multiplies, scans (addcmul_) and layout copies "
                f"of the profile above, not by Python steps")
    return out + [''] if out else out


def _profiles(rec):
    out = []
    for r in rec['results']:
        for mode, label in (('fwd', 'forward'), ('fwdbwd', 'forward+backward')):
            if r[mode].get('profile'):
                ops = ', '.join(f"{p['op']} {p['share']:.0%}" for p in r[mode]['profile'][:6])
                out.append(f"- profile of the torch backend, stage {r['stage']} {label} "
                           f"(self CPU time): {ops}")
    return out + [''] if out else out


# ---------------------------------------------------------------------------------------
# The per-backend table, the issue's targets and the fused-route comparison
# ---------------------------------------------------------------------------------------
def _ms(t):
    return round(t['median_s'] * 1e3, 4)


def backend_table(row, backends):
    """``name -> {fwd_ms, fwdbwd_ms, fwdbwd_over_fwd, peak MiB, fwd GB/s, of peak, x floor}``
    of ``row`` (its times, peaks and floor)."""
    floor, out = row['floor'], {}
    for name in backends:
        fwd, fwdbwd = (_ms(row[m]['time'][name]) for m in MODES)
        gbps = floor['bytes'] / (fwd / 1e3) / 1e9
        peaks = {m: row[m]['peak_mib'][name] if row[m]['peak_mib'] else None for m in MODES}
        out[name] = {
            'fwd_ms': fwd, 'fwdbwd_ms': fwdbwd, 'fwdbwd_over_fwd': round(fwdbwd / fwd, 3),
            'peak_fwd_mib': peaks['fwd'], 'peak_fwdbwd_mib': peaks['fwdbwd'],
            'fwd_gbps': round(gbps, 2),
            'fwd_of_peak': round(gbps / floor['peak_gbps'], 4) if floor['peak_gbps'] else None,
            'fwd_over_floor': round(fwd / floor['ms'], 2) if floor['ms'] else None}
    return out


def _input_label(row):
    if 'input' in row:
        b, _, h, w = row['input']
        return f'{h}x{w}x{b}'
    return f"L={row['shape']['length']}"


def issue_targets(row, label):
    """The issue's targets at a stage-1 ``row``, each only where its numbers were measured."""
    tab, floor, out = row['backends'], row['floor'], []
    tri, mssm = tab.get('triton'), tab.get('mamba_ssm')
    if tri and floor['ms']:
        out.append(target(f'{label} stage 1 fwd: triton / floor ({floor["ms"]:.3f} ms)',
                          f'<= {FLOOR_GOAL}x', tri['fwd_over_floor'],
                          tri['fwd_over_floor'] <= FLOOR_GOAL))
    if tri:
        out.append(target(f'{label} stage 1: triton fwd+bwd / its fwd', f'<= {BWD_GOAL}x',
                          tri['fwdbwd_over_fwd'], tri['fwdbwd_over_fwd'] <= BWD_GOAL))
    if tri and mssm:
        for mode in MODES:
            ratio = round(tri[f'{mode}_ms'] / mssm[f'{mode}_ms'], 3)
            out.append(target(f'{label} stage 1 {mode}: triton / mamba_ssm time', '<= 1.0',
                              ratio, ratio <= 1.0))
    return out


def _grid(L):
    """(H, W) with H * W = L, as square as it gets (a --length override has no map)."""
    h = max(f for f in range(1, int(L ** 0.5) + 1) if L % f == 0)
    return h, L // h


def fused_inputs(b, d, L, N, K, device, index):
    """Map-order inputs of the fused path and route-order ones of the unfused path (the
    unfused SS2D projects the routed copies, so its delta / B / C come in route order)."""
    dg = d // K
    ins = scan_inputs(b, d, L, N, K, device)
    delta = ins['delta'].view(b, K, dg, L)
    fused = dict(x=ins['u'][:, :dg].contiguous(), delta=delta, A=ins['A'], B=ins['B'],
                 C=ins['C'], D=ins['D'], delta_bias=ins['delta_bias'])
    unfused = dict(fused, delta=to_route(delta, index).reshape(b, d, L),
                   B=to_route(ins['B'], index), C=to_route(ins['C'], index))
    return fused, unfused


def to_route(t, index):
    """(b, K, c, P) map order -> (b, K, c, L) in the order route k visits the map."""
    b, K, c, _ = t.shape
    idx = index.to(t.device, torch.long)
    return torch.gather(t, 3, idx[None, :, None].expand(b, K, c, idx.shape[1]))


def fused_functions(route, grid, index, unfused_backend):
    """(fused, unfused) scan functions over a (b, dg, H*W) map, same keyword inputs."""
    from ..ops.scan_triton import selective_scan_routed
    H, W = grid

    def fused(x, delta, A, B, C, D, delta_bias, delta_softplus):
        return selective_scan_routed(x, delta, A, B, C, D, delta_bias, delta_softplus,
                                     index=index)

    def unfused(x, delta, A, B, C, D, delta_bias, delta_softplus):
        b, dg, _ = x.shape
        u = route.scan(x.view(b, dg, H, W)).reshape(b, -1, H * W)
        y = selective_scan(u, delta, A, B, C, D, delta_bias, delta_softplus,
                           backend=unfused_backend)
        return route.merge(y.view(b, -1, dg, H * W), H, W)
    return fused, unfused


def fused_equality(calls, index, K):
    """Max relative differences fused vs unfused: y and every gradient (the fused path's
    delta / B / C gradients brought into route order first)."""
    (y_f, g_f), (y_u, g_u) = calls['fused'](), calls['unfused']()
    b, dg = y_f.shape[:2]
    g_f = dict(g_f, delta=to_route(g_f['delta'], index).reshape(b, K * dg, -1),
               B=to_route(g_f['B'], index), C=to_route(g_f['C'], index))
    return {'y': max_diff(y_f, y_u)['max_rel'],
            **{f'grad_{k}': max_diff(g_f[k], g_u[k])['max_rel'] for k in g_u}}


def fused_comparison(args, device, shape, grid):
    """Fused-route path vs route.scan -> scan -> route.merge (cross2d) at ``shape`` over an
    (H, W) ``grid`` of H * W = L tokens: times,
    peaks (CUDA), equality, and what ran (the fused path falls back to gathers + torch where
    the Triton kernels cannot run)."""
    from ..ops import get_scan_route
    from ..ops.scan_triton import unavailable as triton_unavailable
    b, d, L, N, K = shape
    route = get_scan_route('cross2d')
    index = route.index(*grid, device)
    unfused_backend = 'triton' if 'triton' in available_backends(device) else PRIMARY
    fns = dict(zip(('fused', 'unfused'), fused_functions(route, grid, index, unfused_backend)))
    ins = dict(zip(('fused', 'unfused'), fused_inputs(b, d, L, N, K, device, index)))
    gy = output_grad(b, d // K, L, device)
    out = {'grid': list(grid), 'unfused_backend': unfused_backend,
           'fused_runs': 'triton kernels' if triton_unavailable(device) is None
           else 'torch gathers + scatter-add (Triton cannot run here)'}
    out['equal'] = fused_equality({k: scan_call(fns[k], 'fwdbwd', ins[k], gy) for k in fns},
                                  index, K)
    out['equal_ok'] = all(v <= args.tol for v in out['equal'].values())
    for mode in MODES:
        calls = {k: scan_call(fns[k], mode, ins[k], gy) for k in fns}
        t = time_interleaved(calls, args.repeats, device)
        out[mode] = {'time': t, 'unfused_over_fused':
                     round(t['unfused']['median_s'] / t['fused']['median_s'], 3)}
        if device.type == 'cuda' and not args.no_memory:
            out[mode]['peak_mib'] = {k: mib(peak_bytes(calls[k], device)) for k in calls}
    return out



# ---------------------------------------------------------------------------------------
# The README table of records with per-backend rows (--input, or CUDA)
# ---------------------------------------------------------------------------------------
def _cell(v, fmt='{}'):
    return 'n/a' if v is None else fmt.format(v)


def render_backends(rec):
    """One line per (input, stage, backend): times, ratio, peak, bandwidth, floor."""
    out = head(rec, f"Selective scan per backend, {rec['device']}")
    out += ['| input | stage | (B, D, L, N) | backend | fwd ms | fwd+bwd ms | fwd+bwd / fwd | '
            'peak fwd+bwd MiB | fwd GB/s | of peak | x floor |', '|' + ' --- |' * 11]
    for r in rec['results']:
        s = r['shape']
        shape = f"({s['batch']}, {s['channels']}, {s['length']}, {s['d_state']})"
        for name, v in r['backends'].items():
            out.append('| ' + ' | '.join([
                _input_label(r), str(r['stage']), shape, f'`{name}`', f"{v['fwd_ms']:.3f}",
                f"{v['fwdbwd_ms']:.3f}", f"{v['fwdbwd_over_fwd']:.2f}",
                _cell(v['peak_fwdbwd_mib']), f"{v['fwd_gbps']:.1f}",
                _cell(v['fwd_of_peak'], '{:.1%}'), _cell(v['fwd_over_floor'], '{}x')]) + ' |')
    out.append('')
    out += _floors(rec) + _equalities(rec) + _fused_lines(rec) + notes_md(rec)
    return out


def _floors(rec):
    out = [f"- floor at {_input_label(r)} stage {r['stage']}: {r['floor']['bytes'] / 1e6:.1f} "
           f"MB, {_cell(r['floor']['ms'], '{:.3f}')} ms" for r in rec['results']]
    return out + [''] if out else out


def _equalities(rec):
    out = []
    for r in rec['results']:
        against = 'the step loop' if 'equal' in r else 'the torch backend'
        cells = [f"`{name}` {_equal_cell(eq)}" for name, eq in
                 ({PRIMARY: r['equal']} if 'equal' in r else {}).items()]
        cells += [f"`{name}` {_equal_cell(eq)}" for name, eq in
                  r.get('equal_by_backend', {}).items() if 'equal' not in r or name != PRIMARY]
        if cells:
            out.append(f"- equal to {against} at {_input_label(r)} stage {r['stage']}: "
                       + ', '.join(cells))
    return out + [''] if out else out


def _fused_lines(rec):
    out = []
    for r in rec['results']:
        f = r.get('fused')
        if not f:
            continue
        worst = max(f['equal'].values())
        out.append(f"- fused cross2d route ({f['fused_runs']}) vs route.scan -> "
                   f"`{f['unfused_backend']}` -> route.merge at {_input_label(r)} stage "
                   f"{r['stage']}: fwd {_ms(f['fwd']['time']['fused']):.3f} / "
                   f"{_ms(f['fwd']['time']['unfused']):.3f} ms, fwd+bwd "
                   f"{_ms(f['fwdbwd']['time']['fused']):.3f} / "
                   f"{_ms(f['fwdbwd']['time']['unfused']):.3f} ms (unfused / fused "
                   f"{f['fwd']['unfused_over_fused']}x, {f['fwdbwd']['unfused_over_fused']}x), "
                   f"equal {'yes' if f['equal_ok'] else 'NO'} ({worst:.1e})")
    return out + [''] if out else out
