"""Triton kernels of the selective scan (launched by :mod:`.scan_triton`).

Layout (the same in both kernels): a program owns ``BLOCK_D`` channels of one group, one per
warp (``BLOCK_D == num_warps``); in a warp, lane ``p`` owns ``T`` consecutive tokens of its
channel, so a tile is ``LANES * T`` tokens and every lane walks its run of tokens
sequentially in registers. Per tile and state (a runtime loop over the states, so any
d_state compiles to one small loop body):

1. every lane runs its T tokens from a zero state: ``s = a s + x`` (``a = 2^(dt A log2 e)``,
   ``x = dt u B``), and its run's decay is ``2^(A log2 e * sum(dt))``: one exp per run;
2. one lane scan of the (decay, s) pairs (``tl.associative_scan`` over 32 lanes: 5 shuffle
   levels, no shared memory) gives each run's end state; ``tl.gather`` from lane p-1 turns
   it into the state entering each run; lane 0 takes the tile's carry;
3. every lane walks its run again from that state and accumulates ``y += C h`` (no
   reduction over the states: y of a token is the sum over the state loop).

So a state costs each lane about 6 FFMA/FMUL and one MUFU per token plus a 32-lane scan
amortised over T tokens (the unit of ``tools/benchmark.py sass``). The forward saves the
state entering every run, (batch, dim, ceil(L / T), N) fp32, which is also how the carry
goes from one tile to the next (lane 0 reads what lane 0 wrote, so no barrier). The
backward walks the tiles in reverse, rebuilds each run's states from its saved entry (no
forward scan), runs the adjoint ``g[t] = C[t] gy[t] + a[t+1] g[t+1]`` the same way with a
reverse lane scan, and reduces dB / dC over its BLOCK_D channels in registers and shared
memory before one atomic add per (state, token).

Loads and stores are vectorised: a lane loads its T tokens as T / VEC 128-bit vectors (VEC = 4
fp32 or 8 fp16 / bf16 values) and :func:`_cols` splits them into per-token registers
(``tl.split`` of an in-thread axis costs nothing).
"""
try:
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice
    IMPORT_ERROR = None
    jit = triton.jit
    #: Triton fixes compiled-or-interpreted when it is imported (its own ``tl.sum``, ``tl.zeros``
    #: ... are JIT functions made then), so the mode of these kernels is the one of that moment.
    INTERPRETED = bool(triton.knobs.runtime.interpret)
    _LOG2E, _LN2 = tl.constexpr(1.4426950408889634), tl.constexpr(0.6931471805599453)
except Exception as err:  # noqa: BLE001 - a broken triton must not break `import backbones`
    import types
    triton, INTERPRETED, libdevice = None, False, None
    tl = types.SimpleNamespace(constexpr=None)  # lets the kernel signatures below parse
    IMPORT_ERROR = f'{type(err).__name__}: {err}'
    _LOG2E, _LN2 = 1.4426950408889634, 0.6931471805599453

    def jit(fn):
        return fn

__all__ = ['IMPORT_ERROR', 'INTERPRETED', 'LANES', 'scan_fwd_kernel', 'scan_bwd_kernel']

#: Lanes of a warp: runs of tokens side by side in a tile.
LANES = 32


@jit
def _log2_exact(x):
    return tl.log2(x)


# lg2.approx (one MUFU) where compiled; tl.log2 lowers to a 20-instruction polynomial. The
# interpreter has no libdevice: there it is numpy's log2.
_log2 = _log2_exact if INTERPRETED or libdevice is None else libdevice.fast_log2f


@jit
def _affine(a1, x1, a2, x2):
    # h = a * h_prev + x; segment 1 precedes segment 2 in scan order (also for reverse=True)
    return a1 * a2, x1 * a2 + x2


