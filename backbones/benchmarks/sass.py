"""``sass``: the Triton scan kernels compiled ahead of time for sm_90 and counted (no GPU).

Every kernel a scan launches at VMamba-T stage 1 (800x1344 batch 2: (2, 4 x 192, 67200),
N = 16 for V0-T, N = 1 for V2-T; fp32 and fp16 inputs; unrouted and through each registered
route) is recorded as the launcher calls it on meta tensors
(:func:`backbones.ops.scan_triton.capture_launches`), so its arguments, and with them the
specialisation a real launch gets (pointer and integer divisibility by 16, integers equal to 1
as constants), are those of the real launch. It is compiled for ``GPUTarget('cuda', 90, 32)``
(H100 / H200) with Triton's bundled ptxas, listed with its bundled ``cuobjdump -sass``, and
counted:

* **SASS per element-state**: static instructions of the kernel's main loop body (from the
  head of its first outermost loop to the backward branch, an inner loop counted once per trip,
  e.g. the loop over the N states), per warp, over the element-states (token x state) a
  thread handles in one iteration. A warp instruction is one instruction per thread, so this
  is what a thread issues per element-state it owns. The copy kernels of the routes count
  per element (no states). ``--kernels REV`` counts the kernels of another git revision of
  ``backbones/ops/scan_triton.py`` in the same unit (the committed ``sass_baseline`` record
  is the first version, f725828: 77 forward / 214 backward at N = 16).
* SHFL, BAR, MUFU and atomic instructions of that body; registers and spill bytes (ptxas);
  shared memory; CTAs per SM on sm_90 (65536 registers, 64 warps, 228 KiB shared memory).
* The issue-bound time at stage 1: warp instructions of the whole launch (programs x warps x
  loop iterations x instructions per iteration) / (132 SMs x 4 warp instructions per clock x
  1.755-1.98 GHz), the same on H100 SXM and H200, beside the memory / exp floor of the scan
  (:func:`backbones.benchmarks.scan.forward_bytes`, the anchors' backward bytes) on each card;
  the estimate is the larger of the two. Nothing here ran on a GPU.
"""
import collections
import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile

import torch

from ..engine.launch import REPO
from .common import Benchmark, head, make_record, notes_md, target

__all__ = ['Sass', 'count_loop', 'parse_sass', 'occupancy', 'issue_ms', 'CARDS']

#: sm_90 limits per SM.
SMS, REGS_PER_SM, MAX_WARPS, MAX_CTAS, SMEM_PER_SM = 132, 65536, 64, 32, 233472
#: Clock range (GHz) of the issue-bound estimate, H100 SXM and H200 alike.
CLOCKS = (1.755, 1.98)
#: Peak HBM bandwidth (GB/s) and exp2 throughput (/s) per card (anchors Sec. 6; the exp rate
#: is UNVERIFIED there).
CARDS = {'H100 SXM': (3350.0, 4.2e12), 'H200': (4800.0, 4.2e12)}
#: The issue's targets at stage 1: (direction, d_state) -> most SASS per element-state.
GOALS = {('fwd', 16): 15, ('bwd', 16): 50, ('fwd', 1): 40, ('bwd', 1): 100}
MIN_CTAS_BWD = 2
ARCHS = {16: 'v0-tiny', 1: 'v2-tiny'}
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16}
SCAN_KERNELS = {'_scan_fwd_kernel': 'fwd', '_scan_bwd_kernel': 'bwd',
                'scan_fwd_kernel': 'fwd', 'scan_bwd_kernel': 'bwd'}


# ---------------------------------------------------------------------------------------
# Compiling and counting
# ---------------------------------------------------------------------------------------
def _specialise(kernel, args, kwargs):
    """(signature, constexprs, attrs, num_warps) exactly as Triton's launcher would build them
    for these arguments."""
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend
    kwargs = dict(kwargs)
    num_warps = kwargs.pop('num_warps', 4)
    values = dict(zip(kernel.arg_names, args), **kwargs)
    sig, consts, attrs = {}, {}, {}
    for i, (name, param) in enumerate(zip(kernel.arg_names, kernel.params)):
        value = values[name]
        if param.is_constexpr:
            sig[name], consts[name] = 'constexpr', value
            continue
        ty, spec = native_specialize_impl(BaseBackend, value, False, True, True)
        if ty == 'constexpr':  # an int equal to 1
            sig[name], consts[name] = 'constexpr', spec
        else:
            sig[name] = ty
            if spec == 'D':
                attrs[(i,)] = [['tt.divisibility', 16]]
    return sig, consts, attrs, num_warps


