"""Selective scan (the S6 recurrence of Mamba) with interchangeable backends.

    y[t] = C[t] . h[t] + D * u[t],   h[t] = exp(dt[t] * A) * h[t-1] + dt[t] * B[t] * u[t],
    dt = softplus(delta + delta_bias)  (softplus optional)

Tensor conventions are those of ``mamba_ssm.selective_scan_fn``: u, delta (batch, dim, L);
A (dim, N); B, C (batch, groups, N, L) or (batch, N, L); D, delta_bias (dim,). Every backend
computes in float32 and returns float32 (batch, dim, L).

Backends (one module each; :func:`register_scan_backend` adds more):

* ``'torch'`` (:mod:`.scan_torch`): pure PyTorch, CPU and GPU, always available.
* ``'mamba_ssm'`` (:mod:`.scan_mamba_ssm`): the CUDA kernel of the ``mamba-ssm`` package.
* ``'triton'`` (:mod:`.scan_triton`): Triton kernels compiled at first use for the GPU present
  (nothing to build); CPU tensors only under ``TRITON_INTERPRET=1`` (Triton's interpreter,
  for tests: very slow, and then also eligible for ``'auto'``). Its fused form
  (:func:`.scan_triton.selective_scan_routed`) also runs the scan routes inside the kernels.
* ``'auto'``: the first backend of :data:`AUTO_ORDER` that can run on the tensors' device:
  ``triton, mamba_ssm, torch``. The intent is the order of measured speed on the GPU
  present, but the order is PROVISIONAL: no GPU has timed the triton backend yet, so it is
  first by design (fused routes, nothing to compile) rather than by measurement.
  ``tools/benchmark.py scan --device cuda`` (every backend at the VMamba stage shapes) is
  the benchmark that decides it.

A backend that cannot run (not installed, wrong device, a Triton kernel that does not
compile) falls back to ``torch``; the choice is logged once per (requested, used) pair.
Every call from the models goes through :func:`selective_scan` (SS2D's fused Triton path
steps aside while a FLOP count runs), so :func:`counting_scans` (the FLOP counter's
stand-in) sees all of them, whatever name a caller imported it under.
"""
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch

from ..engine.log import log_once
from . import scan_mamba_ssm
from .scan_torch import selective_scan_torch

__all__ = ['selective_scan', 'selective_scan_torch', 'selective_scan_routed', 'fuses_routes',
           'available_backends', 'backend_names', 'resolve_backend', 'register_scan_backend',
           'counting_scans', 'COUNT_OP']


@dataclass(frozen=True)
class ScanBackend:
    """``fn(u, delta, A, B, C, D, delta_bias, delta_softplus)``; ``unavailable(device)``
    returns None when the backend can run on ``device`` (None: importable at all), else why."""
    name: str
    fn: Callable
    unavailable: Callable


_BACKENDS = {}
#: Preference of ``'auto'``, fastest first; a backend that cannot run is skipped.
AUTO_ORDER = ['mamba_ssm', 'torch']


def register_scan_backend(name, fn, unavailable=lambda device: None, auto_rank=None):
    """Make ``fn`` selectable as ``scan_backend=name``; ``auto_rank`` inserts it into
    :data:`AUTO_ORDER` at that position (None: never chosen by ``'auto'``)."""
    if name == 'auto' or name in _BACKENDS:
        raise KeyError(f'selective-scan backend {name!r} is already registered')
    _BACKENDS[name] = ScanBackend(name, fn, unavailable)
    if auto_rank is not None:
        AUTO_ORDER.insert(auto_rank, name)


def backend_names():
    """Every value ``scan_backend`` accepts."""
    return ('auto',) + tuple(_BACKENDS)


def available_backends(device=None):
    """Names of the backends that can run here (on ``device`` if given); torch always can."""
    return tuple(n for n, b in _BACKENDS.items() if b.unavailable(device) is None)


