"""Selective scan backends (backbones/ops/) against the step-by-step reference."""
import logging

import pytest
import torch

from backbones.engine import log
from backbones.ops import (
    available_backends,
    resolve_backend,
    scan_torch,
    selective_scan,
    selective_scan_torch,
)
from backbones.ops import scan_mamba_ssm as mamba
from backbones.ops.reference import reference_scan

CUDA = torch.cuda.is_available()


pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


def make_inputs(b=2, d=8, L=37, N=4, groups=2, device='cpu', seed=0, scale=1.0):
    """Random inputs; ``groups=None`` gives 3-D B and C (one group)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    shape_bc = (b, N, L) if groups is None else (b, groups, N, L)
    ins = dict(u=r(b, d, L), delta=r(b, d, L) * 0.5 * scale,
               A=-(torch.rand(d, N, generator=g) * 3 + 0.1), B=r(*shape_bc), C=r(*shape_bc),
               D=r(d), delta_bias=r(d) * 0.3)
    return {k: v.to(device).requires_grad_() for k, v in ins.items()}


def run(fn, ins, grad_out, use_D=True, use_bias=True, softplus=True, **kw):
    args = dict(ins, D=ins['D'] if use_D else None,
                delta_bias=ins['delta_bias'] if use_bias else None)
    y = fn(**args, delta_softplus=softplus, **kw)
    wrt = [v for k, v in ins.items() if args[k] is not None]
    grads = torch.autograd.grad((y * grad_out.to(y.dtype)).sum(), wrt)
    return y, dict(zip([k for k in ins if args[k] is not None], grads))


def assert_matches_reference(ins, fn=selective_scan_torch, tol=1e-4, **flags):
    b, d, L = ins['u'].shape
    grad_out = torch.randn(b, d, L, generator=torch.Generator().manual_seed(1))
    y_ref, g_ref = run(reference_scan, ins, grad_out.double(), **flags)
    y, g = run(fn, ins, grad_out.to(ins['u'].device), **flags)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double().cpu(), y_ref.cpu(), atol=tol, rtol=tol)
    assert g.keys() == g_ref.keys()
    for k in g:  # gradients of very different magnitudes: compare relative to their scale
        scale = g_ref[k].double().abs().max().clamp(min=1.0)
        torch.testing.assert_close(g[k].double().cpu() / scale, g_ref[k].double().cpu() / scale,
                                   atol=tol, rtol=tol, msg=lambda m: f'grad of {k}: {m}')


# ---- the torch backend ------------------------------------------------------------------
@pytest.mark.parametrize('use_D,use_bias,softplus', [
    (True, True, True), (False, True, True), (True, False, True), (True, True, False),
    (False, False, False)])
def test_torch_backend_matches_reference_flags(use_D, use_bias, softplus):
    assert_matches_reference(make_inputs(), use_D=use_D, use_bias=use_bias, softplus=softplus)


@pytest.mark.parametrize('b,d,L,N,groups,chunk', [
    (1, 6, 1, 3, 1, None),        # a single token
    (2, 8, 37, 4, 2, 8),          # L not divisible by the chunk length
    (1, 6, 45, 3, None, 4),       # 3-D B / C
    (2, 12, 50, 2, 4, 16),        # one group per direction, as VMamba calls it
    (1, 4, 23, 16, 1, None),      # d_state 16 (VMamba V0)
    (1, 8, 29, 1, 4, 3),          # d_state 1 (VMamba V2), odd chunk
    (1, 4, 700, 2, 2, 4),         # 175 chunks: the chunk-end scan recurses
])
def test_torch_backend_matches_reference_shapes(b, d, L, N, groups, chunk):
    ins = make_inputs(b=b, d=d, L=L, N=N, groups=groups)
    assert_matches_reference(ins, fn=lambda **kw: selective_scan_torch(**kw, chunk_size=chunk))


def test_torch_backend_segments_carry_state(monkeypatch):
    """Long sequences are processed in segments; the state and its adjoint cross them."""
    monkeypatch.setattr(scan_torch, 'SEGMENT_ELEMENTS_CPU', 8 * 4 * 10)  # ~10 tokens per segment
    monkeypatch.setattr(scan_torch, 'SEGMENT_ELEMENTS', 8 * 4 * 10)
    assert_matches_reference(make_inputs(b=1, d=8, L=57, N=4, groups=2),
                             fn=lambda **kw: selective_scan_torch(**kw, chunk_size=4))


def test_torch_backend_is_stable_for_strong_decay():
    """Decays far below exp(-88) per chunk: exp of a running sum would overflow to inf."""
    ins = make_inputs(b=1, d=4, L=300, N=4, groups=1, scale=40.0)
    with torch.no_grad():
        ins['A'].mul_(20)
    assert_matches_reference(ins, fn=lambda **kw: selective_scan_torch(**kw, chunk_size=64))


def test_torch_backend_is_parallel_over_the_sequence():
    """Not a Python loop over every token: far fewer tensor ops than tokens."""
    ins = make_inputs(b=1, d=2, L=16384, N=2, groups=1)
    calls = []

    class Count(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            calls.append(func)
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Count():
        selective_scan_torch(**ins, delta_softplus=True)
    assert len(calls) < 16384 / 8, len(calls)


def test_torch_backend_runs_in_float32(scan_dtypes):
    """fp16 / bf16 inputs and autocast: the recurrence itself always runs in float32."""
    seen = scan_dtypes
    ins = make_inputs()
    half = {k: v.detach().half() for k, v in ins.items()}
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = selective_scan_torch(**half, delta_softplus=True)
    assert seen and all(dt == (torch.float32, torch.float32) for dt in seen)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    y_ref = reference_scan(**{k: v.float() for k, v in half.items()}, delta_softplus=True)
    torch.testing.assert_close(y.double(), y_ref, atol=1e-4, rtol=1e-4)


def test_shape_errors_are_clear():
    ins = {k: v.detach() for k, v in make_inputs().items()}
    with pytest.raises(ValueError, match='B must be'):
        selective_scan_torch(**dict(ins, B=ins['B'][..., :-1]))
    with pytest.raises(ValueError, match='A must be'):
        selective_scan_torch(**dict(ins, A=ins['A'][:-1]))
    with pytest.raises(ValueError, match='D must be'):
        selective_scan_torch(**dict(ins, D=ins['D'][:-1]))


# ---- backend selection -------------------------------------------------------------------
class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def log_records(monkeypatch):
    """Messages logged through mmengine's current logger during the test."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance(f'test_selective_scan_{id(monkeypatch)}', log_level='INFO')
    handler = _Records()
    logger.addHandler(handler)
    monkeypatch.setattr(log, '_logged', set())
    yield handler.messages
    logger.removeHandler(handler)