def compile_sm90(kernel, args, kwargs):
    """The kernel compiled for sm_90 as this launch would be: (compiled, ptxas log)."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    sig, consts, attrs, num_warps = _specialise(kernel, args, kwargs)
    src = ASTSource(kernel, sig, constexprs=consts, attrs=attrs)
    log = io.StringIO()
    with knobs.nvidia.scope(), knobs.compilation.scope():
        knobs.nvidia.dump_ptxas_log = True      # ptxas -v: registers, spills
        knobs.compilation.always_compile = True  # a cached kernel would skip ptxas
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(src, target=GPUTarget('cuda', 90, 32),
                                      options=dict(num_warps=num_warps))
    return compiled, log.getvalue(), num_warps


def sass_text(cubin):
    from triton import knobs
    with tempfile.NamedTemporaryFile(suffix='.cubin', delete=False) as f:
        f.write(cubin)
    try:
        return subprocess.run([knobs.nvidia.cuobjdump.path, '-sass', f.name],
                              capture_output=True, text=True, check=True).stdout
    finally:
        os.remove(f.name)


_INSTRUCTION = re.compile(r'/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;')
_BRANCH = re.compile(r'\bBRA\s+(?:\S+,\s*)?0x([0-9a-f]+)')


def parse_sass(text):
    """[(address, instruction)] of the first function in ``cuobjdump -sass`` output."""
    return [(int(a, 16), ins) for a, ins in _INSTRUCTION.findall(text)]


def count_loop(instructions, inner_trips=(), straight=False):
    """The main loop of a kernel: its first outermost loop, from the target of a backward
    branch to the branch (a branch to itself, the trap at the end, excluded). Returns its
    static body, the body per iteration with each inner loop counted ``inner_trips[i]`` times
    (innermost loops in order of address), and the instructions of one iteration by opcode.
    ``straight``: a kernel whose loop the compiler removed (a trip count of 1) counts as one
    iteration of all its instructions."""
    index = {a: i for i, (a, _) in enumerate(instructions)}
    loops = []
    for i, (_, ins) in enumerate(instructions):
        m = _BRANCH.search(ins)
        if m and int(m.group(1), 16) in index and index[int(m.group(1), 16)] < i:
            loops.append((index[int(m.group(1), 16)], i))
    if not loops and straight:
        end = next(i for i, (_, ins) in reversed(list(enumerate(instructions)))
                   if ins.split()[0] == 'EXIT')
        loops = [(0, end)]
    if not loops:
        raise ValueError('no loop in the kernel')
    # the first outermost loop: a kernel whose last tile is peeled off (masked, after the main
    # loop) has a second one, which runs once
    outer = [lp for lp in loops if not any(o != lp and o[0] <= lp[0] and lp[1] <= o[1]
                                           for o in loops)]
    head, tail = min(outer)
    inner = sorted(lp for lp in loops if lp != (head, tail) and head <= lp[0] and lp[1] <= tail)
    if len(inner) != len(inner_trips):
        raise ValueError(f'expected {len(inner_trips)} inner loop(s) (the state loop), found '
                         f'{len(inner)}: the kernel changed; update its entry in sass.py')
    weight = [1] * len(instructions)
    for (a, b), trips in zip(inner, inner_trips):
        for i in range(a, b + 1):
            weight[i] *= trips
    ops = collections.Counter()
    for i in range(head, tail + 1):
        ins = instructions[i][1].split()
        ops[ins[1] if ins[0].startswith('@') else ins[0]] += weight[i]
    return {'static': tail - head + 1, 'per_iteration': sum(ops.values()),
            'inner_static': [b - a + 1 for a, b in inner], 'ops': ops}


def occupancy(regs, warps, shared):
    """CTAs per SM on sm_90 and what limits them."""
    regs_per_warp = -(-max(regs, 1) * 32 // 256) * 256
    limits = {'registers': REGS_PER_SM // (regs_per_warp * warps), 'warps': MAX_WARPS // warps,
              'ctas': MAX_CTAS,
              'shared': SMEM_PER_SM // (shared + 1024) if shared else MAX_CTAS}
    by = min(limits, key=limits.get)
    return limits[by], by


def issue_ms(warp_instructions):
    """(fast, slow) issue-bound milliseconds on 132 SMs x 4 schedulers at the clock range."""
    return [round(warp_instructions / (SMS * 4 * ghz * 1e9) * 1e3, 4)
            for ghz in reversed(CLOCKS)]


def _group(ops, pattern):
    return sum(v for k, v in ops.items() if re.match(pattern, k))


def measure(kernel, args, kwargs):
    """Everything the record holds about one compiled kernel (before the unit)."""
    compiled, log, warps = compile_sm90(kernel, args, kwargs)
    regs = int(re.search(r'Used (\d+) registers', log).group(1))
    spill = re.search(r'(\d+) bytes spill stores, (\d+) bytes spill loads', log)
    return {'compiled': compiled, 'instructions': parse_sass(sass_text(compiled.asm['cubin'])),
            'registers': regs, 'spill_store_bytes': int(spill.group(1)),
            'spill_load_bytes': int(spill.group(2)), 'shared_bytes': compiled.metadata.shared,
            'num_warps': warps}


# ---------------------------------------------------------------------------------------
# The launches of a scan, as its launcher makes them (meta tensors: nothing runs)
# ---------------------------------------------------------------------------------------
def load_kernels(rev=None):
    """``backbones.ops.scan_triton``, or that file at git revision ``rev`` (imported as a
    sibling module, so its relative imports resolve to today's package)."""
    from ..ops import scan_triton
    if rev is None:
        return scan_triton
    src = subprocess.run(['git', 'show', f'{rev}:backbones/ops/scan_triton.py'], cwd=REPO,
                         capture_output=True, text=True)
    if src.returncode:
        raise SystemExit(f'error: --kernels {rev}: {src.stderr.strip()}')
    name = f'backbones.ops._scan_triton_{re.sub(r"[^0-9A-Za-z]", "_", rev)}'
    # @triton.jit reads its function's source, so the module must be a file
    path = os.path.join(tempfile.mkdtemp(prefix='sass_kernels_'), f'{name.rsplit(".", 1)[1]}.py')
    with open(path, 'w') as f:
        f.write(src.stdout)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def meta_inputs(shape, dtype, route=None):
    """Meta tensors of a stage's scan: unrouted (u, delta (b, D, L)) or over a route's map
    (x (b, dg, P), delta (b, K, dg, P), B, C (b, K, N, P))."""
    b, d, L, N, K = shape
    m = dict(device='meta')
    if route is not None:
        K = route.num_routes
        dg = d // 4  # d_inner of the stage: SS2D's K routes own K x d_inner channels
        ins = dict(u=torch.empty(b, dg, L, dtype=dtype, **m),
                   delta=torch.empty(b, K, dg, L, dtype=dtype, **m))
        d = K * dg
    else:
        ins = dict(u=torch.empty(b, d, L, dtype=dtype, **m),
                   delta=torch.empty(b, d, L, dtype=dtype, **m))
    ins.update(B=torch.empty(b, K, N, L, dtype=dtype, **m),
               C=torch.empty(b, K, N, L, dtype=dtype, **m), A=torch.empty(d, N, **m),
               D=torch.empty(d, **m), delta_bias=torch.empty(d, **m))
    return ins


def launches(mod, shape, dtype, direction, route=None, grid_hw=None):
    """[(kernel, grid, args, kwargs)] of one scan (``direction`` 'fwd' | 'bwd')."""
    ins = meta_inputs(shape, dtype, route)
    if hasattr(mod, 'capture_launches'):
        return _launches_v2(mod, ins, direction, route, grid_hw)
    return _launches_v1(mod, ins, direction, route, grid_hw)


def _route_index(route, grid_hw):
    return route.index(*grid_hw) if route is not None else None


def _launches_v2(mod, ins, direction, route, grid_hw):
    routed = None
    if route is not None:
        index = _route_index(route, grid_hw)
        routed = mod._Routed(mod._RoutePlan.of(index, grid_hw[0] * grid_hw[1]), index)
    args = [ins[k] for k in ('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias')]
    with mod.capture_launches() as fwd:
        y, runs = mod._forward(routed, *args, True, None)
    if direction == 'fwd':
        return fwd
    with mod.capture_launches() as bwd:
        mod._backward(routed, *args, True, None, runs, torch.empty_like(y))
    return bwd


def _launches_v1(mod, ins, direction, route, grid_hw):
    """The first version (f725828): routes inside the scan kernels through an int64 index."""
    index = _route_index(route, grid_hw)
    rec = []

    class Capture:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            return lambda *args, **kwargs: rec.append((self.kernel, grid, args, kwargs))

    names = ('_scan_fwd_kernel', '_scan_bwd_kernel')
    saved = {n: getattr(mod, n) for n in names}
    for n in names:
        setattr(mod, n, Capture(saved[n]))
    try:
        scan = mod._Scan(ins['u'], ins['delta'], ins['A'], ins['B'], ins['C'], ins['D'],
                         ins['delta_bias'], True, index, None)
        if direction == 'fwd':
            scan.forward(save_states=True)
        else:
            states = torch.empty(scan.batch, scan.K * scan.dg, scan.n_tiles, scan.N,
                                 device='meta')
            gy_shape = ins['u'].shape
            scan.backward(torch.empty(gy_shape, device='meta'), states)
    finally:
        for n in names:
            setattr(mod, n, saved[n])
    return rec


# ---------------------------------------------------------------------------------------
# The unit of each kernel
# ---------------------------------------------------------------------------------------
def kernel_unit(kernel, kwargs, N):
    """(what a thread owns per main-loop iteration, how many of them, inner loop trips)."""
    name = kernel.fn.__name__ if hasattr(kernel, 'fn') else kernel.__name__
    warps = kwargs.get('num_warps', 4)
    if 'BLOCK_L' in kwargs:  # the first version: a (BLOCK_D, BLOCK_N, BLOCK_L) tile
        per = kwargs['BLOCK_D'] * kwargs['BLOCK_N'] * kwargs['BLOCK_L'] / (warps * 32)
        return 'element-state', per, ()
    if name in SCAN_KERNELS:  # a lane's run of VEC x Q tokens, a loop over the N states
        return 'element-state', kwargs['VEC'] * kwargs['Q'] * N, (() if N == 1 else (N,))
    th, tw = kwargs['TH'], kwargs['TW']  # a route copy: a tile of channels per route
    return 'element', kwargs['BLOCK_C'] * th * tw / (warps * 32), ()


def kernel_name(kernel):
    return getattr(kernel, 'fn', kernel).__name__


def _grid_programs(grid):
    n = 1
    for g in grid:
        n *= g
    return n


# ---------------------------------------------------------------------------------------
# Bytes moved by a routed forward (estimate)
# ---------------------------------------------------------------------------------------
def routed_bytes(shape, P, itemsize, trans, version):
    """DRAM bytes of one routed forward at ``shape`` (b, D, L, N, K) over a map of P
    positions, whose K routes run along map rows or (``trans[k]``) columns.

    v1 (index inside the scan): every operand element of a column route is its own 32-byte
    sector (amplification 32 / itemsize; y's fp32 atomics 8x). v2: tile copies read the map
    operands and write the K scan orders, the scan streams them, the merge reads the K
    outputs and writes the map; all coalesced."""
    b, d, L, N, K = shape
    dg = d // K
    if version == 1:
        out = 0
        for col in trans:
            amp_in, amp_y = (32 / itemsize, 8) if col else (1, 1)
            out += amp_in * itemsize * b * (2 * dg + 2 * N) * L + amp_y * 4 * b * dg * L
        return int(out)
    gathers = itemsize * b * (dg * P + K * (dg + 2 * N) * P)  # read the map operands
    gathers += itemsize * b * K * (2 * dg + 2 * N) * L         # write the scan orders
    scan = itemsize * b * K * (2 * dg + 2 * N) * L + 4 * b * K * dg * L
    merge = 4 * b * K * dg * L + 4 * b * dg * P
    return int(gathers + scan + merge)


def floor_ms(shape, direction, itemsize):
    """Per card: the scan's memory / exp floor (ms) at ``shape``, and its bytes: forward read
    u, delta, B, C, write y (fp32); backward (anchors Sec. 6) read u, delta, dy, B, C, write
    du, ddelta and fp32 dB, dC."""
    b, d, L, N, K = shape
    if direction == 'fwd':
        nbytes = itemsize * (2 * b * d * L + 2 * b * K * N * L) + 4 * b * d * L
    else:
        nbytes = itemsize * (5 * b * d * L + 2 * b * K * N * L) + 4 * 2 * b * K * N * L
    nbytes += 4 * (d * N + 2 * d)  # A, D, delta_bias
    return {card: round(max(nbytes / (gbps * 1e9), b * d * L * N / exps) * 1e3, 4)
            for card, (gbps, exps) in CARDS.items()}, nbytes


# ---------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------
class Sass(Benchmark):
    name = 'sass'
    help = 'scan kernels compiled for sm_90: SASS per element-state, registers, occupancy'

    def add_arguments(self, p):
        from .backbone import parse_shape
        p.add_argument('--kernels', metavar='REV', default=None,
                       help='count backbones/ops/scan_triton.py of this git revision instead')
        p.add_argument('--input', type=parse_shape, default=(800, 1344, 2), metavar='HxWxB',
                       help='the input whose stage-1 scan is compiled (default 800x1344x2)')
        p.add_argument('--d-states', type=int, nargs='+', default=[16, 1], choices=[16, 1])
        p.add_argument('--dtypes', nargs='+', default=list(DTYPES), choices=list(DTYPES))
        p.add_argument('--routes', nargs='*', default=None,
                       help='routes to compile through (default: every registered route)')

    def run(self, args, device):
        from ..ops.routes import SCAN_ROUTES, get_scan_route
        from .scan import stage_grid, vmamba_scan_shape
        mod = load_kernels(args.kernels)
        h, w, batch = args.input
        grid_hw = stage_grid((h, w), 1)
        routes = sorted(SCAN_ROUTES) if args.routes is None else args.routes
        cache, rows, routed = {}, [], []
        for N in args.d_states:
            shape = vmamba_scan_shape(ARCHS[N], 1, (h, w), batch)
            for dname in args.dtypes:
                dtype = DTYPES[dname]
                for route in [None] + [get_scan_route(r) for r in routes]:
                    for direction in ('fwd', 'bwd'):
                        recs = launches(mod, shape, dtype, direction, route, grid_hw)
                        out = [self._row(cache, k, g, a, kw, N, dname, direction, route, shape)
                               for k, g, a, kw in recs]
                        if route is None:
                            rows += out
                        else:
                            routed.append(self._routed(out, route, N, dname, direction, shape,
                                                       mod, grid_hw))
                        print(json.dumps({'d_state': N, 'dtype': dname, 'direction': direction,
                                          'route': route.name if route else None,
                                          'kernels': [(r['kernel'], r.get(
                                              'sass_per_element_state')) for r in out]}))
        results = {'kernels': rows, 'routed': routed,
                   'version': 'v1' if not hasattr(mod, 'capture_launches') else 'v2',
                   'kernels_rev': args.kernels, 'input': [batch, 3, h, w],
                   'anchors': {'mamba_ssm_fwd': 16.6, 'mamba_ssm_bwd': 61.8}}
        # the issue's targets apply to the kernels of this tree; another revision is a reference
        targets = self._targets(rows) if args.kernels is None else []
        notes = [UNIT_NOTE, ESTIMATE_NOTE] + ([] if args.kernels is None else [
            f'the kernels of {args.kernels}, counted for reference (no targets)'])
        return make_record(self.name, args, device, results, targets, notes)

    def _row(self, cache, kernel, grid, args, kwargs, N, dname, direction, route, shape):
        name = kernel_name(kernel)
        sig = _specialise(kernel, args, kwargs)
        key = (name, json.dumps(sig[:2], default=str, sort_keys=True), str(sig[2]), sig[3])
        if key not in cache:
            m = measure(kernel, args, kwargs)
            unit, per, trips = kernel_unit(kernel, kwargs, N)
            loop = count_loop(m['instructions'], trips, straight=unit == 'element')
            ops = loop['ops']
            ctas, limiter = occupancy(m['registers'], m['num_warps'], m['shared_bytes'])
            cache[key] = {
                'kernel': name, 'unit': unit, 'owned_per_iteration': per,
                'sass_static': loop['static'], 'inner_loop_static': loop['inner_static'],
                'sass_per_iteration': loop['per_iteration'],
                f'sass_per_{unit.replace("-", "_")}': round(loop['per_iteration'] / per, 1),
                'shfl': _group(ops, r'SHFL'), 'bar': _group(ops, r'BAR'),
                'mufu': _group(ops, r'MUFU'), 'atomics': _group(ops, r'(RED|ATOM)'),
                'ldg': _group(ops, r'LDG'), 'stg': _group(ops, r'STG'),
                'lds_sts': _group(ops, r'(LDS|STS)'),
                'local_in_loop': _group(ops, r'(LDL|STL)'),  # spilled values the loop touches
                'registers': m['registers'], 'spill_store_bytes': m['spill_store_bytes'],
                'spill_load_bytes': m['spill_load_bytes'], 'shared_bytes': m['shared_bytes'],
                'num_warps': m['num_warps'], 'ctas_per_sm': ctas, 'occupancy_limit': limiter,
                'constexprs': {k: v for k, v in sig[1].items() if isinstance(v, (int, bool))}}
        row = dict(cache[key], direction=SCAN_KERNELS.get(name, direction), d_state=N,
                   dtype=dname, route=route.name if route else None,
                   programs=_grid_programs(grid))
        its = self._iterations(name, args, kwargs, kernel)
        row['iterations'] = its
        warp_ins = row['programs'] * row['num_warps'] * its * row['sass_per_iteration']
        row['warp_instructions'] = warp_ins
        row['issue_bound_ms'] = issue_ms(warp_ins)
        if name in SCAN_KERNELS:
            floors, nbytes = floor_ms(shape, row['direction'], DTYPES[dname].itemsize)
            row['floor_bytes'], row['floor_ms'] = nbytes, floors
            row['estimate_ms'] = {card: round(max(row['issue_bound_ms'][0], f), 4)
                                  for card, f in floors.items()}
        return row

    @staticmethod
    def _iterations(name, args, kwargs, kernel):
        values = dict(zip(kernel.arg_names, args), **kwargs)
        if 'n_tiles' in values:
            return values['n_tiles']
        return values['K']  # route copies: one iteration per route

    def _routed(self, rows, route, N, dname, direction, shape, mod, grid_hw):
        index = route.index(*grid_hw)
        if hasattr(mod, '_RoutePlan'):
            trans = mod._RoutePlan.of(index, grid_hw[0] * grid_hw[1]).trans.tolist()
        else:
            from ..ops.scan_triton import _RoutePlan
            trans = _RoutePlan(index, grid_hw[0] * grid_hw[1]).trans.tolist()
        b, d, P, _, _ = shape
        K, L = index.shape
        rshape = (b, K * (d // 4), L, N, K)
        version = 2 if hasattr(mod, 'capture_launches') else 1
        out = {'route': route.name, 'num_routes': K, 'd_state': N, 'dtype': dname,
               'direction': direction, 'column_routes': trans,
               'kernels': [{k: r[k] for k in ('kernel', 'unit', 'sass_per_iteration',
                                                'registers', 'spill_store_bytes',
                                                'ctas_per_sm', 'programs', 'iterations',
                                                'issue_bound_ms')}
                           | {'sass_per_unit': r.get('sass_per_element_state',
                                                     r.get('sass_per_element'))}
                           for r in rows],
               'issue_bound_ms': [round(sum(r['issue_bound_ms'][i] for r in rows), 4)
                                  for i in range(2)]}
        if direction == 'fwd':
            nbytes = routed_bytes(rshape, P, DTYPES[dname].itemsize, trans, version)
            out['dram_bytes_estimate'] = nbytes
            out['dram_ms_estimate'] = {card: round(nbytes / (gbps * 1e9) * 1e3, 4)
                                       for card, (gbps, _) in CARDS.items()}
        return out

    @staticmethod
    def _targets(rows):
        out = []
        for r in rows:
            if r['dtype'] != 'fp32' or r['kernel'] not in SCAN_KERNELS:
                continue
            goal = GOALS.get((r['direction'], r['d_state']))
            v = r['sass_per_element_state']
            out.append(target(f"{r['direction']} N={r['d_state']} fp32: SASS per element-state",
                              f'<= {goal}', v, v <= goal))
            if r['direction'] == 'bwd':
                ok = r['ctas_per_sm'] >= MIN_CTAS_BWD and r['spill_store_bytes'] == 0
                out.append(target(f"bwd N={r['d_state']} fp32: CTAs per SM, spill bytes",
                                  f'>= {MIN_CTAS_BWD}, 0',
                                  f"{r['ctas_per_sm']}, {r['spill_store_bytes']}", ok))
        return out

    def render(self, name, rec):
        res = rec['results']
        title = ('Selective-scan kernels compiled for sm_90 (no GPU): '
                 + ('first version, ' + res['kernels_rev'] if res['kernels_rev'] else 'as now'))
        out = head(rec, title)
        out += ['| kernel | dir | N | dtype | SASS / iteration | per element-state | SHFL | '
                'BAR | MUFU | atomics | regs | spill B | CTAs/SM | stage-1 issue bound ms | '
                'estimate ms H100 / H200 |', '|' + ' --- |' * 15]
        for r in res['kernels']:
            est = r.get('estimate_ms', {})
            out.append('| ' + ' | '.join(str(v) for v in [
                f"`{r['kernel']}`", r['direction'], r['d_state'], r['dtype'],
                r['sass_per_iteration'], r['sass_per_element_state'], r['shfl'], r['bar'],
                r['mufu'], r['atomics'], r['registers'], r['spill_store_bytes'],
                r['ctas_per_sm'], '{}-{}'.format(*r['issue_bound_ms']),
                ' / '.join(f'{v:.3f}' for v in est.values())]) + ' |')
        out.append('')
        seen = set()
        for r in res['routed']:
            if r['direction'] != 'fwd' or r['dtype'] != 'fp32' or r['d_state'] != 16 \
                    or r['route'] in seen:
                continue
            seen.add(r['route'])
            ks = ', '.join(f"`{k['kernel']}` {k['sass_per_unit']}/{k['unit']}"
                           for k in r['kernels'])
            out.append(f"- route `{r['route']}` (K={r['num_routes']}, column routes "
                       f"{r['column_routes']}), N=16 fp32 forward: {ks}; issue bound "
                       f"{r['issue_bound_ms'][0]}-{r['issue_bound_ms'][1]} ms; DRAM "
                       f"{r['dram_bytes_estimate'] / 1e9:.2f} GB (estimate)")
        out.append('')
        return out + notes_md(rec)


UNIT_NOTE = ('SASS per element-state = instructions of the main loop body per warp (inner '
             'state loop x N) / element-states a thread owns per iteration; mamba-ssm (anchors): '
             '16.6 forward, 61.8 backward (L a multiple of 2048). Registers / spills: ptxas -v '
             'of the launch specialisation; CTAs/SM from registers, warps and shared memory.')
ESTIMATE_NOTE = ('issue bound = programs x warps x iterations x SASS per iteration / (132 SMs '
                 'x 4 per clock x 1.98-1.755 GHz), H100 SXM and H200 alike; estimate = '
                 'max(issue bound at 1.98 GHz, floor), floor = max(minimal bytes / peak '
                 'bandwidth, B*D*L*N exp2 / 4.2e12 per s). Estimates, not measurements.')
