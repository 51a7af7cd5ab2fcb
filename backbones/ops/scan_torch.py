"""The ``torch`` selective-scan backend: pure PyTorch, CPU and GPU, always available.

It runs in float32 whatever the input dtype (the recurrence diverges in fp16; the VMamba
release also forces fp32) and is a custom autograd function that stores only its inputs plus
one state per segment, and recomputes the states segment by segment in backward, like the
CUDA kernel does. Inside a segment the sequence is cut into chunks of T tokens laid out
time-first, so one Python step updates the same position of every chunk at once (T steps
instead of L), then a short scan over chunk ends (recursive for long sequences) carries the
state across chunks. Decays only ever appear as products of ``exp(dt * A)`` factors (running
products inside a chunk), never as ``exp`` of a running sum, so nothing overflows. Segments
are sized to stay in cache on CPU (``SEGMENT_ELEMENTS_CPU``) and to bound the working memory
on GPU (``SEGMENT_ELEMENTS``); memory is linear in L.
"""
import math

import torch
import torch.nn.functional as F

__all__ = ['selective_scan_torch', 'check_shapes']

#: Elements of one (batch, dim, N, tokens) state tensor per segment of the torch backend:
#: bounds its working memory (a handful of such tensors live at once; 2**24 fp32 = 64 MiB).
SEGMENT_ELEMENTS = 2 ** 24
SEGMENT_ELEMENTS_CPU = 2 ** 20
#: Chunk-end scans longer than this recurse instead of looping in Python.
_CARRY_LOOP_MAX = 64