@jit
def _cols(x, VEC: tl.constexpr):
    """(..., VEC) with the last axis in one thread -> VEC tensors (...), in order."""
    if VEC == 1:
        out = (tl.reshape(x, x.shape[:-1]),)
    elif VEC == 2:
        c0, c1 = tl.split(x)
        out = (c0, c1)
    elif VEC == 4:
        ev, od = tl.split(tl.reshape(x, x.shape[:-1] + [2, 2]))
        c0, c2 = tl.split(ev)
        c1, c3 = tl.split(od)
        out = (c0, c1, c2, c3)
    else:
        ev, od = tl.split(tl.reshape(x, x.shape[:-1] + [4, 2]))
        e0, e1 = tl.split(tl.reshape(ev, ev.shape[:-1] + [2, 2]))
        o0, o1 = tl.split(tl.reshape(od, od.shape[:-1] + [2, 2]))
        c0, c4 = tl.split(e0)
        c2, c6 = tl.split(e1)
        c1, c5 = tl.split(o0)
        c3, c7 = tl.split(o1)
        out = (c0, c1, c2, c3, c4, c5, c6, c7)
    return out


@jit
def _rows(c, VEC: tl.constexpr):
    """Inverse of :func:`_cols`: VEC tensors (...) -> (..., VEC)."""
    if VEC == 1:
        x = tl.expand_dims(c[0], len(c[0].shape))
    elif VEC == 2:
        x = tl.join(c[0], c[1])
    elif VEC == 4:
        x = tl.reshape(tl.join(tl.join(c[0], c[2]), tl.join(c[1], c[3])), c[0].shape + [4])
    else:
        x = tl.reshape(tl.join(tl.join(tl.join(c[0], c[4]), tl.join(c[2], c[6])),
                               tl.join(tl.join(c[1], c[5]), tl.join(c[3], c[7]))),
                       c[0].shape + [8])
    return x


@jit
def _slice(c, start: tl.constexpr, n: tl.constexpr):
    out = ()
    for i in tl.static_range(n):
        out = out + (c[start + i],)
    return out


@jit
def _softplus(x):
    # torch's softplus (threshold 20); log(1 + e) by its series where e is small (1 + e would
    # round), else one lg2
    e = tl.exp(tl.minimum(x, 20.))
    series = e * (1. - e * (0.5 - e * (0.3333333333333333 - e * 0.25)))
    return tl.where(x > 20., x, tl.where(e < 0.05, series, _log2(1. + e) * _LN2))


@jit
def _softplus_grad(x):
    return tl.where(x > 20., 1., 1. / (1. + tl.exp(-x)))


