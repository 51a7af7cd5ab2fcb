"""The ``triton`` selective-scan backend: Triton kernels, compiled at first use for the GPU present.

Same signature and conventions as :func:`backbones.ops.selective_scan` (inputs fp32 / fp16 /
bf16, state and accumulation in fp32, fp32 output), plus :func:`selective_scan_routed`, the
fused form that reads a (batch, channels, H*W) map through a route's index map and sums the
K route outputs back into it (cross-scan and cross-merge without K copies of x or of y).

Design, and why:

* **Grid.** One program per (batch, group k, block of ``BLOCK_D`` channels of that group). It
  walks the sequence tile by tile (``BLOCK_L`` tokens) and keeps its (BLOCK_D, BLOCK_N) state
  in registers between tiles, so nothing of size (B, D, N, L) ever reaches HBM. All of N
  is one ``tl.constexpr`` block (any d_state; powers of two waste nothing).
* **Inside a tile: ``tl.associative_scan``** over the pair (decay, input) with the affine
  combine, on a (BLOCK_D, BLOCK_N, BLOCK_L) tile. A sequential per-token loop was the
  alternative; it loses on a GPU because each step can only load one token per channel
  (channels lie L apart in memory, so the loads are strided and latency-bound) and a step
  cannot start before the previous one ends. The tile scan loads whole rows of L
  (coalesced) and its depth is log2(BLOCK_L). The state entering the tile is applied after
  the scan (``h = h_local + cumulative_decay * h_in``). Decays are only ever multiplied,
  never exponentiated from a running sum, so nothing overflows.
* **Backward: chunk-end states and recomputation.** The forward saves the state entering
  every tile, (B, D, ceil(L / BLOCK_L), N) fp32, i.e. N / BLOCK_L of one (B, D, L) tensor
  (memory linear in L). The backward walks the tiles in reverse, recomputes the forward
  inside each tile from its saved state and runs the adjoint
  ``g[t] = C[t] gy[t] + a[t+1] g[t+1]`` as a *reverse* associative scan. That recurrence pairs
  token t with the decay of token t+1; instead of shifting registers (Triton has no shift)
  or recomputing exp for the shifted token, the scan carries a 3-tuple (decay of the
  segment's first token, product of the other decays, adjoint), which yields the shifted
  product directly (:func:`_adjoint_combine`).
* **Reductions without (B, D, N, L).** dA, dD and d(delta_bias) are summed over the tiles in
  registers; each program writes one (BLOCK_D, N) / (BLOCK_D,) partial per batch element
  and torch sums the batch. dB and dC sum over the channels of a group: each program sums
  its BLOCK_D channels in registers, then adds its (N, BLOCK_L) tile into an fp32
  (B, K, N, L) buffer with atomics (as mamba-ssm's kernel does). Per-block partials
  (B, D / BLOCK_D, N, L) were rejected: at VMamba-T stage 1 (L = 67200, N = 16) they would
  be ~1.6 GB for BLOCK_D = 4. Atomics make dB / dC (and the fused merge below)
  run-to-run nondeterministic in the last bits of fp32.
* **Routes are data.** Every operand is addressed as ``base + b*s_b + k*s_k + c*s_c + pos``
  with ``pos = index[k, l]`` for a routed call (``pos = l`` otherwise). The shared map has
  ``s_k = 0``; outputs that several routes hit (y, and du in the backward) are scatter-added
  with atomics. A new route family (windowed, atrous, zig-zag) is a new index map
  (:meth:`backbones.ops.routes.ScanRoute.positions`), never a new kernel.
* **Tile sizes** (:data:`TILE_ELEMENTS`, :data:`MAX_BLOCK_L`, :data:`BWD_TILE_ELEMENTS`,
  :data:`NUM_WARPS`) are a provisional heuristic: one channel per forward program (VMamba-T
  stage 1 gives 1536 programs), N=16 -> 128-token tiles, N=1 -> 1024-token tiles; chosen so
  that ptxas (sm_90, triton 3.8) reports no register spills (forward 155 / 80 registers at
  N=16 / 1, backward 255). Nothing here was timed on a GPU yet: each program walks its
  sequence tile after tile, so if that latency chain dominates, the next step is
  chunk-parallel passes or splitting N across programs. ``tools/benchmark.py scan --device
  cuda`` is the measurement that should decide.
* **Interpreter.** With ``TRITON_INTERPRET=1`` set before triton is first imported, the same
  kernels run on CPU tensors in Triton's interpreter (the CI tests). The variable must be
  set that early: triton's own ``tl.sum``, ``tl.zeros`` ... are JIT functions made at its
  import, so the mode cannot change later in a process.

Availability (:func:`unavailable`) is checked once per device: triton importable, a CUDA
device (or CPU tensors with ``TRITON_INTERPRET=1``), and a tiny forward + backward probe that
compiles, runs and matches the torch backend. A kernel that fails later (a shape whose
kernel does not compile) is logged once, the device is marked unusable and the call falls back
to the torch backend.
"""
import logging
import math
import types

