"""Triton kernels that move a 2-D map into the K scan orders of a route and back, tile by tile.

A route is data: its index map (K, L) of map positions in scan order, and the inverse
(K, H*W) of scan positions per map position (-1: not visited). Both kernels walk the map in
(TH, TW) tiles, read or write the map's rows with contiguous addresses, and write or read
the scan order through the inverse map. Where a route runs down the map's columns (VMamba's
column-major routes), consecutive scan positions are consecutive *rows* of the map: there the
kernel transposes the tile (``tl.permute``; Triton moves it through shared memory) so that a
warp's lanes touch consecutive scan positions. So both sides of every copy are coalesced,
whatever the route, and nothing is gathered at a stride of one map row.

* :func:`route_gather_kernel`: map (b, Ks, c, H*W) -> scan order (b, K, c, L); ``Ks`` is 1
  (x, shared by the K routes: read once per tile) or K (per-route projections).
* :func:`route_scatter_kernel`: scan order (b, K, c, L) -> map, either summed over the routes
  (y, and the gradient of x) or one map per route (gradients of delta, B, C); positions a
  route does not visit get zero.
"""
from .scan_kernels import jit, tl

__all__ = ['route_gather_kernel', 'route_scatter_kernel']


@jit
def _tile(H, W, C, TH: tl.constexpr, TW: tl.constexpr, BLOCK_C: tl.constexpr):
    n_tw = tl.cdiv(W, TW)
    rows = (tl.program_id(0) // n_tw) * TH + tl.arange(0, TH)
    cols = (tl.program_id(0) % n_tw) * TW + tl.arange(0, TW)
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = rows[:, None] * W + cols[None, :]
    mp = (rows < H)[:, None] & (cols < W)[None, :]
    return p, mp, cs[:, None, None], (cs < C)[:, None, None] & mp[None]


@jit
def route_gather_kernel(src_ptr, s_b, s_k, s_c, dst_ptr, d_b, d_k, d_c, inv_ptr, trans_ptr,
                        C, H, W, K,
                        SHARED: tl.constexpr, BLOCK_C: tl.constexpr, TH: tl.constexpr,
                        TW: tl.constexpr):
    p, mp, c3, m3 = _tile(H, W, C, TH, TW, BLOCK_C)
    bi = tl.program_id(2)
    src = src_ptr + bi * s_b + c3 * s_c + p[None]
    dst = dst_ptr + bi * d_b + c3 * d_c
    if SHARED:
        v = tl.load(src, mask=m3, other=0.)
    for k in range(K):
        if not SHARED:
            v = tl.load(src + k * s_k, mask=m3, other=0.)
        pos = tl.load(inv_ptr + k * H * W + p, mask=mp, other=-1)
        ok = m3 & (pos >= 0)[None]
        if tl.load(trans_ptr + k) != 0:
            tl.store(dst + k * d_k + tl.permute(pos, (1, 0))[None], tl.permute(v, (0, 2, 1)),
                     mask=tl.permute(ok, (0, 2, 1)))
        else:
            tl.store(dst + k * d_k + pos[None], v, mask=ok)


@jit
def route_scatter_kernel(src_ptr, s_b, s_k, s_c, dst_ptr, d_b, d_k, d_c, inv_ptr, trans_ptr,
                         C, H, W, K,
                         SUM: tl.constexpr, BLOCK_C: tl.constexpr, TH: tl.constexpr,
                         TW: tl.constexpr):
    p, mp, c3, m3 = _tile(H, W, C, TH, TW, BLOCK_C)
    bi = tl.program_id(2)
    src = src_ptr + bi * s_b + c3 * s_c
    dst = dst_ptr + bi * d_b + c3 * d_c + p[None]
    acc = tl.zeros((BLOCK_C, TH, TW), tl.float32)
    for k in range(K):
        pos = tl.load(inv_ptr + k * H * W + p, mask=mp, other=-1)
        ok = m3 & (pos >= 0)[None]
        if tl.load(trans_ptr + k) != 0:
            v = tl.permute(tl.load(src + k * s_k + tl.permute(pos, (1, 0))[None],
                                   mask=tl.permute(ok, (0, 2, 1)), other=0.), (0, 2, 1))
        else:
            v = tl.load(src + k * s_k + pos[None], mask=ok, other=0.)
        if SUM:
            acc += v.to(tl.float32)
        else:
            tl.store(dst + k * d_k, v, mask=m3)
    if SUM:
        tl.store(dst, acc, mask=m3)
