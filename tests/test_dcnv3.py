"""DCNv3 (backbones/ops/dcnv3.py): InternImage's deformable convolution in pure PyTorch.

The reference is written here, independently of the grid_sample code under test: a float64
direct evaluation of the deformable sum, point by point, with explicit bilinear corners and
zeros outside the map, following the formula of the release's CUDA kernel
(OpenGVLab/InternImage @ 31c962d, ``segmentation/ops_dcnv3/src/cuda/dcnv3_im2col_cuda.cuh``,
``dcnv3_im2col_gpu_kernel``). The slow tests also compare with the release's own
pure-PyTorch path (``dcnv3_core_pytorch``, ``DCNv3_pytorch``) imported from its snapshot.
"""
import importlib
import importlib.util
import logging
import os.path as osp
import sys
import types
from contextlib import contextmanager
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from backbones.ops import DCNv3, dcnv3
from conftest import randomize_, release_source

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')

RELEASE = ('OpenGVLab/InternImage', '31c962dc6c1ceb23e580772f7daaa6944694fbe6')
RELEASE_PATHS = ('segmentation/ops_dcnv3', 'segmentation/mmseg_custom/models/backbones')


def direct_dcnv3(x, offset, mask, k, stride, pad, dil, group, scale):
    """out[n, ho, wo, g*Cg + c] = sum_p mask * bilinear(x, h_p, w_p), one point at a time.

    p = i * k + j: i over the kernel's columns (x), j over its rows (y), as the CUDA loops;
    offset[..., 2 * (g * P + p)] is x, ``+ 1`` is y. Differentiable (floor is a constant)."""
    N, H, W, C = x.shape
    P, Cg = k * k, C // group
    Ho = (H + 2 * pad - (dil * (k - 1) + 1)) // stride + 1
    Wo = (W + 2 * pad - (dil * (k - 1) + 1)) // stride + 1
    c = dil * (k - 1) // 2
    p0h = torch.arange(Ho).view(1, Ho, 1) * stride - pad + c
    p0w = torch.arange(Wo).view(1, 1, Wo) * stride - pad + c
    n = torch.arange(N).view(N, 1, 1)
    out = []
    for g in range(group):
        xg = x[..., g * Cg:(g + 1) * Cg]
        acc = 0
        for i in range(k):
            for j in range(k):
                pt = g * P + i * k + j
                loc_w = p0w - c * scale + (i * dil + offset[..., 2 * pt]) * scale
                loc_h = p0h - c * scale + (j * dil + offset[..., 2 * pt + 1]) * scale
                h0, w0 = loc_h.detach().floor(), loc_w.detach().floor()
                lh, lw = loc_h - h0, loc_w - w0
                val = 0
                for dy, wy in ((0, 1 - lh), (1, lh)):
                    for dx, wx in ((0, 1 - lw), (1, lw)):
                        hh, ww = h0.long() + dy, w0.long() + dx
                        inside = (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
                        corner = xg[n, hh.clamp(0, H - 1), ww.clamp(0, W - 1)]
                        val = val + (wy * wx * inside)[..., None] * corner
                acc = acc + mask[..., pt, None] * val
        out.append(acc)
    return torch.cat(out, -1)


def _inputs(N, H, W, C, k, stride, pad, dil, group, spread, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    Ho = (H + 2 * pad - (dil * (k - 1) + 1)) // stride + 1
    Wo = (W + 2 * pad - (dil * (k - 1) + 1)) // stride + 1
    x = torch.randn(N, H, W, C, generator=g, dtype=dtype)
    offset = torch.randn(N, Ho, Wo, group * k * k * 2, generator=g, dtype=dtype) * spread
    mask = torch.rand(N, Ho, Wo, group * k * k, generator=g, dtype=dtype)
    return x, offset, mask


# (N, H, W, C, kernel, stride, pad, dilation, group, offset_scale, offset spread)
CASES = [
    (2, 7, 9, 6, 3, 1, 1, 1, 3, 1.0, 1.5),     # InternImage's setting, odd sizes
    (1, 13, 5, 4, 3, 1, 1, 1, 2, 1.0, 4.0),    # offsets far outside the map
    (1, 9, 7, 6, 3, 2, 2, 2, 2, 0.5, 2.0),     # stride, dilation, wide pad, offset_scale
    (2, 5, 11, 3, 5, 1, 2, 1, 3, 1.0, 1.0),    # kernel 5, one channel per group
    (1, 6, 8, 4, 3, 1, 0, 1, 1, 2.0, 0.7),     # no padding (smaller output)
]


@pytest.mark.parametrize('case', CASES, ids=lambda c: 'x'.join(map(str, c[1:3])) + f'-{c}')
def test_forward_and_gradients_equal_direct_float64_evaluation(case):
    N, H, W, C, k, s, p, d, G, scale, spread = case
    x, offset, mask = (t.requires_grad_() for t in _inputs(N, H, W, C, k, s, p, d, G, spread))
    got = dcnv3(x, offset, mask, k, s, p, d, G, scale)
    ref = direct_dcnv3(x, offset, mask, k, s, p, d, G, scale)
    assert got.shape == ref.shape and got.dtype == torch.float64
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=1e-10)
    upstream = torch.randn_like(ref)
    grads = torch.autograd.grad((got * upstream).sum(), (x, offset, mask))
    refs = torch.autograd.grad((ref * upstream).sum(), (x, offset, mask))
    for name, a, b in zip(('input', 'offset', 'mask'), grads, refs):
        assert b.abs().sum() > 0, name  # the case exercises every gradient
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8, msg=name)