import torch

from ..engine.log import log_once
from .scan_torch import check_shapes, selective_scan_torch

try:
    import triton
    import triton.language as tl
    _IMPORT_ERROR = None
    _jit = triton.jit
    #: Triton fixes compiled-or-interpreted when it is imported (its own ``tl.sum``, ``tl.zeros``
    #: ... are JIT functions made then), so the mode of these kernels is the one of that moment.
    INTERPRETED = bool(triton.knobs.runtime.interpret)
except Exception as err:  # noqa: BLE001 - a broken triton must not break `import backbones`
    triton, INTERPRETED = None, False
    tl = types.SimpleNamespace(constexpr=None)  # lets the kernel signatures below parse
    _IMPORT_ERROR = f'{type(err).__name__}: {err}'

    def _jit(fn):
        return fn

__all__ = ['selective_scan_triton', 'selective_scan_routed', 'routed_scan_torch',
           'unavailable', 'probe', 'interpreting']

#: Elements of each live (1, BLOCK_N, BLOCK_L) tensor of a forward program (16 per thread
#: at 4 warps): sets the tokens per tile, BLOCK_L = TILE_ELEMENTS / BLOCK_N (1024 at most).
TILE_ELEMENTS = 2048
MAX_BLOCK_L = 1024
#: The forward runs one channel per program (the most programs; nothing to share). A
#: backward program runs as many channels of one group as fit BWD_TILE_ELEMENTS (they share
#: each atomic add into dB / dC: N=1 -> 2 channels, N=16 -> 1), with twice the warps.
BWD_TILE_ELEMENTS = 2048
NUM_WARPS, NUM_WARPS_BWD = 4, 8
#: Inputs the kernels load as they are; anything else is converted to float32 first.
_LOAD_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# ---------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------
@_jit
def _affine_combine(a1, x1, a2, x2):
    # h = a * h_prev + x; segment 1 precedes segment 2 in scan order (also for reverse=True)
    return a1 * a2, x1 * a2 + x2


@_jit
def _adjoint_combine(a1, p1, g1, a2, p2, g2):
    # Reverse scan of g[t] = c[t] + a[t+1] g[t+1]; a segment carries (decay of its first
    # token, product of its other decays, g at its first token from a zero carry).
    # Segment 1 (the later tokens) comes first in reverse scan order.
    m = p2 * a1
    return a2, m * p1, g2 + m * g1