@jit
def _load_tokens(base, t, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """dt of a (BLOCK_D, LANES, VEC) block of tokens: + bias, softplus; padding -> 0."""
    dt = tl.load(base + t, mask=mask, other=0.).to(tl.float32)
    if HAS_BIAS:
        dt = dt + bias
    if SOFTPLUS:
        dt = _softplus(dt)
    return tl.where(mask, dt, 0.)


@jit
def _ld(ptr, mask, MASKED: tl.constexpr):
    if MASKED:
        x = tl.load(ptr, mask=mask, other=0.)
    else:
        x = tl.load(ptr)
    return x.to(tl.float32)


@jit
def _fwd_tile(tile, u_base, dt_base, y_base, b_base, c_base, run_base, a_base, sb_n, sc_n,
              bias, Dv, prev, first, mc, c3, tok, lane, L, N, n_runs, MASKED: tl.constexpr,
              HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK_D: tl.constexpr,
              LANES_: tl.constexpr, VEC: tl.constexpr, Q: tl.constexpr):
    """One tile of :func:`scan_fwd_kernel` (``MASKED``: tokens past L or channels past the
    group may occur)."""
    T: tl.constexpr = VEC * Q
    t0 = tile * (LANES_ * T)
    DT = ()
    DTU = ()
    Y = ()
    for q in tl.static_range(Q):
        t = t0 + q * VEC + tok
        m = mc[:, None, None] & (t < L)
        u = _ld(u_base + t, m, MASKED)
        dt = _ld(dt_base + t, m, MASKED)
        if HAS_BIAS:
            dt = dt + bias
        if SOFTPLUS:
            dt = _softplus(dt)
        if MASKED:
            dt = tl.where(m, dt, 0.)  # padding tokens: decay 1, input 0
        DT = DT + _cols(dt, VEC)
        DTU = DTU + _cols(dt * u, VEC)
        Y = Y + _cols(Dv * u, VEC)
    dtsum = DT[0]
    for i in tl.static_range(1, T):
        dtsum += DT[i]
    run = tile * LANES_ + lane[None, :]
    mrun = mc[:, None] & (run < n_runs)
    mnext = first & (run + LANES_ < n_runs)
    for n in tl.range(N, loop_unroll_factor=1):
        An = tl.load(a_base + n, mask=mc[:, None], other=0.) * _LOG2E
        # the state entering the tile: written by lane 0 in the previous tile
        h0 = tl.load(run_base + tile * LANES_ * N + n, mask=first & (tile > 0), other=0.)
        a = ()
        x = ()
        s = tl.zeros((BLOCK_D, LANES_), tl.float32)
        for q in tl.static_range(Q):
            t = t0 + q * VEC + tok
            Bq = _cols(_ld(b_base + n * sb_n + t, (t < L) & (c3 >= 0), MASKED), VEC)
            for j in tl.static_range(VEC):
                aj = tl.exp2(DT[q * VEC + j] * An)
                xj = DTU[q * VEC + j] * Bq[j]
                s = s * aj + xj
                a = a + (aj,)
                x = x + (xj,)
        decay = tl.exp2(dtsum * An)
        s = tl.where(first, decay * h0 + s, s)
        _, ends = tl.associative_scan((decay, s), 1, _affine)
        ends = tl.gather(ends, prev, 1)  # lane p: end of run p-1; lane 0: end of the tile
        h = tl.where(first, h0, ends)
        if MASKED:
            tl.store(run_base + tile * LANES_ * N + n, h, mask=mrun)
        else:
            tl.store(run_base + tile * LANES_ * N + n, h)
        tl.store(run_base + (tile + 1) * LANES_ * N + n, ends, mask=mnext)
        Yn = ()
        for q in tl.static_range(Q):
            t = t0 + q * VEC + tok
            Cq = _cols(_ld(c_base + n * sc_n + t, (t < L) & (c3 >= 0), MASKED), VEC)
            for j in tl.static_range(VEC):
                h = a[q * VEC + j] * h + x[q * VEC + j]
                Yn = Yn + (Y[q * VEC + j] + Cq[j] * h,)
        Y = Yn
    for q in tl.static_range(Q):
        t = t0 + q * VEC + tok
        if MASKED:
            tl.store(y_base + t, _rows(_slice(Y, q * VEC, VEC), VEC),
                     mask=mc[:, None, None] & (t < L))
        else:
            tl.store(y_base + t, _rows(_slice(Y, q * VEC, VEC), VEC))


@jit
def scan_fwd_kernel(
        u_ptr, su_b, su_k, su_c, dt_ptr, sdt_b, sdt_k, sdt_c,
        b_ptr, sb_b, sb_k, sb_n, c_ptr, sc_b, sc_k, sc_n, y_ptr, sy_b, sy_k, sy_c,
        a_ptr, d_ptr, bias_ptr, run_ptr,
        dg, L, N, n_tiles, d_total, n_runs,
        HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        BLOCK_D: tl.constexpr, LANES_: tl.constexpr, VEC: tl.constexpr, Q: tl.constexpr):
    T: tl.constexpr = VEC * Q
    n_blocks = tl.cdiv(dg, BLOCK_D)
    k = tl.program_id(0) // n_blocks
    bi = tl.program_id(1)
    cs = (tl.program_id(0) % n_blocks) * BLOCK_D + tl.arange(0, BLOCK_D)
    lane = tl.arange(0, LANES_)
    mc = cs < dg
    ch = k * dg + cs
    c3 = cs[:, None, None]
    tok = lane[None, :, None] * T + tl.arange(0, VEC)[None, None, :]     # (1, LANES, VEC)
    u_base = u_ptr + bi * su_b + k * su_k + c3 * su_c
    dt_base = dt_ptr + bi * sdt_b + k * sdt_k + c3 * sdt_c
    y_base = y_ptr + bi * sy_b + k * sy_k + c3 * sy_c
    # B and C: every warp reads the group's values (a broadcast of the same lines)
    b_base = b_ptr + bi * sb_b + k * sb_k + c3 * 0
    c_base = c_ptr + bi * sc_b + k * sc_k + c3 * 0
    run_base = run_ptr + ((bi * d_total + ch[:, None]) * n_runs + lane[None, :]) * N
    a_base = a_ptr + ch[:, None] * N
    bias = tl.load(bias_ptr + ch, mask=mc, other=0.)[:, None, None] if HAS_BIAS else 0.
    Dv = tl.load(d_ptr + ch, mask=mc, other=0.)[:, None, None] if HAS_D else 0.
    prev = tl.broadcast_to(((lane + LANES_ - 1) % LANES_)[None, :], (BLOCK_D, LANES_))
    first = (lane == 0)[None, :] & mc[:, None]
    # full tiles of full channel blocks run without masks; the rest (the last tile, a
    # partial block of channels) with them
    n_full = L // (LANES_ * T) if (tl.program_id(0) % n_blocks + 1) * BLOCK_D <= dg else 0
    for tile in range(n_full):
        _fwd_tile(tile, u_base, dt_base, y_base, b_base, c_base, run_base, a_base, sb_n, sc_n,
                  bias, Dv, prev, first, mc, c3, tok, lane, L, N, n_runs, False, HAS_BIAS,
                  SOFTPLUS, BLOCK_D, LANES_, VEC, Q)
    for tile in range(n_full, n_tiles):
        _fwd_tile(tile, u_base, dt_base, y_base, b_base, c_base, run_base, a_base, sb_n, sc_n,
                  bias, Dv, prev, first, mc, c3, tok, lane, L, N, n_runs, True, HAS_BIAS,
                  SOFTPLUS, BLOCK_D, LANES_, VEC, Q)


@jit
def scan_bwd_kernel(
        u_ptr, su_b, su_k, su_c, dt_ptr, sdt_b, sdt_k, sdt_c,
        b_ptr, sb_b, sb_k, sb_n, c_ptr, sc_b, sc_k, sc_n, gy_ptr, sgy_b, sgy_k, sgy_c,
        gu_ptr, sgu_b, sgu_k, sgu_c, gdt_ptr, sgdt_b, sgdt_k, sgdt_c,
        gb_ptr, gc_ptr, sg_b, sg_k, sg_n,
        a_ptr, d_ptr, bias_ptr, run_ptr, carry_ptr, ga_ptr, gd_ptr, gbias_ptr,
        dg, L, N, n_tiles, d_total, n_runs,
        HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        BLOCK_D: tl.constexpr, LANES_: tl.constexpr, VEC: tl.constexpr, Q: tl.constexpr):
    T: tl.constexpr = VEC * Q
    n_blocks = tl.cdiv(dg, BLOCK_D)
    k = tl.program_id(0) // n_blocks
    bi = tl.program_id(1)
    cs = (tl.program_id(0) % n_blocks) * BLOCK_D + tl.arange(0, BLOCK_D)
    lane = tl.arange(0, LANES_)
    vec = tl.arange(0, VEC)
    mc = cs < dg
    ch = k * dg + cs
    c3 = cs[:, None, None]
    tok = lane[None, :, None] * T + vec[None, None, :]
    u_base = u_ptr + bi * su_b + k * su_k + c3 * su_c
    dt_base = dt_ptr + bi * sdt_b + k * sdt_k + c3 * sdt_c
    gy_base = gy_ptr + bi * sgy_b + k * sgy_k + c3 * sgy_c
    gu_base = gu_ptr + bi * sgu_b + k * sgu_k + c3 * sgu_c
    gdt_base = gdt_ptr + bi * sgdt_b + k * sgdt_k + c3 * sgdt_c
    b_base = b_ptr + bi * sb_b + k * sb_k + c3 * 0
    c_base = c_ptr + bi * sc_b + k * sc_k + c3 * 0
    # dB / dC: one row of Q x VEC tokens per lane after the sum over the block's channels
    tok_q = lane[:, None, None] * T + vec[None, :, None] + tl.arange(0, Q)[None, None, :] * VEC
    gb_base = gb_ptr + bi * sg_b + k * sg_k + tok_q
    gc_base = gc_ptr + bi * sg_b + k * sg_k + tok_q
    run_base = run_ptr + ((bi * d_total + ch[:, None]) * n_runs + lane[None, :]) * N
    # the adjoint entering a tile from the one after it, kept by lane LANES-1
    carry_base = carry_ptr + (bi * d_total + ch[:, None]) * N + lane[None, :] * 0
    # dA: one partial per lane (only that lane adds to it); the launcher sums lanes and batch
    ga_base = ga_ptr + ((bi * d_total + ch[:, None]) * LANES_ + lane[None, :]) * N
    a_base = a_ptr + ch[:, None] * N
    bias = tl.load(bias_ptr + ch, mask=mc, other=0.)[:, None, None] if HAS_BIAS else 0.
    Dv = tl.load(d_ptr + ch, mask=mc, other=0.)[:, None, None] if HAS_D else 0.
    nxt = tl.broadcast_to(((lane + 1) % LANES_)[None, :], (BLOCK_D, LANES_))
    last = (lane == LANES_ - 1)[None, :] & mc[:, None]
    mc2 = mc[:, None] & (lane >= 0)[None, :]
    acc_gd = tl.zeros((BLOCK_D, LANES_, VEC), tl.float32)
    acc_gbias = tl.zeros((BLOCK_D, LANES_, VEC), tl.float32)
    for i in range(n_tiles):
        tile = n_tiles - 1 - i
        t0 = tile * (LANES_ * T)
        DT = ()
        DTU = ()
        GY = ()
        for q in tl.static_range(Q):
            t = t0 + q * VEC + tok
            m = mc[:, None, None] & (t < L)
            u = tl.load(u_base + t, mask=m, other=0.).to(tl.float32)
            dt = _load_tokens(dt_base, t, m, bias, HAS_BIAS, SOFTPLUS)
            DT = DT + _cols(dt, VEC)
            DTU = DTU + _cols(dt * u, VEC)
            GY = GY + _cols(tl.load(gy_base + t, mask=m, other=0.).to(tl.float32), VEC)
        dtsum = DT[0]
        for j in tl.static_range(1, T):
            dtsum += DT[j]
        WB = ()  # sum over states of g B (-> du, ddt)
        ZA = ()  # sum over states of g a h[t-1] A (-> ddt)
        for j in tl.static_range(T):
            WB = WB + (tl.zeros((BLOCK_D, LANES_), tl.float32),)
            ZA = ZA + (tl.zeros((BLOCK_D, LANES_), tl.float32),)
        run = tile * LANES_ + lane[None, :]
        mrun = mc[:, None] & (run < n_runs)
        for n in tl.range(N, loop_unroll_factor=1):
            An = tl.load(a_base + n, mask=mc[:, None], other=0.) * _LOG2E
            h = tl.load(run_base + tile * LANES_ * N + n, mask=mrun, other=0.)
            carry = tl.load(carry_base + n, mask=last & (i > 0), other=0.)
            a = ()
            hs = ()
            Bs = ()
            cg = ()
            for q in tl.static_range(Q):
                t = t0 + q * VEC + tok
                mt = (t < L) & (c3 >= 0)
                Bq = _cols(tl.load(b_base + n * sb_n + t, mask=mt, other=0.).to(tl.float32), VEC)
                Cq = _cols(tl.load(c_base + n * sc_n + t, mask=mt, other=0.).to(tl.float32), VEC)
                for j in tl.static_range(VEC):
                    aj = tl.exp2(DT[q * VEC + j] * An)
                    h = aj * h + DTU[q * VEC + j] * Bq[j]
                    a = a + (aj,)
                    hs = hs + (h,)
                    Bs = Bs + (Bq[j],)
                    cg = cg + (Cq[j] * GY[q * VEC + j],)
            # adjoint of each run from a zero carry, then the lanes' reverse scan
            r = cg[T - 1]
            for j in tl.static_range(T - 2, -1, -1):
                r = cg[j] + a[j + 1] * r
            decay = tl.exp2(dtsum * An)
            s = a[0] * r
            s = tl.where(last, decay * carry + s, s)
            _, starts = tl.associative_scan((decay, s), 1, _affine, reverse=True)
            starts = tl.gather(starts, nxt, 1)  # lane p: a g entering from run p+1
            tl.store(carry_base + n, starts, mask=last)
            g = cg[T - 1] + tl.where(last, carry, starts)
            gA = tl.zeros((BLOCK_D, LANES_), tl.float32)
            WBn = ()
            ZAn = ()
            GB = ()
            GC = ()
            for j in tl.static_range(T - 1, -1, -1):
                if j < T - 1:
                    g = cg[j] + a[j + 1] * g
                dec = g * (hs[j] - DTU[j] * Bs[j])  # g a[t] h[t-1]
                gA += dec * DT[j]
                WBn = (WB[j] + g * Bs[j],) + WBn
                ZAn = (ZA[j] + dec * An,) + ZAn
                GB = (g * DTU[j],) + GB
                GC = (GY[j] * hs[j],) + GC
            WB = WBn
            ZA = ZAn
            tl.store(ga_base + n, tl.load(ga_base + n, mask=mc2, other=0.) + gA, mask=mc2)
            # one atomic per (state, token) for the whole channel block
            gbs = ()
            gcs = ()
            for q in tl.static_range(Q):
                gbs = gbs + (_rows(_slice(GB, q * VEC, VEC), VEC),)
                gcs = gcs + (_rows(_slice(GC, q * VEC, VEC), VEC),)
            mq = t0 + tok_q < L
            tl.atomic_add(gb_base + n * sg_n + t0, tl.sum(_rows(gbs, Q), axis=0), mask=mq,
                          sem='relaxed')
            tl.atomic_add(gc_base + n * sg_n + t0, tl.sum(_rows(gcs, Q), axis=0), mask=mq,
                          sem='relaxed')
        for q in tl.static_range(Q):
            t = t0 + q * VEC + tok
            m = mc[:, None, None] & (t < L)
            u = tl.load(u_base + t, mask=m, other=0.).to(tl.float32)
            w = _rows(_slice(WB, q * VEC, VEC), VEC)
            gdt = w * u + _rows(_slice(ZA, q * VEC, VEC), VEC) * _LN2
            gyq = _rows(_slice(GY, q * VEC, VEC), VEC)
            gu = w * _rows(_slice(DT, q * VEC, VEC), VEC) + Dv * gyq
            acc_gd += gyq * u
            if SOFTPLUS:
                dt_in = tl.load(dt_base + t, mask=m, other=0.).to(tl.float32) + bias
                gdt = gdt * _softplus_grad(dt_in)
            gdt = tl.where(m, gdt, 0.)
            acc_gbias += gdt
            tl.store(gu_base + t, gu, mask=m)
            tl.store(gdt_base + t, gdt, mask=m)
    if HAS_D:
        tl.store(gd_ptr + bi * d_total + ch, tl.sum(tl.sum(acc_gd, axis=2), axis=1), mask=mc)
    if HAS_BIAS:
        tl.store(gbias_ptr + bi * d_total + ch, tl.sum(tl.sum(acc_gbias, axis=2), axis=1),
                 mask=mc)