def test_float32_matches_float64_reference():
    x, offset, mask = _inputs(2, 7, 9, 6, 3, 1, 1, 1, 3, 1.5)
    got = dcnv3(x.float(), offset.float(), mask.float(), 3, 1, 1, 1, 3, 1.0)
    assert got.dtype == torch.float32
    ref = direct_dcnv3(x, offset, mask, 3, 1, 1, 1, 3, 1.0)
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)


def test_gradcheck_tiny():
    x, offset, mask = (t.requires_grad_() for t in _inputs(1, 3, 4, 4, 3, 1, 1, 1, 2, 0.8))
    assert torch.autograd.gradcheck(
        lambda a, b, c: dcnv3(a, b, c, 3, 1, 1, 1, 2, 1.0), (x, offset, mask))


@pytest.mark.parametrize('stride,pad,dil', [(1, 1, 1), (2, 1, 1), (1, 2, 2), (1, 0, 1)])
def test_zero_offsets_are_a_grouped_depthwise_conv(stride, pad, dil):
    """Without offsets every channel of group g is convolved with the group's mask as
    weights: conv2d with zero padding (mask constant over the map)."""
    N, H, W, C, G, k = 2, 7, 10, 6, 3, 3
    x, _, _ = _inputs(N, H, W, C, k, stride, pad, dil, G, 0.)
    weights = torch.rand(G, k, k, dtype=torch.float64)  # [g, row, col]
    ref = F.conv2d(x.permute(0, 3, 1, 2), weights.repeat_interleave(C // G, 0)[:, None],
                   stride=stride, padding=pad, dilation=dil, groups=C).permute(0, 2, 3, 1)
    Ho, Wo = ref.shape[1:3]
    mask = weights.transpose(1, 2).reshape(1, 1, 1, G * k * k).expand(N, Ho, Wo, -1)
    offset = torch.zeros(N, Ho, Wo, G * k * k * 2, dtype=torch.float64)
    torch.testing.assert_close(dcnv3(x, offset, mask, k, stride, pad, dil, G), ref)


def test_integer_offsets_shift_the_map():
    """An offset of (+1, -2) on every point of a 1x1 kernel reads x[h - 2, w + 1]."""
    x = torch.randn(1, 5, 6, 2, dtype=torch.float64)
    offset = torch.tensor([1., -2.], dtype=torch.float64).expand(1, 5, 6, 2)
    got = dcnv3(x, offset, torch.ones(1, 5, 6, 1, dtype=torch.float64), 1, 1, 0, 1, 1)
    ref = torch.zeros_like(x)
    ref[:, 2:, :-1] = x[:, :-2, 1:]
    torch.testing.assert_close(got, ref)


@pytest.mark.parametrize('kwargs,match', [
    (dict(offset=torch.zeros(1, 5, 5, 17)), r'expected offset \(1, 5, 5, 18\)'),
    (dict(mask=torch.zeros(1, 4, 5, 9)), r'mask \(1, 5, 5, 9\)'),
    (dict(group=3), 'group must be a positive int dividing C=4'),
    (dict(stride=(1, 1, 1)), 'stride must be an int or a pair'),
])
def test_bad_inputs_raise_naming_the_problem(kwargs, match):
    args = dict(x=torch.zeros(1, 5, 5, 4), offset=torch.zeros(1, 5, 5, 18),
                mask=torch.zeros(1, 5, 5, 9), kernel_size=3, stride=1, pad=1, dilation=1,
                group=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        dcnv3(**args)


# ---- the module ---------------------------------------------------------------------------
def module_forward_by_hand(m, x):
    """DCNv3 (the module) from its parts, with the direct evaluation as core (float64)."""
    N, H, W, C = x.shape
    q = F.conv2d(x.permute(0, 3, 1, 2), m.dw_conv.weight, m.dw_conv.bias, padding=1,
                 groups=C).permute(0, 2, 3, 1)
    q = F.gelu(m.dw_norm(q))  # the suite's LayerNorm (computes in float32, by design)
    mask = F.linear(q, m.mask.weight, m.mask.bias).view(N, H, W, m.group, 9).softmax(-1)
    y = direct_dcnv3(F.linear(x, m.input_proj.weight, m.input_proj.bias),
                     F.linear(q, m.offset.weight, m.offset.bias), mask.view(N, H, W, -1),
                     3, 1, 1, 1, m.group, m.offset_scale)
    return F.linear(y, m.output_proj.weight, m.output_proj.bias)


def test_module_matches_its_parts():
    torch.manual_seed(0)
    m = randomize_(DCNv3(12, group=3)).double()
    with torch.no_grad():
        m.offset.weight.mul_(40)  # offsets of a few pixels
    x = torch.randn(2, 7, 9, 12, dtype=torch.float64)
    torch.testing.assert_close(m(x), module_forward_by_hand(m, x))


def test_module_init_is_an_undeformed_uniform_conv():
    m = DCNv3(8, group=2)
    assert m.offset.weight.abs().sum() == 0 and m.mask.bias.abs().sum() == 0
    x = torch.randn(1, 5, 6, 8)
    box = F.avg_pool2d(m.input_proj(x).permute(0, 3, 1, 2), 3, 1, 1, count_include_pad=True)
    torch.testing.assert_close(m(x), m.output_proj(box.permute(0, 2, 3, 1)),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('kwargs,match', [
    (dict(channels=10, group=4), r'channels \(10\) must be divisible by group \(4\)'),
    (dict(channels=8, group=2, kernel_size=4), 'must be odd'),
    (dict(channels=8, group=0), 'group must be a positive int'),
])
def test_module_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DCNv3(**kwargs)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_autocast_samples_in_float32(dtype, monkeypatch):
    seen, real = [], F.grid_sample
    monkeypatch.setattr(F, 'grid_sample', lambda v, g, **kw: seen.append(
        (v.dtype, g.dtype)) or real(v, g, **kw))
    m = randomize_(DCNv3(8, group=2)).eval()
    with torch.no_grad():
        m.offset.weight.mul_(40)
    x = torch.randn(1, 9, 7, 8)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast('cpu', dtype=dtype):
            got = m(x)
    assert seen == [(torch.float32, torch.float32)] * 2
    assert torch.isfinite(got).all()
    # bf16 keeps 8 mantissa bits: offsets of a few pixels come out ~1% off
    tol = {torch.float16: 0.01, torch.bfloat16: 0.05}[dtype]
    assert (got.float() - ref).abs().mean() < tol * ref.abs().mean()


# ---- the release's pure-PyTorch path --------------------------------------------------------
@contextmanager
def _swapped_modules(stubs):
    """Put ``stubs`` into sys.modules for the duration, then restore exactly those names."""
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _stub(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


_RELEASE = {}


def load_release(tmp_path_factory):
    """The release's ``ops_dcnv3`` (``functions``, ``modules``) and its seg backbone file
    (``intern_image``) from the pinned snapshot, their math untouched. Import glue only:

    * ``ops_dcnv3/functions/dcnv3_func.py`` imports the compiled extension ``DCNv3`` at
      import time: an empty module stands in (only the CUDA class would call it);
    * mmcv 1.x / mmseg 0.x names the backbone file imports (``mmcv.runner``,
      ``mmseg.models.builder.BACKBONES``, ``mmseg.utils.get_root_logger``, mmcv init
      helpers): stand-ins, so nothing registers into the installed mmseg;
    * at HEAD the backbone passes ``use_dcn_v4_op`` to its core op, which
      ``DCNv3_pytorch.__init__`` lacks (TypeError): ``modules.DCNv3_pytorch`` becomes a
      subclass that accepts it (False only) and is otherwise the release's class.
    """
    root = release_source(*RELEASE, tmp_path_factory.getbasetemp() / 'release',
                          paths=RELEASE_PATHS)
    if root in _RELEASE:
        return _RELEASE[root]
    seg = osp.join(root, 'segmentation')
    registry = types.SimpleNamespace(register_module=lambda *a, **k: (lambda cls: cls))
    stubs = {
        'DCNv3': _stub('DCNv3'),
        'mmcv.cnn': _stub('mmcv.cnn', constant_init=None, trunc_normal_init=None),
        'mmcv.runner': _stub('mmcv.runner', _load_checkpoint=None),
        'mmseg.models.builder': _stub('mmseg.models.builder', BACKBONES=registry),
        'mmseg.utils': _stub('mmseg.utils', get_root_logger=lambda: logging.getLogger('rel')),
    }
    with _swapped_modules(stubs), mock.patch.object(sys, 'path', [seg] + sys.path):
        functions = importlib.import_module('ops_dcnv3.functions')
        modules = importlib.import_module('ops_dcnv3.modules')
        path = osp.join(seg, 'mmseg_custom', 'models', 'backbones', 'intern_image.py')
        spec = importlib.util.spec_from_file_location('release_intern_image', path)
        intern_image = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(intern_image)
    for name in [m for m in sys.modules if m.split('.')[0] == 'ops_dcnv3']:
        del sys.modules[name]  # the objects stay referenced here; no name clash later

    class DCNv3PytorchAtHead(modules.DCNv3_pytorch):
        def __init__(self, *args, use_dcn_v4_op=False, **kwargs):
            assert not use_dcn_v4_op
            super().__init__(*args, **kwargs)
    modules.DCNv3_pytorch = DCNv3PytorchAtHead
    _RELEASE[root] = types.SimpleNamespace(functions=functions, modules=modules,
                                           intern_image=intern_image)
    return _RELEASE[root]


@pytest.mark.slow
@pytest.mark.parametrize('case', CASES[:4], ids=lambda c: 'x'.join(map(str, c[1:3])))
def test_core_equals_release_dcnv3_core_pytorch(case, tmp_path_factory):
    """Same sampling as the release's reference path (float64, forward and gradients)."""
    functions = load_release(tmp_path_factory).functions
    N, H, W, C, k, s, p, d, G, scale, spread = case
    x, offset, mask = (t.requires_grad_() for t in _inputs(N, H, W, C, k, s, p, d, G, spread))
    got = dcnv3(x, offset, mask, k, s, p, d, G, scale)
    ref = functions.dcnv3_core_pytorch(x, offset, mask, k, k, s, s, p, p, d, d, G, C // G,
                                       scale)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)  # its grid is built in fp32
    upstream = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad((got * upstream).sum(), (x, offset, mask)),
                    torch.autograd.grad((ref * upstream).sum(), (x, offset, mask))):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def release_dcn_state_dict(release_module):
    """The release's DCNv3 keys (``dw_conv.0`` conv, ``dw_conv.1.1`` LN) -> ours."""
    rename = {'dw_conv.0.': 'dw_conv.', 'dw_conv.1.1.': 'dw_norm.'}
    out = {}
    for key, value in release_module.state_dict().items():
        for old, new in rename.items():
            if key.startswith(old):
                key = new + key[len(old):]
        out[key] = value
    return out


@pytest.mark.slow
def test_module_equals_release_dcnv3_pytorch(tmp_path_factory):
    modules = load_release(tmp_path_factory).modules
    torch.manual_seed(0)
    ref = randomize_(modules.DCNv3_pytorch(channels=12, group=3, offset_scale=1.0))
    with torch.no_grad():
        ref.offset.weight.mul_(40)
    ours = DCNv3(12, group=3)
    ours.load_state_dict(release_dcn_state_dict(ref))
    x = torch.randn(2, 13, 7, 12, requires_grad=True)
    y_ref, y = ref(x), ours(x)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    g_ref, = torch.autograd.grad(y_ref.square().sum(), x)
    g, = torch.autograd.grad(y.square().sum(), x)
    torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)