@_jit
def _scan_fwd_kernel(
        u_ptr, su_b, su_k, su_c, dt_ptr, sdt_b, sdt_k, sdt_c,
        b_ptr, sb_b, sb_k, sb_n, c_ptr, sc_b, sc_k, sc_n, y_ptr, sy_b, sy_k, sy_c,
        a_ptr, d_ptr, bias_ptr, state_ptr, index_ptr,
        dg, L, N, n_tiles, d_total,
        HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        ROUTED: tl.constexpr, SAVE_STATES: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    n_blocks = tl.cdiv(dg, BLOCK_D)
    k = (tl.program_id(0) // n_blocks).to(tl.int64)
    bi = tl.program_id(1).to(tl.int64)
    cs = (tl.program_id(0) % n_blocks) * BLOCK_D + tl.arange(0, BLOCK_D)  # channels in group
    ns = tl.arange(0, BLOCK_N)
    ls = tl.arange(0, BLOCK_L)
    mc = cs < dg
    mcn = mc[:, None] & (ns < N)[None, :]
    ch = k * dg + cs  # channels of A, D, delta_bias
    A = tl.load(a_ptr + ch[:, None] * N + ns[None, :], mask=mcn, other=0.)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=mc, other=0.)
    if HAS_D:
        Dv = tl.load(d_ptr + ch, mask=mc, other=0.)
    u_row = u_ptr + bi * su_b + k * su_k + cs[:, None] * su_c
    dt_row = dt_ptr + bi * sdt_b + k * sdt_k + cs[:, None] * sdt_c
    b_row = b_ptr + bi * sb_b + k * sb_k + ns[:, None] * sb_n
    c_row = c_ptr + bi * sc_b + k * sc_k + ns[:, None] * sc_n
    y_row = y_ptr + bi * sy_b + k * sy_k + cs[:, None] * sy_c
    state_row = state_ptr + ((bi * d_total + ch[:, None]) * n_tiles) * N + ns[None, :]
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for tile in range(n_tiles):
        t = tile * BLOCK_L + ls
        mt = t < L
        if ROUTED:
            pos = tl.load(index_ptr + k * L + t, mask=mt, other=0)
        else:
            pos = t
        m2 = mc[:, None] & mt[None, :]
        mnt = (ns < N)[:, None] & mt[None, :]
        u = tl.load(u_row + pos[None, :], mask=m2, other=0.).to(tl.float32)
        dt = tl.load(dt_row + pos[None, :], mask=m2, other=0.).to(tl.float32)
        if HAS_BIAS:
            dt = dt + bias[:, None]
        if SOFTPLUS:  # torch's softplus (threshold 20), log1p by Goldberg's trick
            e = tl.exp(tl.minimum(dt, 20.))
            w = 1. + e
            dt = tl.where(dt > 20., dt, tl.where(w == 1., e, tl.log(w) * (e / tl.where(
                w == 1., 1., w - 1.))))
        dt = tl.where(m2, dt, 0.)  # padding tokens: decay 1, input 0 (the identity step)
        Bt = tl.load(b_row + pos[None, :], mask=mnt, other=0.).to(tl.float32)
        Ct = tl.load(c_row + pos[None, :], mask=mnt, other=0.).to(tl.float32)
        if SAVE_STATES:
            tl.store(state_row + tile * N, h, mask=mcn)
        a = tl.exp(dt[:, None, :] * A[:, :, None])
        x = (dt * u)[:, None, :] * Bt[None, :, :]
        decay, hs = tl.associative_scan((a, x), 2, _affine_combine)
        hs = hs + decay * h[:, :, None]
        y = tl.sum(hs * Ct[None, :, :], axis=1)
        if HAS_D:
            y = y + Dv[:, None] * u
        if ROUTED:  # the K routes meet in the merged map
            tl.atomic_add(y_row + pos[None, :], y, mask=m2, sem='relaxed')
        else:
            tl.store(y_row + pos[None, :], y, mask=m2)
        h = tl.sum(tl.where(ls[None, None, :] == BLOCK_L - 1, hs, 0.), axis=2)


@_jit
def _scan_bwd_kernel(
        u_ptr, su_b, su_k, su_c, dt_ptr, sdt_b, sdt_k, sdt_c,
        b_ptr, sb_b, sb_k, sb_n, c_ptr, sc_b, sc_k, sc_n, gy_ptr, sgy_b, sgy_k, sgy_c,
        gu_ptr, sgu_b, sgu_k, sgu_c, gdt_ptr, gb_ptr, gc_ptr, sg_b, sg_k, sg_n,
        a_ptr, d_ptr, bias_ptr, state_ptr, index_ptr, ga_ptr, gd_ptr, gbias_ptr,
        dg, L, N, n_tiles, d_total,
        HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        ROUTED: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    n_blocks = tl.cdiv(dg, BLOCK_D)
    k = (tl.program_id(0) // n_blocks).to(tl.int64)
    bi = tl.program_id(1).to(tl.int64)
    cs = (tl.program_id(0) % n_blocks) * BLOCK_D + tl.arange(0, BLOCK_D)
    ns = tl.arange(0, BLOCK_N)
    ls = tl.arange(0, BLOCK_L)
    mc = cs < dg
    mcn = mc[:, None] & (ns < N)[None, :]
    ch = k * dg + cs
    A = tl.load(a_ptr + ch[:, None] * N + ns[None, :], mask=mcn, other=0.)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=mc, other=0.)
    if HAS_D:
        Dv = tl.load(d_ptr + ch, mask=mc, other=0.)
    u_row = u_ptr + bi * su_b + k * su_k + cs[:, None] * su_c
    dt_row = dt_ptr + bi * sdt_b + k * sdt_k + cs[:, None] * sdt_c
    gdt_row = gdt_ptr + bi * sdt_b + k * sdt_k + cs[:, None] * sdt_c
    b_row = b_ptr + bi * sb_b + k * sb_k + ns[:, None] * sb_n
    c_row = c_ptr + bi * sc_b + k * sc_k + ns[:, None] * sc_n
    gb_row = gb_ptr + bi * sg_b + k * sg_k + ns[:, None] * sg_n
    gc_row = gc_ptr + bi * sg_b + k * sg_k + ns[:, None] * sg_n
    gy_row = gy_ptr + bi * sgy_b + k * sgy_k + cs[:, None] * sgy_c
    gu_row = gu_ptr + bi * sgu_b + k * sgu_k + cs[:, None] * sgu_c
    state_row = state_ptr + ((bi * d_total + ch[:, None]) * n_tiles) * N + ns[None, :]
    carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # a[t+1] g[t+1] after the tile
    acc_ga = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    acc_gd = tl.zeros((BLOCK_D,), dtype=tl.float32)
    acc_gbias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for i in range(n_tiles):
        tile = n_tiles - 1 - i
        t = tile * BLOCK_L + ls
        mt = t < L
        if ROUTED:
            pos = tl.load(index_ptr + k * L + t, mask=mt, other=0)
        else:
            pos = t
        m2 = mc[:, None] & mt[None, :]
        mnt = (ns < N)[:, None] & mt[None, :]
        u = tl.load(u_row + pos[None, :], mask=m2, other=0.).to(tl.float32)
        dt_in = tl.load(dt_row + pos[None, :], mask=m2, other=0.).to(tl.float32)
        if HAS_BIAS:
            dt_in = dt_in + bias[:, None]
        dt = dt_in
        if SOFTPLUS:
            e = tl.exp(tl.minimum(dt_in, 20.))
            w = 1. + e
            dt = tl.where(dt_in > 20., dt_in, tl.where(w == 1., e, tl.log(w) * (e / tl.where(
                w == 1., 1., w - 1.))))
        dt = tl.where(m2, dt, 0.)
        Bt = tl.load(b_row + pos[None, :], mask=mnt, other=0.).to(tl.float32)
        Ct = tl.load(c_row + pos[None, :], mask=mnt, other=0.).to(tl.float32)
        gy = tl.load(gy_row + pos[None, :], mask=m2, other=0.).to(tl.float32)
        h_in = tl.load(state_row + tile * N, mask=mcn, other=0.)
        # recompute the tile's states from the state that entered it
        a = tl.exp(dt[:, None, :] * A[:, :, None])
        dtu = dt * u
        x = dtu[:, None, :] * Bt[None, :, :]
        decay, hs = tl.associative_scan((a, x), 2, _affine_combine)
        hs = hs + decay * h_in[:, :, None]
        # adjoint of the states, carried in from the tile after this one
        _, rest, g = tl.associative_scan((a, tl.full(a.shape, 1., tl.float32),
                                          Ct[None, :, :] * gy[:, None, :]),
                                         2, _adjoint_combine, reverse=True)
        g = g + rest * carry[:, :, None]
        carry = tl.sum(tl.where(ls[None, None, :] == 0, a * g, 0.), axis=2)
        g_dec = g * (hs - x)  # g * a[t] h[t-1]: the decay's share
        gb = tl.sum(g * dtu[:, None, :], axis=0)
        gc = tl.sum(hs * gy[:, None, :], axis=0)
        tl.atomic_add(gb_row + pos[None, :], gb, mask=mnt, sem='relaxed')
        tl.atomic_add(gc_row + pos[None, :], gc, mask=mnt, sem='relaxed')
        gbu = tl.sum(g * Bt[None, :, :], axis=1)
        gu = gbu * dt
        if HAS_D:
            gu = gu + Dv[:, None] * gy
            acc_gd += tl.sum(gy * u, axis=1)
        gdt = gbu * u + tl.sum(g_dec * A[:, :, None], axis=1)
        acc_ga += tl.sum(g_dec * dt[:, None, :], axis=2)
        if SOFTPLUS:
            gdt = gdt * tl.sigmoid(dt_in)
        gdt = tl.where(m2, gdt, 0.)
        acc_gbias += tl.sum(gdt, axis=1)
        tl.store(gdt_row + pos[None, :], gdt, mask=m2)
        if ROUTED:
            tl.atomic_add(gu_row + pos[None, :], gu, mask=m2, sem='relaxed')
        else:
            tl.store(gu_row + pos[None, :], gu, mask=m2)
    tl.store(ga_ptr + (bi * d_total + ch[:, None]) * N + ns[None, :], acc_ga, mask=mcn)
    if HAS_D:
        tl.store(gd_ptr + bi * d_total + ch, acc_gd, mask=mc)
    if HAS_BIAS:
        tl.store(gbias_ptr + bi * d_total + ch, acc_gbias, mask=mc)


def interpreting():
    """Whether the kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1 when triton
    was first imported)."""
    return INTERPRETED


# ---------------------------------------------------------------------------------------
# Launchers
# ---------------------------------------------------------------------------------------
def _pow2(n):
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def _tile(N, L, block_l=None):
    """(BLOCK_N, BLOCK_L): all of N in one block, tokens to fill TILE_ELEMENTS."""
    bn = _pow2(N)
    bl = _pow2(block_l) if block_l else min(MAX_BLOCK_L, max(16, TILE_ELEMENTS // bn))
    return bn, min(bl, max(16, _pow2(L)))


class _Scan:
    """One scan problem as the kernels see it: contiguous operands and their (b, k, c) strides.

    Unrouted: u, delta (b, K*dg, L), B, C (b, K, N, L), y (b, K*dg, L). Routed: u is the map
    (b, dg, P) shared by the K routes (k-stride 0), delta (b, K, dg, P), B, C (b, K, N, P),
    and ``index`` (K, L) holds the map position of every route token; y is (b, dg, P).
    """

    def __init__(self, u, delta, A, B, C, D, delta_bias, softplus, index, block_l):
        self.u, self.delta, self.B, self.C = u, delta, B, C
        self.A, self.D, self.delta_bias, self.softplus = A, D, delta_bias, softplus
        self.index = index
        self.batch, self.K, self.N = u.shape[0], B.shape[1], A.shape[1]
        if index is None:
            self.dg, self.L = u.shape[1] // self.K, u.shape[-1]
            self.u_strides = self.channel_strides(u)
            self.delta_strides = self.channel_strides(delta)
        else:
            self.dg, self.L = u.shape[1], index.shape[1]
            self.u_strides = (u.stride(0), 0, u.stride(1))
            self.delta_strides = delta.stride()[:3]
        self.block_n, self.block_l = _tile(self.N, self.L, block_l)
        self.n_tiles = -(-self.L // self.block_l)

    def channel_strides(self, t):
        """(b, k, c) strides of a (b, K*dg, L) tensor."""
        return t.stride(0), self.dg * t.stride(1), t.stride(1)

    def output_like_u(self):
        """Zeros (routed: scatter-added into) or an empty tensor of u's layout, fp32."""
        if self.index is None:
            return torch.empty(self.u.shape, dtype=torch.float32, device=self.u.device)
        return torch.zeros(self.u.shape, dtype=torch.float32, device=self.u.device)

    def common_args(self):
        dummy = self.A
        return (self.A, self.D if self.D is not None else dummy,
                self.delta_bias if self.delta_bias is not None else dummy)

    def bwd_block_d(self):
        fit = BWD_TILE_ELEMENTS // (self.block_n * self.block_l)
        return max(1, min(fit, _pow2(self.dg)))

    def launch(self, kernel, block_d, num_warps, *args, **flags):
        """Run ``kernel`` on a (K * channel blocks, batch) grid."""
        grid = (self.K * -(-self.dg // block_d), self.batch)
        kernel[grid](*args, HAS_D=self.D is not None, HAS_BIAS=self.delta_bias is not None,
                     SOFTPLUS=self.softplus, ROUTED=self.index is not None, BLOCK_D=block_d,
                     BLOCK_N=self.block_n, BLOCK_L=self.block_l, num_warps=num_warps, **flags)

    def sizes(self):
        return self.dg, self.L, self.N, self.n_tiles, self.K * self.dg

    def forward(self, save_states):
        y = self.output_like_u()
        y_strides = self.u_strides if self.index is None else (y.stride(0), 0, y.stride(1))
        states = (torch.empty(self.batch, self.K * self.dg, self.n_tiles, self.N,
                              dtype=torch.float32, device=y.device) if save_states else y)
        index = self.index if self.index is not None else y
        self.launch(
            _scan_fwd_kernel, 1, NUM_WARPS,
            self.u, *self.u_strides, self.delta, *self.delta_strides,
            self.B, *self.B.stride()[:3], self.C, *self.C.stride()[:3], y, *y_strides,
            *self.common_args(), states, index, *self.sizes(), SAVE_STATES=save_states)
        return y, (states if save_states else None)

    def backward(self, gy, states):
        gy = gy.contiguous()
        gu = self.output_like_u()
        g_strides = self.u_strides if self.index is None else (gu.stride(0), 0, gu.stride(1))
        gy_strides = g_strides if self.index is None else (gy.stride(0), 0, gy.stride(1))
        # routed: map positions a route does not visit get no gradient, so start from zeros
        gdelta = (torch.empty if self.index is None else torch.zeros)(
            self.delta.shape, dtype=self.delta.dtype, device=gu.device)
        gB = torch.zeros(self.B.shape, dtype=torch.float32, device=gu.device)
        gC = torch.zeros_like(gB)
        d_total = self.K * self.dg
        gA = torch.empty(self.batch, d_total, self.N, dtype=torch.float32, device=gu.device)
        gD = torch.empty(self.batch, d_total, dtype=torch.float32, device=gu.device)
        gbias = torch.empty_like(gD)
        index = self.index if self.index is not None else gu
        self.launch(
            _scan_bwd_kernel, self.bwd_block_d(), NUM_WARPS_BWD,
            self.u, *self.u_strides, self.delta, *self.delta_strides,
            self.B, *self.B.stride()[:3], self.C, *self.C.stride()[:3], gy, *gy_strides,
            gu, *g_strides, gdelta, gB, gC, *gB.stride()[:3],
            *self.common_args(), states, index, gA, gD, gbias, *self.sizes())
        return (gu, gdelta, gA.sum(0), gB, gC,
                gD.sum(0) if self.D is not None else None,
                gbias.sum(0) if self.delta_bias is not None else None)


class _SelectiveScanTriton(torch.autograd.Function):

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, softplus, index, block_l):
        scan = _Scan(u, delta, A, B, C, D, delta_bias, softplus, index, block_l)
        save = any(ctx.needs_input_grad)
        y, states = scan.forward(save_states=save)
        if save:
            ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, index, states)
        ctx.softplus, ctx.block_l = softplus, block_l
        return y

    @staticmethod
    def backward(ctx, gy):
        u, delta, A, B, C, D, delta_bias, index, states = ctx.saved_tensors
        scan = _Scan(u, delta, A, B, C, D, delta_bias, ctx.softplus, index, ctx.block_l)
        try:
            gu, gdelta, gA, gB, gC, gD, gbias = scan.backward(gy.float(), states)
        except Exception as err:  # noqa: BLE001 - a kernel that fails to build: use torch
            _mark_broken(u.device, err)
            gu, gdelta, gA, gB, gC, gD, gbias = _torch_backward(
                u, delta, A, B, C, D, delta_bias, ctx.softplus, index, gy)
        return (gu.to(u.dtype), gdelta.to(delta.dtype), gA, gB.to(B.dtype), gC.to(C.dtype),
                gD, gbias, None, None, None)


def _torch_backward(u, delta, A, B, C, D, delta_bias, softplus, index, gy):
    """Gradients by the torch backend (the fallback when a backward kernel fails)."""
    with torch.enable_grad():
        ins = [t.detach().requires_grad_() if t is not None else None
               for t in (u, delta, A, B, C, D, delta_bias)]
        if index is None:
            y = selective_scan_torch(*ins, delta_softplus=softplus)
        else:
            y = routed_scan_torch(*ins, delta_softplus=softplus, index=index)
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
    per tile (default :data:`BLOCK_L`; tests use small ones to cross many tiles)."""
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
    """Fused cross-scan + selective scan + cross-merge over a 2-D map.

    Args:
        x: (batch, dg, P) the map, P = H*W in row-major order, shared by the K routes.
        delta: (batch, K, dg, P), B, C: (batch, K, N, P): per-route projections, in map order.
        A: (K*dg, N); D, delta_bias: (K*dg,) (route k owns channels k*dg .. k*dg+dg-1).
        index: (K, L) map positions (in [0, P)) in the order route k visits them
            (:meth:`backbones.ops.routes.ScanRoute.index`).

    Returns:
        float32 (batch, dg, P): every route's output put back at its positions and summed,
        i.e. ``route.merge(selective_scan(route.scan(x), ...))``.
    """
    A, D, delta_bias = _params(A, D, delta_bias)
    x, delta, B, C = map(_prepare, (x, delta, B, C))
    index = index.to(x.device).contiguous()
    _check_routed(x, delta, A, B, C, index)
    if unavailable(x.device) is None:
        try:
            return _SelectiveScanTriton.apply(x, delta, A, B, C, D, delta_bias,
                                              bool(delta_softplus), index, block_l)
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
