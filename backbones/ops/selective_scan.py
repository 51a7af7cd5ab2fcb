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
  for tests: very slow, and then also eligible for ``'auto'``). Its routed form
  (:func:`.scan_triton.selective_scan_routed`) also moves the map into the routes' scan
  orders and back with its own tile-local kernels (coalesced, the routes as index maps).
* ``'auto'``: on a GPU for which a scan measurement is recorded (a ``scan`` record of
  ``tools/benchmark.py scan --device cuda`` in ``results/benchmarks/`` whose device is this
  GPU's name), the backends in order of their measured stage-1 forward+backward time
  (:func:`measured_order`); otherwise :data:`AUTO_ORDER`, ``triton, mamba_ssm, torch``: triton
  first by design (routes inside, nothing to compile; compiled for sm_90 it issues fewer
  instructions than mamba-ssm's kernel, ``tools/benchmark.py sass``), not by a measurement.
  The first backend of the order that can run is used; the choice and its reason are logged
  once.

A backend that cannot run (not installed, wrong device, a Triton kernel that does not
compile) falls back to ``torch``; the choice is logged once per (requested, used) pair.
Every call from the models goes through :func:`selective_scan` (SS2D's fused Triton path
steps aside while a FLOP count runs), so :func:`counting_scans` (the FLOP counter's
stand-in) sees all of them, whatever name a caller imported it under.
"""
import glob
import json
import logging
import os.path as osp
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch

from ..engine.log import log_once
from . import scan_mamba_ssm
from .scan_torch import selective_scan_torch

__all__ = ['selective_scan', 'selective_scan_torch', 'selective_scan_routed', 'fuses_routes',
           'available_backends', 'backend_names', 'resolve_backend', 'register_scan_backend',
           'counting_scans', 'measured_order', 'COUNT_OP']


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


#: Where ``'auto'`` looks for recorded scan measurements (``tools/benchmark.py scan``).
RECORDS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'results',
                   'benchmarks')
_measured = {}  # device name -> (order, reason) or None


def measured_order(device):
    """``(backends fastest first, reason)`` from the recorded ``scan`` measurements on this
    GPU (stage-1 forward+backward ms, summed over the records' stage-1 rows), or None where
    none is recorded (CPU, another GPU, no record)."""
    device = torch.device(device)
    if device.type != 'cuda':
        return None
    try:
        name = torch.cuda.get_device_name(device)
    except (RuntimeError, AssertionError):  # no driver: nothing recorded applies
        return None
    if name not in _measured:
        _measured[name] = _read_measurements(name)
    return _measured[name]


def _read_measurements(name):
    totals, files = {}, []
    for path in sorted(glob.glob(osp.join(RECORDS, '*.json'))):
        try:
            with open(path) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        if rec.get('benchmark') != 'scan' or rec.get('device') != f'cuda: {name}':
            continue
        rows = [r for r in rec.get('results', []) if r.get('stage') == 1 and 'backends' in r]
        for r in rows:
            for backend, v in r['backends'].items():
                totals.setdefault(backend, []).append(v['fwdbwd_ms'])
        if rows:
            files.append(osp.basename(path))
    # only backends measured in every row compare fairly
    n = max((len(v) for v in totals.values()), default=0)
    ms = {k: sum(v) for k, v in totals.items() if len(v) == n and k in _BACKENDS}
    if len(ms) < 2:
        return None
    order = sorted(ms, key=ms.get)
    reason = (f'measured on {name}: ' + ', '.join(f'{k} {ms[k]:.2f} ms' for k in order)
              + f' (stage-1 fwd+bwd, {", ".join(files)})')
    return order, reason


def resolve_backend(requested='auto', device=None, who='selective_scan'):
    """The backend that runs for ``requested`` on ``device``; logs the choice once."""
    if requested not in backend_names():
        raise ValueError(f'unknown selective-scan backend {requested!r}; valid: '
                         f'{backend_names()}')
    device = torch.device(device or 'cpu')
    candidates, basis = [requested], ''
    if requested == 'auto':
        measured = measured_order(device)
        if measured is None:
            candidates = AUTO_ORDER
            basis = '; default order, no scan measurement recorded for this device'
        else:
            candidates = measured[0] + [n for n in AUTO_ORDER if n not in measured[0]]
            basis = '; ' + measured[1]
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
                 + (f'; {why}' if why else '') + basis + ')')
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
    """Whether SS2D should run ``route`` through :func:`selective_scan_routed` (Triton's route
    kernels): ``backend`` resolves to triton on ``device``, the route has an index map, and no FLOP
    count is running (the counter's stand-in replaces :func:`selective_scan` calls only)."""
    if _counting[0] or backend not in ('auto', 'triton') or not route.has_positions:
        return False
    # the dispatcher's own wording, so the choice is logged once, not once per caller
    return resolve_backend(backend, device) == 'triton'
