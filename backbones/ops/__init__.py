"""Operators of the backbones: the selective scan (one module per backend, one reference), the
scan routes that turn a 2-D map into the sequences it scans, and InternImage's deformable
convolution DCNv3 (pure PyTorch)."""
from .dcnv3 import DCNv3, dcnv3
from .routes import SCAN_ROUTES, ScanRoute, get_scan_route, register_scan_route
from .selective_scan import (
                             available_backends,
                             backend_names,
                             counting_scans,
                             fuses_routes,
                             register_scan_backend,
                             resolve_backend,
                             selective_scan,
                             selective_scan_routed,
                             selective_scan_torch,
)

__all__ = ['DCNv3', 'dcnv3', 'SCAN_ROUTES', 'ScanRoute', 'get_scan_route', 'register_scan_route',
           'available_backends', 'backend_names', 'counting_scans', 'register_scan_backend',
           'fuses_routes', 'resolve_backend', 'selective_scan', 'selective_scan_routed',
           'selective_scan_torch']
