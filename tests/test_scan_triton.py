"""The triton selective-scan backend (backbones/ops/scan_triton.py) and the fused routes.

The kernel tests (``test_kernel_*``) run on CUDA when there is a GPU, else in Triton's CPU
interpreter. The interpreter must be chosen before triton is first imported (triton's own
``tl.sum``, ``tl.zeros`` ... are JIT functions made at its import), and a pytest process has
usually imported it already (``import backbones`` does). So on a CPU machine
:func:`test_in_triton_interpreter` reruns them in a fresh process with TRITON_INTERPRET=1 and
they skip here; ``TRITON_INTERPRET=1 pytest tests/test_scan_triton.py`` runs them in-process.
Every kernel result is checked against the float64 step reference, gradients included.
"""
import json
import logging
import os
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

from backbones.engine import log
from backbones.models.vmamba import SS2D
from backbones.ops import counting_scans, fuses_routes, resolve_backend, scan_triton, selective_scan
from backbones.ops.reference import reference_scan
from backbones.ops.routes import SCAN_ROUTES, ScanRoute, get_scan_route
from conftest import REPO

AUTO_ORDER = sys.modules['backbones.ops.selective_scan'].AUTO_ORDER
HAS_TRITON = scan_triton.unavailable() is None
INTERPRETED = scan_triton.interpreting()
ON_CUDA = HAS_TRITON and torch.cuda.is_available() and not INTERPRETED
DEVICE = 'cuda' if ON_CUDA else 'cpu'
kernels = pytest.mark.skipif(not (HAS_TRITON and (INTERPRETED or ON_CUDA)),
                             reason='kernels run on CUDA or in test_in_triton_interpreter')
cuda_only = pytest.mark.skipif(not ON_CUDA, reason='needs CUDA (full shapes)')

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


@pytest.fixture(autouse=True)
def kernels_did_not_fall_back(monkeypatch):
    """A kernel test must test the kernels: fail if a call fell back to the torch backend."""
    monkeypatch.setattr(scan_triton, '_broken', {})
    yield
    assert not scan_triton._broken, scan_triton._broken


@pytest.fixture
def log_records(monkeypatch):
    """Messages logged through mmengine's current logger during the test."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance(f'test_scan_triton_{id(monkeypatch)}', log_level='INFO')
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    monkeypatch.setattr(log, '_logged', set())
    yield records
    logger.removeHandler(handler)


def make_inputs(b=1, K=2, dg=2, L=37, N=4, dtype=torch.float32, seed=0, flat_bc=False):
    """Scan inputs with K groups of dg channels; ``flat_bc``: 3-D B and C (K must be 1)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    d = K * dg
    bc = (b, N, L) if flat_bc else (b, K, N, L)
    ins = dict(u=r(b, d, L).to(dtype), delta=(r(b, d, L) * 0.5).to(dtype),
               A=-(torch.rand(d, N, generator=g) * 3 + 0.1), B=r(*bc).to(dtype),
               C=r(*bc).to(dtype), D=r(d), delta_bias=r(d) * 0.3)
    return {k: v.to(DEVICE).requires_grad_() for k, v in ins.items()}


def forward_backward(fn, ins, gy, **kw):
    """Output and the gradient of <y, gy> for every input given (None ones are skipped)."""
    y = fn(**ins, **kw)
    wrt = {k: v for k, v in ins.items() if v is not None}
    return y, dict(zip(wrt, torch.autograd.grad((y * gy.to(y.dtype)).sum(), list(wrt.values()))))


def assert_close_scaled(got, ref, tol, what):
    """Compare relative to the reference's scale (gradients differ by orders of magnitude)."""
    scale = ref.double().abs().max().clamp(min=1.0)
    torch.testing.assert_close(got.double().cpu() / scale, ref.double().cpu() / scale,
                               atol=tol, rtol=tol, msg=lambda m: f'{what}: {m}')