# ---------------------------------------------------------------------------------------
# The chunked linear recurrence  h[t] = a[t] * h[t-1] + x[t]  (reverse: h[t+1])
# ---------------------------------------------------------------------------------------
def _to_chunks(x, T, fill):
    """(..., L) -> (T, ..., ceil(L/T)); chunk c holds tokens c*T .. c*T+T-1, padded."""
    L = x.shape[-1]
    nc = -(-L // T)
    if nc * T != L:
        x = F.pad(x, (0, nc * T - L), value=fill)
    return x.unflatten(-1, (nc, T)).movedim(-1, 0).contiguous()


def _from_chunks(x, L):
    """Inverse of :func:`_to_chunks`."""
    return x.movedim(0, -1).flatten(-2)[..., :L]


def _exclusive_scan(a, x, h0, reverse, T):
    """State entering each position of the recurrence along the last dim (carry in ``h0``)."""
    n = a.shape[-1]
    out = torch.empty_like(x)
    if n <= _CARRY_LOOP_MAX:
        s = h0
        for c in (reversed(range(n)) if reverse else range(n)):
            out[..., c] = s
            s = torch.addcmul(x[..., c], a[..., c], s)
        return out
    a2, x2 = _to_chunks(a, T, 1.0), _to_chunks(x, T, 0.0)  # padding is the identity step
    _scan_(a2, x2, h0, reverse)
    incl = _from_chunks(x2, n)
    if reverse:
        out[..., :-1], out[..., -1] = incl[..., 1:], h0
    else:
        out[..., 1:], out[..., 0] = incl[..., :-1], h0
    return out


def _scan_(a, h, h0, reverse=False, cdim=-1):
    """In place on chunked ``h`` (T, ...): ``h[t] = a[t] * h[t-1] + h[t]``, ``h[-1] = h0``.

    Dim ``cdim`` of ``h[t]`` indexes the chunks (chunk c holds global time c*T + t).
    ``reverse`` runs the mirror recurrence ``h[t] = a[t] * h[t+1] + h[t]`` from the end
    (``h0`` enters after the last token). ``a`` is overwritten with the cumulative decays.
    Returns the state at the far end.
    """
    T = a.shape[0]
    # 1) every chunk from a zero state, all chunks at once: T Python steps. Alongside,
    #    turn a into the decay from the chunk boundary: a product of factors in (0, 1],
    #    so it cannot overflow (a loop: torch.cumprod is slow on CPU along dim 0)
    for t in (range(T - 2, -1, -1) if reverse else range(1, T)):
        p = t + 1 if reverse else t - 1
        h[t].addcmul_(a[t], h[p])
        a[t].mul_(a[p])
    edge = 0 if reverse else -1
    # 2) the state entering each chunk, then its decayed contribution to every token
    carry = _exclusive_scan(a[edge].movedim(cdim, -1), h[edge].movedim(cdim, -1), h0,
                            reverse, T)
    h.addcmul_(a, carry.movedim(-1, cdim).unsqueeze(0))
    return h[edge].select(cdim, edge)


# ---------------------------------------------------------------------------------------
# The torch backend: forward and hand-written backward, segment by segment
# ---------------------------------------------------------------------------------------
def _chunk_size(L):
    # ~sqrt(L) balances the in-chunk steps (T) against the chunk-end scan (L / T)
    return int(min(64, max(4, 2 ** round(math.log2(max(L, 1)) / 2))))


def _segment_elements(device):
    # CPU: segments that stay in cache beat fewer, larger ones; GPU: fewer kernel launches
    return SEGMENT_ELEMENTS if device.type == 'cuda' else SEGMENT_ELEMENTS_CPU


class _Segment:
    """Chunked views of the tokens [s0, s1) of the inputs, shaped for broadcasting.

    The state layout is (T, b, g, nc, dg, N): chunk-time first (one Python step touches
    every chunk), d = g * dg channels in g groups, N last so that the contractions with B
    and C are batched mat-vec products. Per-channel terms are (T, b, g, nc, dg, 1), B and
    C (T, b, g, nc, 1, N).
    """

    def __init__(self, ctx, s0, s1, u, delta, delta_bias, Bm, Cm):
        self.T, self.g, self.L = ctx.T, ctx.groups, s1 - s0
        dt = delta[..., s0:s1]
        if delta_bias is not None:
            dt = dt + delta_bias[:, None]
        self.dt_raw = dt
        if ctx.softplus:
            dt = F.softplus(dt)
        self.dt = self.chunk_channels(dt)
        self.u = self.chunk_channels(u[..., s0:s1])
        self.B = self.chunk_states(Bm[..., s0:s1])
        self.C = self.chunk_states(Cm[..., s0:s1])

    def chunk_channels(self, x):
        return _to_chunks(x, self.T, 0.0).unflatten(2, (self.g, -1)).transpose(3, 4) \
            .contiguous().unsqueeze(-1)

    def chunk_states(self, x):
        return _to_chunks(x, self.T, 0.0).transpose(3, 4).contiguous().unsqueeze(-2)

    def unchunk_channels(self, x):
        return _from_chunks(x.squeeze(-1).transpose(3, 4).flatten(2, 3), self.L)

    def unchunk_states(self, x):
        return _from_chunks(x.squeeze(-1).transpose(3, 4), self.L)

    def decay_and_input(self, A):
        """a = exp(dt * A) and x = dt * u * B, both (T, b, g, nc, dg, N)."""
        return (self.dt * A).exp_(), (self.dt * self.u) * self.B


class _SelectiveScanTorch(torch.autograd.Function):

    @staticmethod
    def forward(ctx, u, delta, A, Bm, Cm, D, delta_bias, softplus, chunk_size):
        b, d, L = u.shape
        g, N = Bm.shape[1], A.shape[1]
        ctx.groups, ctx.softplus = g, softplus
        # segments of whole chunks, sized so one state tensor stays under the budget
        seg = max(1, _segment_elements(u.device) // max(b * d * N, 1))
        ctx.T = T = chunk_size or _chunk_size(min(seg, L))
        seg = -(-seg // T) * T
        ctx.bounds = [(s, min(s + seg, L)) for s in range(0, L, seg)]
        Ag = A.view(g, 1, d // g, N)
        h = u.new_zeros(b, g, d // g, N)
        starts, ys = [], []
        for s0, s1 in ctx.bounds:
            sg = _Segment(ctx, s0, s1, u, delta, delta_bias, Bm, Cm)
            a, x = sg.decay_and_input(Ag)
            starts.append(h)
            h = _scan_(a, x, h, cdim=2).clone()  # x now holds the states
            ys.append(sg.unchunk_channels(torch.matmul(x, sg.C.transpose(-1, -2))))
        y = torch.cat(ys, -1)
        if D is not None:
            y = y + D[:, None] * u
        ctx.save_for_backward(u, delta, A, Bm, Cm, D, delta_bias, torch.stack(starts))
        return y

    @staticmethod
    def backward(ctx, gy):
        u, delta, A, Bm, Cm, D, delta_bias, starts = ctx.saved_tensors
        gy = gy.float().contiguous()
        b, d, L = u.shape
        g, N = Bm.shape[1], A.shape[1]
        Ag = A.view(g, 1, d // g, N)
        gu, gdelta = torch.empty_like(u), torch.empty_like(delta)
        gB, gC = torch.empty_like(Bm), torch.empty_like(Cm)
        gA = A.new_zeros(g, d // g, N)
        g_next = u.new_zeros(b, g, d // g, N)  # adjoint of the first state after the segment
        a_next = u.new_ones(b, g, d // g, N)   # decay of the first token after the segment
        for k in reversed(range(len(ctx.bounds))):
            s0, s1 = ctx.bounds[k]
            sg = _Segment(ctx, s0, s1, u, delta, delta_bias, Bm, Cm)
            a, x = sg.decay_and_input(Ag)
            # the adjoint runs backwards and is decayed by the *next* token's factor
            an = torch.empty_like(a)
            an[:-1] = a[1:]
            an[-1, :, :, :-1] = a[0, :, :, 1:]
            an[-1, :, :, -1] = a_next
            a_next = a[0, :, :, 0].clone()
            h = x.clone()
            _scan_(a, h, starts[k], cdim=2)
            del a
            gyc = sg.chunk_channels(gy[..., s0:s1])
            gh = gyc * sg.C
            g_next = _scan_(an, gh, g_next, reverse=True, cdim=2).clone()
            del an
            q = torch.sub(h, x).mul_(gh)  # d loss / d(dt * A): a[t] * h[t-1] == h[t] - x[t]
            del x
            gA += (q * sg.dt).sum((0, 1, 3))
            ghB = torch.matmul(gh, sg.B.transpose(-1, -2))
            gdt = (q * Ag).sum(-1, keepdim=True).addcmul_(ghB, sg.u)
            del q
            gu[..., s0:s1] = sg.unchunk_channels(ghB * sg.dt)
            gB[..., s0:s1] = sg.unchunk_states(torch.matmul(gh.transpose(-1, -2), sg.dt * sg.u))
            gC[..., s0:s1] = sg.unchunk_states(torch.matmul(h.transpose(-1, -2), gyc))
            del gh, h
            gdt = sg.unchunk_channels(gdt)
            if ctx.softplus:
                gdt = gdt * torch.sigmoid(sg.dt_raw)
            gdelta[..., s0:s1] = gdt
        gD = gdb = None
        if D is not None:
            gu += D[:, None] * gy
            gD = (gy * u).sum((0, 2))
        if delta_bias is not None:
            gdb = gdelta.sum((0, 2))
        return gu, gdelta, gA.view(d, N), gB, gC, gD, gdb, None, None


def selective_scan_torch(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                         chunk_size=None):
    """Pure-PyTorch selective scan, computed in float32; returns float32 (batch, dim, L)."""
    with torch.autocast(device_type=u.device.type, enabled=False):
        u, delta, A = u.float().contiguous(), delta.float().contiguous(), A.float().contiguous()
        if B.dim() == 3:
            B = B.unsqueeze(1)
        if C.dim() == 3:
            C = C.unsqueeze(1)
        B, C = B.float().contiguous(), C.float().contiguous()
        D = D.float().contiguous() if D is not None else None
        delta_bias = delta_bias.float().contiguous() if delta_bias is not None else None
        check_shapes(u, delta, A, B, C, D, delta_bias)
        return _SelectiveScanTorch.apply(u, delta, A, B, C, D, delta_bias,
                                         bool(delta_softplus), chunk_size)


def check_shapes(u, delta, A, B, C, D, delta_bias):
    b, d, L = u.shape
    N = A.shape[-1]
    if delta.shape != u.shape or A.shape != (d, N):
        raise ValueError(f'selective_scan: u {tuple(u.shape)}, delta {tuple(delta.shape)} must '
                         f'match and A must be (dim, N), got {tuple(A.shape)}')
    for name, t in (('B', B), ('C', C)):
        if t.dim() != 4 or t.shape[0] != b or t.shape[2:] != (N, L) or d % t.shape[1]:
            raise ValueError(f'selective_scan: {name} must be (batch, groups, N, L) with groups '
                             f'dividing dim={d}, got {tuple(t.shape)}')
    if B.shape[1] != C.shape[1]:
        raise ValueError('selective_scan: B and C must have the same number of groups')
    for name, t in (('D', D), ('delta_bias', delta_bias)):
        if t is not None and t.shape != (d,):
            raise ValueError(f'selective_scan: {name} must be (dim,), got {tuple(t.shape)}')
