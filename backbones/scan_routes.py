"""Scan routes: how a 2-D feature map becomes K 1-D sequences for the selective scan, and back.

A route is selected by name (``SS2D(scan_route='cross2d')``), so VMamba-style variants
that only differ in their scanning order (LocalVMamba's windowed scans, EfficientVMamba's
atrous scans, PlainMamba's zig-zag) plug in with :func:`register_scan_route` without
touching the SSM block. Each route has

* ``num_routes``: K, the number of sequences (it sets the shapes of the per-route SSM
  parameters, so checkpoints are tied to it);
* ``scan(x)``: (B, C, H, W) -> (B, K, C, H*W);
* ``merge(ys, H, W)``: (B, K, C, H*W) -> (B, C, H*W), putting every sequence back in
  row-major order and summing them.

Routes are written with plain differentiable tensor ops, so autograd provides the backward
(the merge is the adjoint of the scan).
"""
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

    def scan(self, x):
        raise NotImplementedError

    def merge(self, ys, H, W):
        raise NotImplementedError


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

    def scan(self, x):
        return x.flatten(2).unsqueeze(1)

    def merge(self, ys, H, W):
        return ys[:, 0]


@register_scan_route('raster_bidir')
class BidirectionalRasterScan(ScanRoute):
    """Row-major forwards and backwards (Vim-style bidirectional scan)."""
    num_routes = 2

    def scan(self, x):
        rows = x.flatten(2)
        return torch.stack([rows, rows.flip(-1)], dim=1)

    def merge(self, ys, H, W):
        return ys[:, 0] + ys[:, 1].flip(-1)
