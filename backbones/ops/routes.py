"""Scan routes: how a 2-D feature map becomes K 1-D sequences for the selective scan, and back.

A route is selected by name (``SS2D(scan_route='cross2d')``), so VMamba-style variants
that only differ in their scanning order (LocalVMamba's windowed scans, EfficientVMamba's
atrous scans, PlainMamba's zig-zag) plug in with :func:`register_scan_route` without
touching the SSM block. Each route has

* ``num_routes``: K, the number of sequences (it sets the shapes of the per-route SSM
  parameters, so checkpoints are tied to it);
* ``scan(x)``: (B, C, H, W) -> (B, K, C, H*W);
* ``merge(ys, H, W)``: (B, K, C, H*W) -> (B, C, H*W), putting every sequence back in
  row-major order and summing them;
* ``positions(H, W)``: the route as data, a (K, L) LongTensor of the flat row-major
  positions that sequence k visits, in order (``index(H, W, device)`` caches it per device).

A route is its index map: ``scan`` and ``merge`` default to a gather and a scatter-add
through it, and the Triton backend's fused path (:func:`backbones.ops.scan_triton.
selective_scan_routed`) reads and merges the map through it inside the kernel, so a new
family (windowed local scans, atrous phases, zig-zag) needs only ``positions``. The routes
below keep hand-written ``scan`` / ``merge`` (flips and transposes, no index tensor), which
equal the gather / scatter-add of their maps. Everything is plain differentiable tensor ops,
so autograd provides the backward (the merge is the adjoint of the scan).
"""
from collections import OrderedDict

import torch

__all__ = ['ScanRoute', 'SCAN_ROUTES', 'register_scan_route', 'get_scan_route']

SCAN_ROUTES = {}


def register_scan_route(name):
    """Class decorator: make a :class:`ScanRoute` subclass selectable by ``name``."""
    def wrap(cls):
        if name in SCAN_ROUTES:
            raise KeyError(f'scan route {name!r} is already registered')
        cls.name = name
        SCAN_ROUTES[name] = cls()
        return cls
    return wrap


def get_scan_route(name):
    if name not in SCAN_ROUTES:
        raise ValueError(f'unknown scan route {name!r}; valid: {sorted(SCAN_ROUTES)}')
    return SCAN_ROUTES[name]


class ScanRoute:
    name = None
    num_routes = None
    #: Index maps kept per route: input sizes vary per image in detection, so the cache is a
    #: small LRU (a 200x334 map with K=4 is 2 MB of int64).
    index_cache_size = 16

    def positions(self, H, W):
        """(K, L) LongTensor: the flat row-major positions of the H*W map that sequence k
        visits, in order."""
        raise NotImplementedError(f'scan route {self.name!r} defines no index map')

    @property
    def has_positions(self):
        """Whether this route defines its index map (every built-in route does)."""
        return type(self).positions is not ScanRoute.positions

    def index(self, H, W, device='cpu'):
        """:meth:`positions` on ``device``, cached per (H, W, device); the tensor carries
        ``map_shape = (H, W)``."""
        if '_index_cache' not in self.__dict__:
            self._index_cache = OrderedDict()
        key = (int(H), int(W), torch.device(device))
        cache = self._index_cache
        if key in cache:
            cache.move_to_end(key)
        else:
            cache[key] = self.positions(H, W).to(key[2])
            # the map it indexes: the Triton backend tiles the map by it
            cache[key].map_shape = key[:2]
            if len(cache) > self.index_cache_size:
                cache.popitem(last=False)
        return cache[key]

    def scan(self, x):
        """Gather the K sequences through the index map."""
        B, C, H, W = x.shape
        return x.flatten(2)[:, :, self.index(H, W, x.device)].transpose(1, 2)

    def merge(self, ys, H, W):
        """Scatter-add the K sequences back through the index map."""
        B, K, C, L = ys.shape
        flat = ys.transpose(1, 2).reshape(B, C, K * L)
        return flat.new_zeros(B, C, H * W).index_add_(2, self.index(H, W, ys.device).flatten(),
                                                      flat)


def _row_and_col_major(H, W):
    """(2, H*W) positions: row-major, then column-major order."""
    rows = torch.arange(H * W)
    return torch.stack([rows, rows.view(H, W).t().flatten()])


def _col_major(x, H, W):
    """(..., H*W) row-major -> (..., W*H) column-major."""
    return x.unflatten(-1, (H, W)).transpose(-1, -2).flatten(-2)


def _row_major(x, H, W):
    """Inverse of :func:`_col_major`."""
    return x.unflatten(-1, (W, H)).transpose(-1, -2).flatten(-2)


@register_scan_route('cross2d')
class CrossScan2D(ScanRoute):
    """VMamba's SS2D: row-major, column-major, and both reversed (in that order)."""
    num_routes = 4

    def positions(self, H, W):
        rc = _row_and_col_major(H, W)
        return torch.cat([rc, rc.flip(-1)])

    def scan(self, x):
        H, W = x.shape[-2:]
        rows = x.flatten(2)
        cols = _col_major(rows, H, W)
        xs = torch.stack([rows, cols], dim=1)
        return torch.cat([xs, xs.flip(-1)], dim=1)

    def merge(self, ys, H, W):
        ys = ys[:, 0:2] + ys[:, 2:4].flip(-1)
        return ys[:, 0] + _row_major(ys[:, 1], H, W)


@register_scan_route('raster')
class RasterScan(ScanRoute):
    """One row-major sequence (VMamba's single-direction ablation)."""
    num_routes = 1

    def positions(self, H, W):
        return torch.arange(H * W)[None]

    def scan(self, x):
        return x.flatten(2).unsqueeze(1)

    def merge(self, ys, H, W):
        return ys[:, 0]


@register_scan_route('raster_bidir')
class BidirectionalRasterScan(ScanRoute):
    """Row-major forwards and backwards (Vim-style bidirectional scan)."""
    num_routes = 2

    def positions(self, H, W):
        rows = torch.arange(H * W)
        return torch.stack([rows, rows.flip(-1)])

    def scan(self, x):
        rows = x.flatten(2)
        return torch.stack([rows, rows.flip(-1)], dim=1)

    def merge(self, ys, H, W):
        return ys[:, 0] + ys[:, 1].flip(-1)
