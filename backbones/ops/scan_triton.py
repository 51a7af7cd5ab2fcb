"""The ``triton`` selective-scan backend: Triton kernels, compiled at first use for the GPU present.

Same signature and conventions as :func:`backbones.ops.selective_scan` (inputs fp32 / fp16 /
bf16, state and accumulation in fp32, fp32 output), plus :func:`selective_scan_routed`, the
form that reads a (batch, channels, H*W) map through a route's index map and sums the K route
outputs back into it (cross-scan and cross-merge).

Design, and why (the numbers: ``tools/benchmark.py sass``, instructions per element-state of
the kernels as compiled for sm_90, ``results/benchmarks/sass*.json``):

* **Kernels** (:mod:`.scan_kernels`): a program owns one channel per warp (4), a lane owns 16
  consecutive tokens of its channel and walks them sequentially in registers; the lanes of a
  warp meet in one 32-lane scan per state and tile, and a loop over the states accumulates
  y without any reduction over N. At VMamba-T stage 1 this issues about 14 instructions per
  element-state forward (mamba-ssm's CUDA kernel: 16.6) instead of the 77 of the first
  version, which gave every thread one token and paid a shuffle scan per token.
* **Backward: run-entry states and recomputation.** The forward saves the state entering
  every lane's run of tokens, (B, D, ceil(L / 16), N) fp32, i.e. N / 16 of one (B, D, L)
  tensor (memory linear in L, nothing of size (B, D, N, L)). The backward walks the tiles in
  reverse, rebuilds each run's states from its entry (no forward scan) and runs the adjoint
  with a reverse lane scan. dA is summed per lane, dD and d(delta_bias) per thread; dB and dC
  (summed over a group's channels) are reduced over the program's 4 channels before one
  fp32 atomic add per (state, token), 4x fewer atomics than one per channel. Atomics make dB
  / dC run-to-run nondeterministic in the last bits of fp32.
* **Routes are data** (:mod:`.route_kernels`): a route is its index map. The routed call
  copies x, delta, B and C into the K scan orders with tile-local kernels that read the map
  and write the scan order through the inverse index map (int32), transposing tiles in
  shared memory where a route runs down the map's columns, so every load and store is
  coalesced; the scan then reads contiguous memory, and a second tile-local kernel sums the
  K outputs back into the map (no atomics, deterministic). The backward re-gathers instead of
  keeping the K copies. A new route family (windowed, atrous, zig-zag) is a new index map
  (:meth:`backbones.ops.routes.ScanRoute.positions`), never a new kernel.
* **Interpreter.** With ``TRITON_INTERPRET=1`` set before triton is first imported, the same
  kernels run on CPU tensors in Triton's interpreter (the CI tests, float64 reference). The
  variable must be set that early: triton's own ``tl.sum``, ``tl.zeros`` ... are JIT
  functions made at its import, so the mode cannot change later in a process.

Availability (:func:`unavailable`) is checked once per device: triton importable, a CUDA
device (or CPU tensors with ``TRITON_INTERPRET=1``), and a tiny forward + backward probe that
compiles, runs and matches the torch backend. A kernel that fails later (a shape whose
kernel does not compile) is logged once, the device is marked unusable and the call falls back
to the torch backend.
"""
import logging
from contextlib import contextmanager

import torch

from ..engine.log import log_once
from . import scan_kernels as _k
from .route_kernels import route_gather_kernel, route_scatter_kernel
from .scan_torch import check_shapes, selective_scan_torch

triton, INTERPRETED, _IMPORT_ERROR = _k.triton, _k.INTERPRETED, _k.IMPORT_ERROR

__all__ = ['selective_scan_triton', 'selective_scan_routed', 'routed_scan_torch', 'unavailable',
           'probe', 'interpreting', 'capture_launches', 'layout']

#: Channels of a program, one per warp.
NUM_WARPS = 4
#: Tokens a lane walks in registers per tile (a tile is 32 lanes of them).
TOKENS_PER_LANE = 16
#: Route copies: (rows, columns) of a map tile, channels per program.
ROUTE_TILE, ROUTE_BLOCK_C, ROUTE_WARPS = (32, 32), 4, 4
#: Inputs the kernels load as they are; anything else is converted to float32 first.
_LOAD_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreting():
    """Whether the kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1 when triton
    was first imported)."""
    return INTERPRETED