def resolve_backend(requested='auto', device=None, who='selective_scan'):
    """The backend that runs for ``requested`` on ``device``; logs the choice once."""
    if requested not in backend_names():
        raise ValueError(f'unknown selective-scan backend {requested!r}; valid: '
                         f'{backend_names()}')
    device = torch.device(device or 'cpu')
    candidates = AUTO_ORDER if requested == 'auto' else [requested]
    reasons = []
    for name in candidates:
        why = _BACKENDS[name].unavailable(device)
        if why is None:
            break
        reasons.append(f'{name}: {why}')
    else:
        name = 'torch'
    why = '; '.join(reasons)
    if requested not in ('auto', name):
        log_once(f'{who}: scan backend {requested} requested but unavailable: {why}; '
                 f'falling back to the pure-PyTorch scan', logging.WARNING)
    else:
        log_once(f'{who}: selective-scan backend {name!r} (requested {requested!r}'
                 + (f'; {why})' if why else ')'))
    return name


def _mamba_ssm_unavailable(device):
    if scan_mamba_ssm.load() is None:
        return f'mamba_ssm is not importable ({scan_mamba_ssm.error()})'
    if device is not None and torch.device(device).type != 'cuda':
        return f'mamba_ssm needs CUDA tensors, got {torch.device(device).type}'
    return None


register_scan_backend('torch', selective_scan_torch)
register_scan_backend('mamba_ssm', scan_mamba_ssm.selective_scan_mamba_ssm,
                      _mamba_ssm_unavailable)


# ---------------------------------------------------------------------------------------
# Counting (tools/get_flops.py): a shape-only stand-in that the FLOP tracer names
# ---------------------------------------------------------------------------------------
class SelectiveScanCount(torch.autograd.Function):
    """Zeros of the output's shape; traced as ``COUNT_OP`` with the scan's inputs."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D):  # noqa: N803 - the SSM's own names
        return torch.zeros_like(u, dtype=torch.float32)


COUNT_OP = f'prim::PythonOp.{SelectiveScanCount.__name__}'
_counting = [0]


@contextmanager
def counting_scans():
    """While active, every :func:`selective_scan` runs the stand-in (for FLOP counting).
    Yields the op name to give the counter a handle for."""
    _counting[0] += 1
    try:
        yield COUNT_OP
    finally:
        _counting[0] -= 1


def selective_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                   backend='auto', chunk_size=None):
    """Selective scan with the requested (or best available) backend; float32 output."""
    if _counting[0]:
        return SelectiveScanCount.apply(u, delta, A, B, C,
                                        D if D is not None else torch.zeros(0))
    used = resolve_backend(backend, u.device)
    if used == 'torch':
        return selective_scan_torch(u, delta, A, B, C, D, delta_bias, delta_softplus,
                                    chunk_size)
    return _BACKENDS[used].fn(u, delta, A, B, C, D, delta_bias, delta_softplus)


# The Triton backend registers last and never breaks the import: its module imports without
# triton (and then says why it cannot run); anything else going wrong is kept as the reason.
try:
    from . import scan_triton
    _triton_fn, _triton_unavailable = scan_triton.selective_scan_triton, scan_triton.unavailable
    selective_scan_routed = scan_triton.selective_scan_routed
except Exception as _err:  # noqa: BLE001
    _triton_why = f'the triton backend failed to import ({type(_err).__name__}: {_err})'
    _triton_fn, _triton_unavailable = None, lambda device: _triton_why
    selective_scan_routed = None
register_scan_backend('triton', _triton_fn, _triton_unavailable, auto_rank=0)


def fuses_routes(backend, route, device):
    """Whether SS2D should run ``route`` inside the kernels (:func:`selective_scan_routed`):
    ``backend`` resolves to triton on ``device``, the route has an index map, and no FLOP
    count is running (the counter's stand-in replaces :func:`selective_scan` calls only)."""
    if _counting[0] or backend not in ('auto', 'triton') or not route.has_positions:
        return False
    # the dispatcher's own wording, so the choice is logged once, not once per caller
    return resolve_backend(backend, device) == 'triton'