@pytest.fixture
def no_mamba(monkeypatch):
    monkeypatch.setattr(mamba, '_fn', None)
    monkeypatch.setattr(mamba, '_error', "ModuleNotFoundError: No module named 'mamba_ssm'")


def test_available_backends():
    backends = available_backends()
    assert backends[0] == 'torch'
    try:
        import mamba_ssm.ops.selective_scan_interface  # noqa: F401
        importable = True
    except Exception:  # noqa: BLE001
        importable = False
    assert ('mamba_ssm' in backends) == importable


def test_auto_on_cpu_picks_torch(log_records):
    assert resolve_backend('auto', torch.device('cpu')) == 'torch'
    assert resolve_backend('torch', 'cpu') == 'torch'
    assert any("backend 'torch'" in m for m in log_records)


def test_unavailable_mamba_ssm_falls_back_with_one_log(no_mamba, log_records):
    ins = make_inputs()
    for _ in range(3):
        y = selective_scan(**ins, delta_softplus=True, backend='mamba_ssm')
    fallbacks = [m for m in log_records if 'mamba_ssm requested but unavailable' in m]
    assert len(fallbacks) == 1 and 'No module named' in fallbacks[0]
    assert 'mamba_ssm' not in available_backends()
    torch.testing.assert_close(
        y, selective_scan_torch(**ins, delta_softplus=True), atol=0, rtol=0)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="valid: .*'auto'.*'torch'.*'mamba_ssm'"):
        resolve_backend('no_such_backend', 'cpu')


@pytest.mark.skipif(not CUDA, reason='needs CUDA')
def test_torch_backend_on_cuda():
    assert_matches_reference(make_inputs(device='cuda'))


@pytest.mark.skipif(not (CUDA and 'mamba_ssm' in available_backends()),
                    reason='needs CUDA and mamba_ssm')
@pytest.mark.parametrize('use_D,use_bias,softplus', [(True, True, True), (False, False, False)])
def test_mamba_ssm_backend_matches_reference(use_D, use_bias, softplus):
    assert resolve_backend('mamba_ssm', 'cuda') == 'mamba_ssm'
    assert_matches_reference(
        make_inputs(b=2, d=16, L=130, N=4, groups=4, device='cuda'),
        fn=lambda **kw: selective_scan(**kw, backend='mamba_ssm'),
        use_D=use_D, use_bias=use_bias, softplus=softplus)