def check_against_reference(ins, tol=1e-4, grad_tol=None, **kw):
    b, d, L = ins['u'].shape
    gy = torch.randn(b, d, L, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    y, grads = forward_backward(scan_triton.selective_scan_triton, ins, gy, **kw)
    kw.pop('block_l', None)
    y_ref, grads_ref = forward_backward(reference_scan, ins, gy.double(), **kw)
    assert y.dtype == torch.float32
    assert_close_scaled(y, y_ref, tol, 'y')
    for k, g in grads.items():
        assert g.dtype == ins[k].dtype, k
        assert_close_scaled(g, grads_ref[k], grad_tol or tol, f'grad of {k}')


# ---- the kernels against the step reference -----------------------------------------------
@kernels
@pytest.mark.parametrize('N,K,dg,L,block_l', [
    (16, 2, 3, 129, 32),    # VMamba V0's d_state, 2 groups of 3 channels, 5 tiles (the last
                            # one partial), a program's 4 channels only partly used
    (1, 4, 3, 129, 16),     # VMamba V2's d_state, K=4 routes, 9 tiles
    (4, 1, 4, 37, 16),      # full blocks of 4 channels: 2 full tiles without masks, then a
                            # tile with a partial run and a missing one
    (1, 1, 2, 37, None),    # d_state 1, the default tile (one tile)
    (3, 2, 2, 1, None),     # a single token, d_state not a power of two
])
def test_kernel_matches_reference(N, K, dg, L, block_l):
    check_against_reference(make_inputs(K=K, dg=dg, L=L, N=N), delta_softplus=True,
                            block_l=block_l)


@kernels
@pytest.mark.parametrize('use_D,use_bias,softplus', [
    (False, True, True), (True, False, True), (True, True, False), (False, False, False)])
def test_kernel_matches_reference_flags(use_D, use_bias, softplus):
    ins = make_inputs(b=2, N=4, L=37)
    ins.update(D=ins['D'] if use_D else None, delta_bias=ins['delta_bias'] if use_bias else None)
    check_against_reference(ins, delta_softplus=softplus, block_l=16)


@kernels
def test_kernel_three_dim_B_and_C():
    check_against_reference(make_inputs(K=1, dg=3, N=2, L=20, flat_bc=True),
                            delta_softplus=True, block_l=16)


@kernels
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('N', [1, 16])
def test_kernel_low_precision_inputs(dtype, N):
    """fp16 / bf16 inputs, fp32 state and output: exact up to fp32 rounding on the same
    (rounded) input values; the gradients come back in the input dtype."""
    ins = make_inputs(K=1, dg=4, N=N, L=37, dtype=dtype)  # full tiles and a masked one
    check_against_reference(ins, tol=1e-4, grad_tol=1e-2, delta_softplus=True, block_l=16)


@kernels
def test_kernel_strong_decay_is_stable():
    """Decays far below exp(-88) per tile: products of factors, never exp of a sum."""
    ins = make_inputs(K=1, dg=2, N=4, L=64)
    with torch.no_grad():
        ins['delta'].mul_(40)
        ins['A'].mul_(20)
    check_against_reference(ins, delta_softplus=True, block_l=16)


@kernels
def test_kernel_probe_runs_under_inference(monkeypatch):
    """The first availability check may come from an inference forward."""
    monkeypatch.setattr(scan_triton, '_probed', {})
    with torch.inference_mode():
        assert scan_triton.unavailable(DEVICE) is None


@kernels
def test_kernel_dispatch_and_auto(log_records):
    """'auto' prefers triton where it runs; the dispatcher's result is the kernel's."""
    assert AUTO_ORDER[0] == 'triton'
    assert scan_triton.unavailable(DEVICE) is None
    assert resolve_backend('auto', DEVICE) == 'triton'
    assert any("backend 'triton' (requested 'auto'" in m for m in log_records)
    ins = make_inputs(N=2, L=9)
    y = selective_scan(**ins, delta_softplus=True, backend='auto')
    torch.testing.assert_close(y, scan_triton.selective_scan_triton(**ins, delta_softplus=True))


@kernels
def test_kernel_memory_is_inputs_and_run_states():
    """Saved for backward: the inputs and one fp32 state per lane's run of T tokens,
    (b, D, ceil(L / T), N) with T = 16 by default; nothing of size (b, D, N, L). No grad:
    nothing saved."""
    b, d, L, N = 1, 4, 70, 16
    ins = make_inputs(K=2, dg=2, L=L, N=N)
    _, vec, q = scan_triton.layout([torch.float32])
    assert vec * q == 16
    y = scan_triton.selective_scan_triton(**ins, delta_softplus=True)
    saved = [t for t in y.grad_fn.saved_tensors if t is not None]
    assert [tuple(t.shape) for t in saved if t.dtype == torch.float32 and t.dim() == 4
            and t.shape[1] == d] == [(b, d, -(-L // 16), N)]
    assert max(t.numel() for t in saved) < b * d * N * L
    with torch.no_grad():
        assert scan_triton.selective_scan_triton(**ins).grad_fn is None


@pytest.mark.skipif(not HAS_TRITON or INTERPRETED, reason='needs triton in compiled mode')
def test_kernels_compile_for_sm90():
    """Every kernel of a routed backward (the route copies, shared and per route, the scan
    backward, the merges) as the launchers call them at V2-T stage 1 with bf16 inputs,
    compiled ahead of time for sm_90 with Triton's bundled ptxas: no GPU needed to check
    what the interpreter cannot (types, layouts, lowering). The forward kernels: test_sass."""
    from backbones.benchmarks import sass
    from backbones.benchmarks.scan import vmamba_scan_shape
    shape = vmamba_scan_shape('v2-tiny', 1, (800, 1344), 2)
    recs = sass.launches(scan_triton, shape, torch.bfloat16, 'bwd', get_scan_route('cross2d'),
                         (200, 336))
    assert {sass.kernel_name(k) for k, *_ in recs} == {
        'route_gather_kernel', 'scan_bwd_kernel', 'route_scatter_kernel'}
    done = set()
    for kernel, _, args, kwargs in recs:
        key = (sass.kernel_name(kernel), str(sass._specialise(kernel, args, kwargs)))
        if key not in done:
            done.add(key)
            compiled, log, _ = sass.compile_sm90(kernel, args, kwargs)
            assert compiled.asm.get('cubin') and '0 bytes spill stores' in log, key


# ---- fused routes -------------------------------------------------------------------------
def routed_inputs(route, b=1, dg=2, H=5, W=7, N=4, seed=0):
    """The map x (b, dg, H*W) and per-route projections in map order."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    K, P = route.num_routes, H * W
    ins = dict(x=r(b, dg, P), delta=r(b, K, dg, P) * 0.5,
               A=-(torch.rand(K * dg, N, generator=g) * 3 + 0.1), B=r(b, K, N, P),
               C=r(b, K, N, P), D=r(K * dg), delta_bias=r(K * dg) * 0.3)
    return {k: v.to(DEVICE).requires_grad_() for k, v in ins.items()}


def unfused_routed_scan(route, H, W, fn=reference_scan):
    """route.scan -> scan -> route.merge, the way SS2D's unfused path composes them."""
    def scan(x, delta, A, B, C, D, delta_bias, delta_softplus):
        b, dg, P = x.shape
        K, N = route.num_routes, B.shape[2]
        per_route = lambda t: route.scan(t.reshape(b, K, -1, H, W).flatten(1, 2))  # noqa: E731
        # route k scans its own projections: take diagonal blocks of routing all K of them
        pick = lambda t, c: torch.stack([t[:, k, k * c:(k + 1) * c] for k in range(K)], 1)  # noqa
        us = route.scan(x.view(b, dg, H, W)).reshape(b, K * dg, -1)
        dts = pick(per_route(delta), dg).reshape(b, K * dg, -1)
        ys = fn(us, dts, A, pick(per_route(B), N), pick(per_route(C), N), D, delta_bias,
                delta_softplus)
        return route.merge(ys.view(b, K, dg, -1), H, W)
    return scan


@kernels
@pytest.mark.parametrize('name,N,H,W', [
    ('cross2d', 16, 5, 7), ('cross2d', 1, 5, 7), ('raster', 4, 5, 7),
    ('raster_bidir', 4, 5, 7),
    ('atrous2x2', 2, 4, 6),  # EfficientVMamba: routes split the map (-1 in the inverse)
    ('zigzag4', 1, 5, 7),    # PlainMamba: row and column snakes
    ('local_v', 2, 5, 7),    # LocalVMamba: column-major windows
])
def test_kernel_routed_equals_unfused(name, N, H, W):
    """The routed path (tile copies through the inverse map, transposed for column routes,
    the scan, the merge) equals route.scan -> float64 step loop -> route.merge, output and
    every gradient."""
    route = get_scan_route(name)
    ins = routed_inputs(route, N=N, H=H, W=W)
    gy = torch.randn(1, 2, H * W, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    index = route.index(H, W, DEVICE)
    y, grads = forward_backward(scan_triton.selective_scan_routed, ins, gy, index=index,
                                delta_softplus=True, block_l=16)
    y_ref, grads_ref = forward_backward(unfused_routed_scan(route, H, W), ins, gy.double(),
                                        delta_softplus=True)
    assert y.dtype == torch.float32 and y.shape == (1, 2, H * W)
    assert_close_scaled(y, y_ref, 1e-4, 'y')
    for k, g in grads.items():
        assert_close_scaled(g, grads_ref[k], 1e-4, f'grad of {k}')


def test_routed_torch_equals_unfused():
    """The gather / scatter-add fallback of the fused path is the same computation."""
    route, H, W = get_scan_route('cross2d'), 3, 4
    ins = {k: v.detach().cpu() for k, v in routed_inputs(route, H=H, W=W).items()}
    y = scan_triton.routed_scan_torch(**ins, delta_softplus=True, index=route.index(H, W))
    y_ref = unfused_routed_scan(route, H, W)(**ins, delta_softplus=True)
    torch.testing.assert_close(y.double(), y_ref, atol=1e-5, rtol=1e-5)


def ss2d_pair(version, seed=0):
    """Two SS2D with the same weights: scan_backend torch (unfused) and triton (fused)."""
    kw = dict(d_state=16, gate=True) if version == 'v0' else dict(d_state=1, gate=False,
                                                                 conv_bias=False)
    torch.manual_seed(seed)
    unfused = SS2D(4, scan_backend='torch', **kw).to(DEVICE)
    fused = SS2D(4, scan_backend='triton', **kw).to(DEVICE)
    fused.load_state_dict(unfused.state_dict())
    return unfused, fused


@kernels
@pytest.mark.parametrize('version', ['v0', 'v2'])
def test_kernel_ss2d_fused_equals_unfused(version, monkeypatch):
    """SS2D with the triton backend takes the fused path and equals the unfused one
    (torch backend), output and every gradient."""
    calls = []
    real = scan_triton.selective_scan_routed
    monkeypatch.setattr('backbones.models.vmamba.selective_scan_routed',
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    unfused, fused = ss2d_pair(version)
    x = torch.randn(2, 3, 5, 4, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    outs, grads = [], []
    for model in (unfused, fused):
        xi = x.clone().requires_grad_()
        y = model(xi)
        outs.append(y)
        grads.append(torch.autograd.grad(y.square().sum(), [xi, *model.parameters()]))
    assert len(calls) == 1
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    names = ['x'] + [n for n, _ in fused.named_parameters()]
    for name, g_fused, g_unfused in zip(names, grads[1], grads[0]):
        assert_close_scaled(g_fused, g_unfused, 1e-5, f'grad of {name}')


def test_route_plan_transposes_column_routes():
    """Per route, whether its scan order runs down the map's columns (tiles are transposed
    there so both sides of the copy are coalesced); the inverse map marks unvisited cells."""
    plans = {name: scan_triton._RoutePlan(get_scan_route(name).index(6, 10), 60)
             for name in ('cross2d', 'raster', 'atrous2x2', 'zigzag4', 'local_v')}
    assert plans['cross2d'].trans.tolist() == [0, 1, 0, 1]
    assert plans['raster'].trans.tolist() == [0] and plans['local_v'].trans.tolist() == [1]
    assert plans['zigzag4'].trans.tolist() == [0, 0, 1, 1]
    inv = plans['atrous2x2'].inv
    assert inv.dtype == torch.int32 and ((inv >= 0).sum(0) == 1).all()  # a partition
    assert (plans['cross2d'].H, plans['cross2d'].W) == (6, 10)
    # a map the routes did not make (no map_shape) is taken as one row: still correct
    assert (scan_triton._RoutePlan(torch.arange(12)[None], 12).H) == 1


def scan_record(path, device_name, ms):
    """A ``scan`` record of tools/benchmark.py with stage-1 fwd+bwd times per backend."""
    rows = [{'stage': 1, 'backends': {k: {'fwdbwd_ms': v} for k, v in ms.items()}},
            {'stage': 3, 'backends': {k: {'fwdbwd_ms': 1.0} for k in ms}}]
    path.write_text(json.dumps({'benchmark': 'scan', 'device': f'cuda: {device_name}',
                                'results': rows}))


def test_auto_follows_a_recorded_measurement(tmp_path, monkeypatch, log_records):
    """On a GPU with a recorded scan measurement 'auto' takes the measured-fastest backend
    that runs (mamba_ssm when it is installed and faster), and says why, once."""
    dispatch = sys.modules['backbones.ops.selective_scan']
    monkeypatch.setattr(dispatch, 'RECORDS', str(tmp_path))
    monkeypatch.setattr(dispatch, '_measured', {})
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: 'NVIDIA H200')
    runs = dispatch.ScanBackend('x', None, lambda device: None)
    for name in ('triton', 'mamba_ssm'):
        monkeypatch.setitem(dispatch._BACKENDS, name, dispatch.ScanBackend(
            name, dispatch._BACKENDS[name].fn, runs.unavailable))
    assert resolve_backend('auto', 'cuda:0') == AUTO_ORDER[0] == 'triton'  # no record
    assert any('default order, no scan measurement' in m for m in log_records)
    monkeypatch.setattr(dispatch, '_measured', {})
    scan_record(tmp_path / 'scan_v0-tiny_cuda.json', 'NVIDIA H200',
                {'torch': 650.0, 'triton': 9.0, 'mamba_ssm': 6.5})
    scan_record(tmp_path / 'scan_other_gpu.json', 'NVIDIA A100', {'torch': 1.0, 'triton': 0.1})
    assert resolve_backend('auto', 'cuda:0') == 'mamba_ssm'
    assert any("backend 'mamba_ssm' (requested 'auto'; measured on NVIDIA H200: mamba_ssm"
               in m and 'scan_v0-tiny_cuda.json' in m for m in log_records)
    n = len(log_records)
    resolve_backend('auto', 'cuda:0')
    assert len(log_records) == n  # once
    # not installed here: the next fastest that runs
    monkeypatch.setitem(dispatch._BACKENDS, 'mamba_ssm', dispatch.ScanBackend(
        'mamba_ssm', None, lambda device: 'mamba_ssm is not importable'))
    assert resolve_backend('auto', 'cuda:0') == 'triton'


def test_ss2d_fuses_only_for_triton_outside_flop_counts():
    """The FLOP counter sees selective_scan calls only: SS2D does not fuse while it counts,
    nor for another backend, nor for a route without an index map."""
    route = get_scan_route('cross2d')
    assert fuses_routes('triton', route, DEVICE) == (INTERPRETED or ON_CUDA)
    with counting_scans():
        assert not fuses_routes('triton', route, DEVICE)
    assert not fuses_routes('torch', route, DEVICE)
    assert not fuses_routes('triton', ScanRoute(), DEVICE)


# ---- routes as data -----------------------------------------------------------------------
# Routes whose sequences split the map (each token in exactly one of them; even maps only:
# EfficientVMamba's atrous 2x2 phases); every other route visits every token.
PARTITIONS = {'atrous2x2'}


@pytest.mark.parametrize('name,H,W', [
    (name, H, W) for name in sorted(SCAN_ROUTES)
    for H, W in ([(2, 6), (4, 4), (2, 2)] if name in PARTITIONS else [(3, 5), (4, 4), (1, 6)])])
def test_index_map_equals_hand_written_route(name, H, W):
    """scan / merge through the index map (ScanRoute's defaults) equal each route's own."""
    route = get_scan_route(name)
    index = route.index(H, W)
    L = H * W // route.num_routes if name in PARTITIONS else H * W
    assert index.shape == (route.num_routes, L) and index.dtype == torch.long
    if name in PARTITIONS:
        assert torch.equal(index.flatten().sort().values, torch.arange(H * W))
    else:
        assert all(torch.equal(row.sort().values, torch.arange(H * W)) for row in index)
    x = torch.randn(2, 3, H, W)
    torch.testing.assert_close(ScanRoute.scan(route, x), route.scan(x), atol=0, rtol=0)
    ys = torch.randn(2, route.num_routes, 3, L)
    torch.testing.assert_close(ScanRoute.merge(route, ys, H, W), route.merge(ys, H, W))


def test_a_new_route_is_only_an_index_map():
    """A route family defined by positions() alone gets scan, merge and the fused path."""
    class ColumnsOnly(ScanRoute):
        name, num_routes = 'columns_only', 1

        def positions(self, H, W):
            return torch.arange(H * W).view(H, W).t().reshape(1, -1)

    route = ColumnsOnly()
    x = torch.randn(1, 2, 3, 4)
    assert route.has_positions and not ScanRoute().has_positions
    torch.testing.assert_close(route.scan(x)[:, 0], x.transpose(-1, -2).flatten(2))
    torch.testing.assert_close(route.merge(route.scan(x), 3, 4), x.flatten(2))


def test_index_maps_are_cached_per_size_and_device(monkeypatch):
    route = get_scan_route('cross2d')
    monkeypatch.setattr(route, '_index_cache', OrderedDict(), raising=False)
    assert route.index(3, 4) is route.index(3, 4, 'cpu')
    assert route.index(4, 3) is not route.index(3, 4)
    monkeypatch.setattr(route, 'index_cache_size', 2)
    first = route.index(3, 4)
    route.index(5, 5)
    route.index(6, 6)
    assert route.index(3, 4) is not first  # evicted: the cache stays small


# ---- availability and fallback ------------------------------------------------------------
@pytest.mark.skipif(INTERPRETED, reason='the interpreter allows CPU tensors')
def test_triton_on_cpu_falls_back_with_a_log(log_records):
    assert resolve_backend('triton', 'cpu') == 'torch'
    assert resolve_backend('auto', 'cpu') == 'torch'
    assert any('triton requested but unavailable' in m and 'needs CUDA tensors' in m
               for m in log_records)
    ins = {k: v.detach().cpu() for k, v in make_inputs().items()}
    torch.testing.assert_close(selective_scan(**ins, backend='triton'),
                               selective_scan(**ins, backend='torch'), atol=0, rtol=0)


def test_missing_triton_falls_back_with_a_log(monkeypatch, log_records):
    monkeypatch.setattr(scan_triton, '_IMPORT_ERROR', "ModuleNotFoundError: No module named "
                                                      "'triton'")
    for device in ('cpu', 'cuda:0'):
        assert scan_triton.unavailable(device).startswith('triton is not importable')
        assert resolve_backend('triton', device) == 'torch'
        assert resolve_backend('auto', device) == 'torch'
    assert any('triton requested but unavailable' in m and 'No module named' in m
               for m in log_records)
    assert any("backend 'torch' (requested 'auto'; triton: triton is not importable" in m
               for m in log_records)


def test_import_backbones_without_triton():
    """A machine without triton imports the package; 'triton' stays a valid name."""
    code = ("import sys; sys.modules['triton'] = None\n"
            "import torch, backbones\n"
            "from backbones.ops import backend_names, resolve_backend, scan_triton\n"
            "assert 'triton' in backend_names(), backend_names()\n"
            "assert 'not importable' in scan_triton.unavailable('cpu')\n"
            "assert resolve_backend('triton', 'cpu') == 'torch'\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and 'ok' in proc.stdout, proc.stderr[-3000:]


def test_failing_kernel_falls_back_once_with_a_log(monkeypatch, log_records):
    """A kernel that fails to compile or launch: logged once, torch result, then skipped."""
    def broken(*args, **kwargs):
        raise RuntimeError('PTX assembly failed (simulated)')
    monkeypatch.setattr(scan_triton._Scan, 'forward', broken)
    ins = {k: v.detach().cpu() for k, v in make_inputs().items()}
    for _ in range(2):
        y = scan_triton.selective_scan_triton(**ins, delta_softplus=True)
    torch.testing.assert_close(y, selective_scan(**ins, delta_softplus=True, backend='torch'))
    assert len([m for m in log_records if 'Triton kernel failed' in m]) == 1
    assert 'PTX assembly failed' in scan_triton._broken[scan_triton._device_key('cpu')]
    scan_triton._broken.clear()  # the fixture checks kernel tests for fallbacks


@pytest.mark.skipif(not HAS_TRITON, reason='needs triton')
def test_failing_probe_makes_triton_unavailable(monkeypatch, log_records):
    """A kernel that does not compile (or gives wrong results) on this GPU: 'auto' skips it."""
    monkeypatch.setattr(scan_triton, '_probed', {})
    monkeypatch.setattr(scan_triton, '_run_probe',
                        lambda device: 'its probe kernel failed (CompilationError: simulated)')
    assert 'probe kernel failed' in scan_triton.unavailable('cuda:0')
    assert resolve_backend('auto', 'cuda:0') == 'torch'
    assert any('triton backend unusable on cuda:0' in m for m in log_records)


# ---- the interpreter run (CPU machines) and full shapes (GPU machines) --------------------
@pytest.mark.skipif(not HAS_TRITON or INTERPRETED or ON_CUDA,
                    reason='the kernel tests run in this process')
def test_in_triton_interpreter():
    """Every kernel test of this module in a fresh process with TRITON_INTERPRET=1."""
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', __file__, '-q', '-x', '-p', 'no:cacheprovider',
         '-k', 'test_kernel_'], cwd=REPO, env=dict(os.environ, TRITON_INTERPRET='1'),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ''
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'passed' in summary and 'skipped' not in summary, summary


@cuda_only
@pytest.mark.parametrize('N', [16, 1])
def test_cuda_vmamba_stage1_shape_against_torch_backend(N):
    """VMamba-T stage 1 at a Mask R-CNN input (800x1344, batch 2): (2, 4 x 192, 67200)."""
    b, K, dg, H, W = 2, 4, 192, 200, 336
    ins = make_inputs(b=b, K=K, dg=dg, L=H * W, N=N)
    gy = torch.randn(b, K * dg, H * W, device=DEVICE)
    y, grads = forward_backward(scan_triton.selective_scan_triton, ins, gy, delta_softplus=True)
    y_ref, grads_ref = forward_backward(selective_scan, ins, gy, delta_softplus=True,
                                        backend='torch')
    assert_close_scaled(y, y_ref, 1e-3, 'y')
    for k, g in grads.items():
        assert_close_scaled(g, grads_ref[k], 1e-3, f'grad of {k}')


@cuda_only
def test_cuda_long_sequence_against_reference():
    check_against_reference(make_inputs(b=1, K=4, dg=8, L=4099, N=16), delta_softplus=True)


@cuda_only
def test_cuda_routed_stage1_shape_against_torch_path():
    """The fused cross-scan at stage 1 (200 x 336 map, 192 channels, d_state 16)."""
    route, H, W = get_scan_route('cross2d'), 200, 336
    ins = routed_inputs(route, b=2, dg=192, H=H, W=W, N=16)
    gy = torch.randn(2, 192, H * W, device=DEVICE)
    index = route.index(H, W, DEVICE)
    y, grads = forward_backward(scan_triton.selective_scan_routed, ins, gy, index=index,
                                delta_softplus=True)
    y_ref, grads_ref = forward_backward(scan_triton.routed_scan_torch, ins, gy, index=index,
                                        delta_softplus=True)
    assert_close_scaled(y, y_ref, 1e-3, 'y')
    for k, g in grads.items():
        assert_close_scaled(g, grads_ref[k], 1e-3, f'grad of {k}')