# ---------------------------------------------------------------------------------------
# Launching (and, for tools/benchmark.py sass, recording instead of launching)
# ---------------------------------------------------------------------------------------
_captured = []


@contextmanager
def capture_launches():
    """Within the block, kernel launches are recorded, not run: yields the list of
    ``(kernel, grid, args, kwargs)``. With meta tensors this gives the exact arguments (and so
    the specialisation) a real launch gets, without a GPU (``tools/benchmark.py sass``)."""
    records = []
    _captured.append(records)
    try:
        yield records
    finally:
        _captured.remove(records)


def _launch(kernel, grid, *args, **kwargs):
    if _captured:
        _captured[-1].append((kernel, grid, args, kwargs))
    else:
        kernel[grid](*args, **kwargs)


def layout(dtypes, block_l=None):
    """(lanes, VEC, Q): a tile is ``lanes`` runs of ``VEC * Q`` tokens, loaded VEC at a time
    (128-bit loads of the widest input dtype). ``block_l`` (tests): tokens per tile, one
    vector per lane, so that short sequences cross many tiles and runs."""
    vec = 16 // max(t.itemsize for t in dtypes)
    if block_l is None:
        return _k.LANES, vec, TOKENS_PER_LANE // vec
    lanes = 1 << max(0, (max(1, block_l // vec)).bit_length() - 1)
    return lanes, vec, 1


class _Scan:
    """One scan problem as the kernels see it: operands with unit stride along L and their
    (batch, group, channel) strides; u, delta (b, K*dg, L) views, B, C (b, K, N, L)."""

    def __init__(self, u, delta, A, B, C, D, delta_bias, softplus, block_l):
        self.u, self.delta, self.B, self.C = u, delta, B, C
        self.A, self.D, self.delta_bias, self.softplus = A, D, delta_bias, softplus
        self.batch, self.K, self.N = u.shape[0], B.shape[1], A.shape[1]
        self.dg, self.L = u.shape[1] // self.K, u.shape[-1]
        self.lanes, self.vec, self.q = layout((u.dtype, delta.dtype, B.dtype, C.dtype), block_l)
        run = self.vec * self.q
        self.n_runs = -(-self.L // run)
        self.n_tiles = -(-self.n_runs // self.lanes)

    def strides(self, t):
        """(b, k, c) strides of a (b, K*dg, L) tensor."""
        return t.stride(0), self.dg * t.stride(1), t.stride(1)

    def params(self):
        dummy = self.A
        return (self.A, self.D if self.D is not None else dummy,
                self.delta_bias if self.delta_bias is not None else dummy)

    def sizes(self):
        return self.dg, self.L, self.N, self.n_tiles, self.K * self.dg, self.n_runs

    def launch(self, kernel, *args):
        grid = (self.K * -(-self.dg // NUM_WARPS), self.batch)
        _launch(kernel, grid, *args, *self.sizes(), HAS_D=self.D is not None,
                HAS_BIAS=self.delta_bias is not None, SOFTPLUS=self.softplus,
                BLOCK_D=NUM_WARPS, LANES_=self.lanes, VEC=self.vec, Q=self.q,
                num_warps=NUM_WARPS)

    def run_states(self):
        return torch.empty(self.batch, self.K * self.dg, self.n_runs, self.N,
                           dtype=torch.float32, device=self.u.device)

    def forward(self):
        y = torch.empty(self.u.shape, dtype=torch.float32, device=self.u.device)
        runs = self.run_states()
        self.launch(_k.scan_fwd_kernel, self.u, *self.strides(self.u), self.delta,
                    *self.strides(self.delta), self.B, *self.B.stride()[:3], self.C,
                    *self.C.stride()[:3], y, *self.strides(y), *self.params(), runs)
        return y, runs

    def backward(self, gy, runs):
        dev, f32, d_total = self.u.device, torch.float32, self.K * self.dg
        gu = torch.empty(self.u.shape, dtype=f32, device=dev)
        gdelta = torch.empty(self.u.shape, dtype=f32, device=dev)
        gB = torch.zeros(self.B.shape, dtype=f32, device=dev)
        gC = torch.zeros_like(gB)
        carry = torch.empty(self.batch, d_total, self.N, dtype=f32, device=dev)
        gA = torch.zeros(self.batch, d_total, self.lanes, self.N, dtype=f32, device=dev)
        gD = torch.empty(self.batch, d_total, dtype=f32, device=dev)
        gbias = torch.empty_like(gD)
        self.launch(_k.scan_bwd_kernel, self.u, *self.strides(self.u), self.delta,
                    *self.strides(self.delta), self.B, *self.B.stride()[:3], self.C,
                    *self.C.stride()[:3], gy, *self.strides(gy), gu, *self.strides(gu),
                    gdelta, *self.strides(gdelta), gB, gC, *gB.stride()[:3], *self.params(),
                    runs, carry, gA, gD, gbias)
        return (gu, gdelta, gA.sum((0, 2)), gB, gC,
                gD.sum(0) if self.D is not None else None,
                gbias.sum(0) if self.delta_bias is not None else None)


# ---------------------------------------------------------------------------------------
# Routes: the map <-> the K scan orders, tile by tile
# ---------------------------------------------------------------------------------------
class _RoutePlan:
    """A route's index map (K, L) over an H x W map, as the copy kernels use it: the inverse
    map (K, H*W) int32 (-1: not visited) and, per route, whether it runs down the map's
    columns (then tiles are transposed on the way)."""

    def __init__(self, index, P):
        self.K, self.L = index.shape
        # ScanRoute.index marks its maps with (H, W); any other map is taken as one row
        hw = getattr(index, 'map_shape', None)
        self.H, self.W = hw if hw is not None and hw[0] * hw[1] == P else (1, P)
        self.P = P
        idx = index.long()
        inv = torch.full((self.K, P), -1, dtype=torch.int32, device=index.device)
        inv.scatter_(1, idx, torch.arange(self.L, dtype=torch.int32, device=index.device)
                     .expand(self.K, self.L).contiguous())
        self.inv = inv
        self.trans = self._column_major(inv).to(torch.int32)

    def _column_major(self, inv):
        """Per route: do consecutive scan positions sit in one map column more often than in
        one map row?"""
        grid = inv.view(self.K, self.H, self.W).long()
        def steps(a, b):  # noqa: E306 - neighbours one apart in scan order
            return (((a - b).abs() == 1) & (a >= 0) & (b >= 0)).flatten(1).sum(1)
        along_rows = steps(grid[:, :, 1:], grid[:, :, :-1])
        along_cols = steps(grid[:, 1:], grid[:, :-1])
        return along_cols > along_rows

    @classmethod
    def of(cls, index, P):
        """The plan of ``index``, kept on the tensor (the routes cache their maps)."""
        plan = getattr(index, '_route_plan', None)
        if plan is None or plan.P != P:
            plan = cls(index, P)
            index._route_plan = plan
        return plan

    def _grid(self, channels, batch):
        th, tw = ROUTE_TILE
        return (-(-self.H // th) * -(-self.W // tw), -(-channels // ROUTE_BLOCK_C), batch)

    def _copy(self, kernel, src, s, dst, d, channels, batch, flag):
        th, tw = ROUTE_TILE
        _launch(kernel, self._grid(channels, batch), src, *s, dst, *d, self.inv, self.trans,
                channels, self.H, self.W, self.K, flag, BLOCK_C=ROUTE_BLOCK_C, TH=th, TW=tw,
                num_warps=ROUTE_WARPS)

    def gather(self, t):
        """Map (b, c, P) shared by the routes, or (b, K, c, P) one per route -> scan order
        (b, K, c, L), same dtype."""
        shared = t.dim() == 3
        b, c = t.shape[0], t.shape[-2]
        out = torch.empty(b, self.K, c, self.L, dtype=t.dtype, device=t.device)
        s = (t.stride(0), 0, t.stride(1)) if shared else t.stride()[:3]
        self._copy(route_gather_kernel, t, s, out, out.stride()[:3], c, b, shared)
        return out

    def scatter(self, t, summed):
        """Scan order (b, K, c, L) -> the map: (b, c, P) fp32 summed over the routes, or (b,
        K, c, P) one per route (zero where a route does not go)."""
        b, _, c, _ = t.shape
        if summed:
            out = torch.empty(b, c, self.P, dtype=torch.float32, device=t.device)
            d = (out.stride(0), 0, out.stride(1))
        else:
            out = torch.empty(b, self.K, c, self.P, dtype=t.dtype, device=t.device)
            d = out.stride()[:3]
        self._copy(route_scatter_kernel, t, t.stride()[:3], out, d, c, b, summed)
        return out


# ---------------------------------------------------------------------------------------
# Autograd
# ---------------------------------------------------------------------------------------
class _Routed:
    """A routed call: the plan (copies) and the index map (the torch fallback)."""

    def __init__(self, plan, index):
        self.plan, self.index = plan, index
        self.K, self.L = plan.K, plan.L

    def gather(self, t):
        return self.plan.gather(t)

    def scatter(self, t, summed):
        return self.plan.scatter(t, summed)


def _flat(t):
    """(b, K, c, L) -> (b, K*c, L) view."""
    return t.flatten(1, 2)


def _forward(route, u, delta, A, B, C, D, delta_bias, softplus, block_l):
    """y (fp32; the merged map when routed) and the run-entry states."""
    us, deltas, Bs, Cs = _scan_operands(route, u, delta, B, C)
    y, runs = _Scan(us, deltas, A, Bs, Cs, D, delta_bias, softplus, block_l).forward()
    if route is not None:
        y = route.scatter(y.view(y.shape[0], route.K, -1, route.L), summed=True)
    return y, runs


def _backward(route, u, delta, A, B, C, D, delta_bias, softplus, block_l, runs, gy):
    """Gradients of u (or the map), delta, A, B, C, D, delta_bias (fp32)."""
    us, deltas, Bs, Cs = _scan_operands(route, u, delta, B, C)
    scan = _Scan(us, deltas, A, Bs, Cs, D, delta_bias, softplus, block_l)
    gy = gy.float().contiguous()
    gys = _flat(route.gather(gy)) if route is not None else gy
    gu, gdelta, gA, gB, gC, gD, gbias = scan.backward(gys, runs)
    if route is not None:
        b, K = u.shape[0], route.K
        gu = route.scatter(gu.view(b, K, -1, route.L), summed=True)
        gdelta = route.scatter(gdelta.view(b, K, -1, route.L), summed=False)
        gB, gC = route.scatter(gB, summed=False), route.scatter(gC, summed=False)
    return gu, gdelta, gA, gB, gC, gD, gbias


class _SelectiveScanTriton(torch.autograd.Function):
    """``route``: None (u, delta (b, D, L)) or a :class:`_Routed` (u the shared map (b,
    dg, P), delta (b, K, dg, P), B, C (b, K, N, P); output the merged map)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, softplus, route, block_l):
        y, runs = _forward(route, u, delta, A, B, C, D, delta_bias, softplus, block_l)
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, runs)
        ctx.softplus, ctx.route, ctx.block_l = softplus, route, block_l
        return y

    @staticmethod
    def backward(ctx, gy):
        u, delta, A, B, C, D, delta_bias, runs = ctx.saved_tensors
        try:
            gu, gdelta, gA, gB, gC, gD, gbias = _backward(
                ctx.route, u, delta, A, B, C, D, delta_bias, ctx.softplus, ctx.block_l, runs,
                gy)
        except Exception as err:  # noqa: BLE001 - a kernel that fails to build: use torch
            _mark_broken(u.device, err)
            gu, gdelta, gA, gB, gC, gD, gbias = _torch_backward(
                u, delta, A, B, C, D, delta_bias, ctx.softplus, ctx.route, gy)
        return (gu.to(u.dtype), gdelta.to(delta.dtype), gA, gB.to(B.dtype), gC.to(C.dtype),
                gD, gbias, None, None, None)


def _scan_operands(route, u, delta, B, C):
    """The operands in scan order: as they are, or copied through the route."""
    if route is None:
        return u, delta, B, C
    return (_flat(route.gather(u)), _flat(route.gather(delta)), route.gather(B),
            route.gather(C))


def _torch_backward(u, delta, A, B, C, D, delta_bias, softplus, route, gy):
    """Gradients by the torch backend (the fallback when a backward kernel fails)."""
    with torch.enable_grad():
        ins = [t.detach().requires_grad_() if t is not None else None
               for t in (u, delta, A, B, C, D, delta_bias)]
        if route is None:
            y = selective_scan_torch(*ins, delta_softplus=softplus)
        else:
            y = routed_scan_torch(*ins, delta_softplus=softplus, index=route.index)
        wrt = [t for t in ins if t is not None]
        grads = iter(torch.autograd.grad(y, wrt, gy))
    return [next(grads) if t is not None else None for t in ins]


def _prepare(t):
    """Contiguous, in a dtype the kernels load (fp32 / fp16 / bf16)."""
    if t is None:
        return None
    if t.dtype not in _LOAD_DTYPES:
        t = t.float()
    return t.contiguous()


def _params(A, D, delta_bias):
    return (A.float().contiguous(), D.float().contiguous() if D is not None else None,
            delta_bias.float().contiguous() if delta_bias is not None else None)


def selective_scan_triton(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                          block_l=None):
    """Selective scan with the Triton kernels; float32 (batch, dim, L). ``block_l``: tokens
    per tile (tests use small ones to cross many tiles; default: 32 lanes x 16 tokens)."""
    B = B.unsqueeze(1) if B.dim() == 3 else B
    C = C.unsqueeze(1) if C.dim() == 3 else C
    A, D, delta_bias = _params(A, D, delta_bias)
    u, delta, B, C = map(_prepare, (u, delta, B, C))
    check_shapes(u, delta, A, B, C, D, delta_bias)
    try:
        return _SelectiveScanTriton.apply(u, delta, A, B, C, D, delta_bias,
                                          bool(delta_softplus), None, block_l)
    except Exception as err:  # noqa: BLE001 - a kernel that fails to build: use torch
        _mark_broken(u.device, err)
        return selective_scan_torch(u, delta, A, B, C, D, delta_bias, delta_softplus)


def selective_scan_routed(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                          index=None, block_l=None):
    """Cross-scan + selective scan + cross-merge over a 2-D map.

    Args:
        x: (batch, dg, P) the map, P = H*W in row-major order, shared by the K routes.
        delta: (batch, K, dg, P), B, C: (batch, K, N, P): per-route projections, in map order.
        A: (K*dg, N); D, delta_bias: (K*dg,) (route k owns channels k*dg .. k*dg+dg-1).
        index: (K, L) map positions (in [0, P)) in the order route k visits them
            (:meth:`backbones.ops.routes.ScanRoute.index`, which also records H and W).

    Returns:
        float32 (batch, dg, P): every route's output put back at its positions and summed,
        i.e. ``route.merge(selective_scan(route.scan(x), ...))``.
    """
    A, D, delta_bias = _params(A, D, delta_bias)
    x, delta, B, C = map(_prepare, (x, delta, B, C))
    index = index.to(x.device)
    _check_routed(x, delta, A, B, C, index)
    if unavailable(x.device) is None:
        try:
            route = _Routed(_RoutePlan.of(index, x.shape[-1]), index)
            return _SelectiveScanTriton.apply(x, delta, A, B, C, D, delta_bias,
                                              bool(delta_softplus), route, block_l)
        except Exception as err:  # noqa: BLE001
            _mark_broken(x.device, err)
    return routed_scan_torch(x, delta, A, B, C, D, delta_bias, delta_softplus, index)


def _check_routed(x, delta, A, B, C, index):
    b, dg, P = x.shape
    K, N = index.shape[0], A.shape[1]
    if (delta.shape != (b, K, dg, P) or A.shape[0] != K * dg or B.shape != (b, K, N, P)
            or C.shape != B.shape or index.dim() != 2):
        raise ValueError(
            f'selective_scan_routed: x (b, dg, P), delta (b, K, dg, P), A (K*dg, N), B and C '
            f'(b, K, N, P), index (K, L); got x {tuple(x.shape)}, delta {tuple(delta.shape)}, '
            f'A {tuple(A.shape)}, B {tuple(B.shape)}, C {tuple(C.shape)}, '
            f'index {tuple(index.shape)}')


def routed_scan_torch(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                      index=None):
    """:func:`selective_scan_routed` with gathers, the torch backend and a scatter-add."""
    b, dg, P = x.shape
    K, L = index.shape
    N = B.shape[2]
    idx = index.to(x.device, torch.long)
    u = x[:, :, idx].transpose(1, 2).reshape(b, K * dg, L)               # (b, K*dg, L)
    dts = torch.gather(delta, 3, idx[None, :, None].expand(b, K, dg, L)).reshape(b, K * dg, L)
    Bs = torch.gather(B, 3, idx[None, :, None].expand(b, K, N, L))
    Cs = torch.gather(C, 3, idx[None, :, None].expand(b, K, N, L))
    y = selective_scan_torch(u, dts, A, Bs, Cs, D, delta_bias, delta_softplus)
    y = y.view(b, K, dg, L).transpose(1, 2).reshape(b, dg, K * L)
    return y.new_zeros(b, dg, P).index_add_(2, idx.flatten(), y)


# ---------------------------------------------------------------------------------------
# Availability: importable, a device it can run on, and a probe that compiles and matches
# ---------------------------------------------------------------------------------------
_probed = {}   # device key -> None (works) or why not
_broken = {}   # device key -> why a later kernel failed


def _device_key(device):
    device = torch.device(device)
    if device.type == 'cuda' and device.index is None:
        device = torch.device('cuda', torch.cuda.current_device())
    return str(device), interpreting()


def _mark_broken(device, err):
    key = _device_key(device)
    why = f'Triton kernel failed ({type(err).__name__}: {str(err).splitlines()[0][:300]})'
    _broken.setdefault(key, why)
    log_once(f'selective_scan: {why}; falling back to the pure-PyTorch scan on {key[0]}',
             logging.WARNING)


def probe(device):
    """Compile and run a tiny forward + backward on ``device`` and compare with the torch
    backend. Returns None when it works, else why not (cached per device and mode)."""
    key = _device_key(device)
    if key not in _probed:
        # the first call may come from inference (no_grad / inference_mode): the probe
        # checks the backward too
        with torch.inference_mode(False), torch.enable_grad():
            _probed[key] = _run_probe(torch.device(key[0]))
        if _probed[key] is not None:
            log_once(f'selective_scan: triton backend unusable on {key[0]}: {_probed[key]}',
                     logging.WARNING)
    return _probed[key]


def _run_probe(device):
    g = torch.Generator().manual_seed(0)
    b, K, dg, N, L = 1, 2, 2, 2, 5
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    ins = [r(b, K * dg, L), r(b, K * dg, L) * .5, -torch.rand(K * dg, N, generator=g) - .1,
           r(b, K, N, L), r(b, K, N, L), r(K * dg), r(K * dg) * .3]
    ins = [t.to(device).requires_grad_() for t in ins]
    try:
        outs = []
        for fn in (selective_scan_torch, _SelectiveScanTriton.apply):
            extra = () if fn is selective_scan_torch else (None, None)
            y = fn(*ins, True, *extra)
            outs.append([y, *torch.autograd.grad(y.square().sum(), ins)])
    except Exception as err:  # noqa: BLE001 - any failure to build or run means unusable
        return f'its probe kernel failed ({type(err).__name__}: {str(err).splitlines()[0][:300]})'
    if not all(torch.allclose(ref, got, rtol=1e-3, atol=1e-4) for ref, got in zip(*outs)):
        return 'its probe disagrees with the torch backend (wrong results)'
    return None


def unavailable(device=None):
    """None when the triton backend can run on ``device`` (None: triton importable), else why."""
    if _IMPORT_ERROR is not None:
        return f'triton is not importable ({_IMPORT_ERROR})'
    if device is None:
        return None
    device = torch.device(device)
    if device.type != 'cuda' and not interpreting():
        return (f'triton needs CUDA tensors (or TRITON_INTERPRET=1 for CPU ones), got '
                f'{device.type}')
    key = _device_key(device)
    return _broken.get(key) or probe(device)
