"""VMamba V0 / V2 dense backbones (backbones/vmamba.py, backbones/ops/routes.py).

Reference values come from outside the code under test: the official release
(github.com/MzeroMiko/VMamba: classification/models/vmamba.py and the vmambav0 /
vmambav2 configs) for the sizes, the checkpoint key layout and shapes, and the SS2D
forward (re-written below from the release, with the step-by-step scan of
test_selective_scan.py); parameter counts were measured on the release's models.
"""
import logging
import math

import pytest
import torch
import torch.nn.functional as F

from backbones.engine import log
from backbones.engine.checkpoint import CheckpointError
from backbones.models.vmamba import SS2D, VMamba
from backbones.ops import scan_mamba_ssm as mamba
from backbones.ops.reference import reference_scan
from backbones.ops.routes import SCAN_ROUTES, get_scan_route
from conftest import call_tool, randomize_

# (version, depths, embed dim) of the release's configs
SIZES = {
    'v0-tiny': ('v0', (2, 2, 9, 2), 96),
    'v0-small': ('v0', (2, 2, 27, 2), 96),
    'v0-base': ('v0', (2, 2, 27, 2), 128),
    'v2-tiny': ('v2', (2, 2, 5, 2), 96),
    'v2-small': ('v2', (2, 2, 15, 2), 96),
    'v2-base': ('v2', (2, 2, 15, 2), 128),
}
# classification model minus classifier (and its norm), in millions
REFERENCE_PARAMS = {'v0-tiny': 22.1, 'v0-small': 43.7, 'v0-base': 75.2,
                    'v2-tiny': 29.9, 'v2-small': 49.4, 'v2-base': 87.5}
# cheap models with the structure of each version, for the behavioural tests
MINI = {'v0': dict(version='v0', depths=(1, 1, 2, 1), embed_dim=16),
        'v2': dict(version='v2', depths=(1, 1, 2, 1), embed_dim=16)}


pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


def _ceil_div(n, k):
    return -(-n // k)


def _stage_sizes(version, n):
    """Stage sizes along one axis of length ``n``, as the release: V0's 4x4/s4 conv stem
    drops the last n % 4 rows / columns (floor), V2's two conv3x3/s2 round up; the 2x
    downsampling after each stage rounds up (padding) in both."""
    first = n // 4 if version == 'v0' else _ceil_div(n, 4)
    return [_ceil_div(first, 2 ** i) for i in range(4)]


def _own_params(model):
    return sum(p.numel() for k, p in model.named_parameters() if not k.startswith('out_norms.'))


# ---- sizes and shapes -------------------------------------------------------------------
@pytest.mark.parametrize('arch', list(SIZES))
def test_sizes_params_and_shapes_at_odd_input(arch):
    version, depths, dim = SIZES[arch]
    model = VMamba(arch).eval()
    assert model.depths == depths and model.dims == tuple(dim * 2 ** i for i in range(4))
    assert abs(_own_params(model) / 1e6 - REFERENCE_PARAMS[arch]) <= 0.1, _own_params(model)
    # Odd size: V0 used to zero-pad its stem up to a multiple of 4 (ceil, 17x25 / ... here);
    # the release floors (16x24 / 8x12 / 4x6 / 2x3), and its checkpoints and ADE20K
    # whole-image numbers were made that way, so the expectation follows the release.
    h, w = 65, 97
    with torch.no_grad():
        outs = model(torch.randn(1, 3, h, w))
    assert [tuple(o.shape) for o in outs] == [
        (1, dim * 2 ** i, hi, wi)
        for i, (hi, wi) in enumerate(zip(_stage_sizes(version, h), _stage_sizes(version, w)))]
    assert all(torch.isfinite(o).all() for o in outs)
    assert model.out_channels == tuple(dim * 2 ** i for i in range(4))


def test_v0_stem_drops_the_remainder_like_the_release():
    """At 97x131 the release's V0 stages are 24x32 / 12x16 / 6x8 / 3x4 (its 4x4/s4 conv
    drops the last H % 4 rows and W % 4 columns); the dropped pixels do not matter."""
    model = randomize_(VMamba(MINI['v0'])).eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        outs = model(x)
        cropped = model(x[:, :, :96, :128])
        changed = x.clone()
        changed[:, :, 96:] = 5.
        changed[:, :, :, 128:] = -5.
        outs_changed = model(changed)
    assert [tuple(o.shape[-2:]) for o in outs] == [(24, 32), (12, 16), (6, 8), (3, 4)]
    for a, b, c in zip(outs, cropped, outs_changed):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)


def test_block_layout_per_version():
    v0, v2 = VMamba('v0-tiny'), VMamba('v2-tiny')
    b0, b2 = v0.layers[0].blocks[0], v2.layers[0].blocks[0]
    # V0: gated SS2D (in_proj to x and z), biased dwconv, no MLP, d_state 16, dt_rank 6
    assert b0.mlp is None and b0.op.gate and b0.op.conv2d.bias is not None
    assert b0.op.in_proj.weight.shape == (384, 96) and b0.op.A_logs.shape == (768, 16)
    assert b0.op.x_proj_weight.shape == (4, 6 + 32, 192)
    assert type(v0.layers[0].downsample).__name__ == 'PatchMerging'
    # V2: no z gate, bias-free dwconv, MLP ratio 4, d_state 1, conv stem and downsampling
    assert b2.mlp is not None and b2.mlp.fc1.weight.shape == (384, 96)
    assert not b2.op.gate and b2.op.conv2d.bias is None
    assert b2.op.in_proj.weight.shape == (192, 96) and b2.op.A_logs.shape == (768, 1)
    assert v2.layers[0].downsample.conv.stride == (2, 2)
    assert v2.patch_embed.conv1.out_channels == 48


def test_explicit_arch_dict_and_out_indices():
    model = VMamba(dict(MINI['v2'], ssm_ratio=1.0, dims=(8, 16, 24, 40)), out_indices=(1, 3))
    assert model.out_channels == (16, 40)
    assert isinstance(model.out_norms[0], torch.nn.Identity)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 33, 31))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 5, 4), (2, 40, 2, 1)]
    assert model.layers[0].blocks[0].op.d_inner == 8


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='v1-tiny'), r"unknown arch 'v1-tiny'; valid names: v0-tiny, v0-small, "
                           r"v0-base, v2-tiny, v2-small, v2-base"),
    (dict(arch=dict(depths=(2, 2), embed_dim=8, heads=3)), r"unknown arch keys \['heads'\]"),
    (dict(arch=dict(depths=(2, 2))), 'needs depths and embed_dim'),
    (dict(arch=dict(version='v3', depths=(2,), embed_dim=8)), 'version must be one of'),
    (dict(arch=dict(depths=(2, 2), embed_dim=8, stem='big')), "stem must be one of"),
    (dict(arch=dict(depths=(2, 2), embed_dim=8, dt_rank='half')), 'dt_rank'),
    (dict(scan_backend='cuda'), r"unknown scan_backend 'cuda'; valid: \('auto', 'torch', "
                                r"'mamba_ssm', 'triton'\)"),
    (dict(scan_route='zigzag'), r"unknown scan_route 'zigzag'; valid: \[.*'cross2d'"),
    (dict(out_indices=(4,)), 'out_indices'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(with_cp=(True,)), 'with_cp'),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VMamba(**kwargs)


def test_drop_path_rises_linearly_over_all_blocks():
    model = VMamba('v0-tiny', drop_path_rate=0.3)
    rates = [b.drop_path.drop_prob for layer in model.layers for b in layer.blocks]
    assert len(rates) == 15 and rates[0] == 0 and rates[-1] == pytest.approx(0.3)
    assert all(b - a == pytest.approx(0.3 / 14) for a, b in zip(rates, rates[1:]))


# ---- SS2D against the release's forward -----------------------------------------------
def release_ss2d_forward(m, x):
    """SS2D as the release computes it (forward_type v0 / v2), on NHWC ``x``."""
    xz = F.linear(x, m.in_proj.weight)
    x, z = xz.chunk(2, dim=-1) if m.gate else (xz, None)
    x = F.silu(m.conv2d(x.permute(0, 3, 1, 2)))
    B, D, H, W = x.shape
    L, K = H * W, 4
    R, N = m.dt_projs_weight.shape[-1], m.A_logs.shape[-1]
    x_hwwh = torch.stack([x.reshape(B, -1, L), x.transpose(2, 3).reshape(B, -1, L)], dim=1)
    xs = torch.cat([x_hwwh, torch.flip(x_hwwh, dims=[-1])], dim=1)
    x_dbl = torch.einsum('bkdl,kcd->bkcl', xs, m.x_proj_weight)
    dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
    dts = torch.einsum('bkrl,kdr->bkdl', dts, m.dt_projs_weight)
    out_y = reference_scan(xs.reshape(B, -1, L), dts.reshape(B, -1, L), -torch.exp(m.A_logs),
                           Bs, Cs, m.Ds, m.dt_projs_bias.reshape(-1), True).float()
    out_y = out_y.view(B, K, -1, L)
    inv_y = torch.flip(out_y[:, 2:4], dims=[-1])
    wh_y = out_y[:, 1].view(B, -1, W, H).transpose(2, 3).reshape(B, -1, L)
    invwh_y = inv_y[:, 1].view(B, -1, W, H).transpose(2, 3).reshape(B, -1, L)
    y = out_y[:, 0] + inv_y[:, 0] + wh_y + invwh_y
    y = F.layer_norm(y.transpose(1, 2).reshape(B, H, W, -1), (D,), m.out_norm.weight,
                     m.out_norm.bias, 1e-5)
    if z is not None:
        y = y * F.silu(z)
    return F.linear(y, m.out_proj.weight)


@pytest.mark.parametrize('gate,d_state,conv_bias', [(True, 16, True), (False, 1, False)])
def test_ss2d_matches_release_forward(gate, d_state, conv_bias):
    torch.manual_seed(0)
    m = randomize_(SS2D(12, d_state=d_state, gate=gate, conv_bias=conv_bias))
    x = torch.randn(2, 5, 7, 12)  # H != W: a swapped transpose shows
    torch.testing.assert_close(m(x), release_ss2d_forward(m, x), atol=1e-4, rtol=1e-4)


def test_patch_merging_order_is_the_releases():
    model = VMamba(MINI['v0'])
    merge = model.layers[0].downsample
    x = torch.randn(1, 5, 7, 16)
    xp = F.pad(x, (0, 0, 0, 1, 0, 1))
    cat = torch.cat([xp[:, 0::2, 0::2], xp[:, 1::2, 0::2], xp[:, 0::2, 1::2],
                     xp[:, 1::2, 1::2]], -1)
    expected = F.linear(F.layer_norm(cat, (64,), merge.norm.weight, merge.norm.bias, 1e-5),
                        merge.reduction.weight)
    torch.testing.assert_close(merge(x), expected)


# EfficientVMamba's atrous 2x2 phases split the map: each token is in exactly one of the
# four routes (and the map must be even; its SS2D pads odd ones first). Every other route
# visits every token.
PARTITIONS = {'atrous2x2'}


@pytest.mark.parametrize('name', sorted(SCAN_ROUTES))
def test_scan_routes_merge_is_the_adjoint_of_scan(name):
    route = get_scan_route(name)
    H, W = (4, 6) if name in PARTITIONS else (4, 5)
    visits = 1 if name in PARTITIONS else route.num_routes
    x = torch.randn(2, 3, H, W)
    xs = route.scan(x)
    assert xs.shape == (2, route.num_routes, 3, H * W * visits // route.num_routes)
    ys = torch.randn_like(xs)
    lhs = (xs * ys).sum()
    rhs = (x.flatten(2) * route.merge(ys, H, W)).sum()
    torch.testing.assert_close(lhs, rhs)
    torch.testing.assert_close(route.merge(xs, H, W), visits * x.flatten(2))


def test_cross2d_orders():
    x = torch.arange(6.).view(1, 1, 2, 3)
    xs = get_scan_route('cross2d').scan(x)[0, :, 0]
    assert xs.tolist() == [[0, 1, 2, 3, 4, 5], [0, 3, 1, 4, 2, 5],
                           [5, 4, 3, 2, 1, 0], [5, 2, 4, 1, 3, 0]]


# ---- training behaviour -----------------------------------------------------------------
@pytest.mark.parametrize('frozen', [-1, 0, 2])
def test_frozen_stages(frozen):
    model = VMamba(MINI['v2'], frozen_stages=frozen, drop_path_rate=0.5)
    model.train()
    frozen_mods = ([model.patch_embed] if frozen >= 0 else []) + \
        [m for i in range(frozen) for m in (model.layers[i], model.out_norms[i])]
    frozen_ids = {id(p) for m in frozen_mods for p in m.parameters()}
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) not in frozen_ids), name
    assert all(not m.training for m in frozen_mods)
    assert model.layers[max(frozen, 0)].training
    sum(o.sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    assert all(p.grad is None for m in frozen_mods for p in m.parameters())
    assert model.layers[3].blocks[0].op.A_logs.grad is not None


@pytest.mark.parametrize('version', ['v0', 'v2'])
def test_with_cp_same_outputs_and_grads(version, monkeypatch):
    import backbones.layers.blocks as vm
    calls = []
    real = vm.cp.checkpoint
    monkeypatch.setattr(vm.cp, 'checkpoint', lambda *a, **k: calls.append(k) or real(*a, **k))
    ref = randomize_(VMamba(MINI[version], drop_path_rate=0.)).train()
    cpm = VMamba(MINI[version], drop_path_rate=0., with_cp=True).train()
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 37, 29)
    outs = [m(x) for m in (ref, cpm)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for m, o in zip((ref, cpm), outs):
        sum((t ** 2).sum() for t in o).backward()
    for (name, p), q in zip(ref.named_parameters(), cpm.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert len(calls) == 5 and all(k.get('use_reentrant') is False for k in calls)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('version', ['v0', 'v2'])
def test_autocast_is_finite_and_scans_in_fp32(version, dtype, scan_dtypes):
    seen = scan_dtypes
    model = randomize_(VMamba(MINI[version])).eval()
    x = torch.randn(1, 3, 45, 35)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outs = model(x)
    assert seen and set(seen) == {(torch.float32, torch.float32)}
    for o, r in zip(outs, ref):
        assert torch.isfinite(o).all()
        assert (o.float() - r).abs().mean() < 0.1 * r.abs().mean()


def test_low_precision_model_keeps_its_dtype():
    model = VMamba(MINI['v2']).to(torch.bfloat16).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 32, dtype=torch.bfloat16))
    assert all(o.dtype == torch.bfloat16 and torch.isfinite(o).all() for o in outs)


# ---- selective-scan backend choice -----------------------------------------------------
def test_requested_mamba_ssm_falls_back_to_torch_with_a_log(monkeypatch):
    from mmengine.logging import MMLogger
    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logger = MMLogger.get_instance('test_vmamba_backend', log_level='INFO')
    logger.addHandler(handler)
    monkeypatch.setattr(log, '_logged', set())
    monkeypatch.setattr(mamba, '_fn', None)
    monkeypatch.setattr(mamba, '_error', "ModuleNotFoundError: No module named 'mamba_ssm'")
    try:
        model = VMamba(MINI['v2'], scan_backend='mamba_ssm').eval()
        torch.manual_seed(0)
        with torch.no_grad():
            outs = model(torch.randn(1, 3, 32, 32))
    finally:
        logger.removeHandler(handler)
    assert all(torch.isfinite(o).all() for o in outs)
    fallbacks = [m for m in records if 'mamba_ssm requested but unavailable' in m]
    assert len(fallbacks) == 1 and 'pure-PyTorch' in fallbacks[0]


# ---- pretrained weights -----------------------------------------------------------------
def release_state_dict(arch, naming='current', seed=0):
    """A classification checkpoint in the release's layout, random values.

    ``naming``: 'current' (patch_embed.<i>, blocks.j.norm / op, classifier.*) or 'legacy'
    (the first V0 release: patch_embed.proj / norm, blocks.j.ln_1 / self_attention, norm +
    head).
    """
    version, depths, dim = SIZES[arch] if isinstance(arch, str) else arch
    legacy = naming == 'legacy'
    N, gate, conv_bias, mlp = (16, True, True, False) if version == 'v0' else (1, False, False,
                                                                               True)
    shapes = {}
    if version == 'v0':
        stem = ('patch_embed.proj', 'patch_embed.norm') if legacy else ('patch_embed.0',
                                                                        'patch_embed.2')
        shapes.update({f'{stem[0]}.weight': (dim, 3, 4, 4), f'{stem[0]}.bias': (dim,),
                       f'{stem[1]}.weight': (dim,), f'{stem[1]}.bias': (dim,)})
    else:
        shapes.update({'patch_embed.0.weight': (dim // 2, 3, 3, 3), 'patch_embed.0.bias':
                       (dim // 2,), 'patch_embed.2.weight': (dim // 2,), 'patch_embed.2.bias':
                       (dim // 2,), 'patch_embed.5.weight': (dim, dim // 2, 3, 3),
                       'patch_embed.5.bias': (dim,), 'patch_embed.7.weight': (dim,),
                       'patch_embed.7.bias': (dim,)})
    norm, op = ('ln_1', 'self_attention') if legacy else ('norm', 'op')
    for i, depth in enumerate(depths):
        C = dim * 2 ** i
        Di, R = 2 * C, math.ceil(C / 16)
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}.'
            shapes.update({
                f'{p}{norm}.weight': (C,), f'{p}{norm}.bias': (C,),
                f'{p}{op}.in_proj.weight': (Di * (2 if gate else 1), C),
                f'{p}{op}.conv2d.weight': (Di, 1, 3, 3),
                f'{p}{op}.x_proj_weight': (4, R + 2 * N, Di),
                f'{p}{op}.dt_projs_weight': (4, Di, R), f'{p}{op}.dt_projs_bias': (4, Di),
                f'{p}{op}.A_logs': (4 * Di, N), f'{p}{op}.Ds': (4 * Di,),
                f'{p}{op}.out_norm.weight': (Di,), f'{p}{op}.out_norm.bias': (Di,),
                f'{p}{op}.out_proj.weight': (C, Di)})
            if conv_bias:
                shapes[f'{p}{op}.conv2d.bias'] = (Di,)
            if mlp:
                shapes.update({f'{p}norm2.weight': (C,), f'{p}norm2.bias': (C,),
                               f'{p}mlp.fc1.weight': (4 * C, C), f'{p}mlp.fc1.bias': (4 * C,),
                               f'{p}mlp.fc2.weight': (C, 4 * C), f'{p}mlp.fc2.bias': (C,)})
        if i < len(depths) - 1:
            p = f'layers.{i}.downsample.'
            if version == 'v0':
                shapes.update({f'{p}norm.weight': (4 * C,), f'{p}norm.bias': (4 * C,),
                               f'{p}reduction.weight': (2 * C, 4 * C)})
            else:
                shapes.update({f'{p}1.weight': (2 * C, C, 3, 3), f'{p}1.bias': (2 * C,),
                               f'{p}3.weight': (2 * C,), f'{p}3.bias': (2 * C,)})
    last = dim * 2 ** (len(depths) - 1)
    head = ('norm', 'head') if legacy else ('classifier.norm', 'classifier.head')
    shapes.update({f'{head[0]}.weight': (last,), f'{head[0]}.bias': (last,),
                   f'{head[1]}.weight': (1000, last), f'{head[1]}.bias': (1000,)})
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


def release_to_own(key):
    """Where a release key must land in our module (None: classifier, dropped)."""
    if key.startswith(('norm.', 'head.', 'classifier.')):
        return None
    for old, new in (('patch_embed.proj.', 'patch_embed.proj.'),
                     ('.ln_1.', '.norm.'), ('.self_attention.', '.op.'),
                     ('.downsample.1.', '.downsample.conv.'),
                     ('.downsample.3.', '.downsample.norm.')):
        key = key.replace(old, new)
    return key


def _stem_names(version):
    return ({'0': 'conv1', '2': 'norm1', '5': 'conv2', '7': 'norm2'} if version == 'v2'
            else {'0': 'proj', '2': 'norm', 'proj': 'proj', 'norm': 'norm'})


def _assert_loaded(model, release, version):
    own = model.state_dict()
    mapped = 0
    for key, value in release.items():
        new = release_to_own(key)
        if new is None:
            continue
        if new.startswith('patch_embed.'):
            part = new.split('.')[1]
            new = new.replace(f'patch_embed.{part}.', f'patch_embed.{_stem_names(version)[part]}.')
        assert torch.equal(own[new], value), key
        mapped += 1
    assert mapped == len([k for k in own if not k.startswith('out_norms.')])


@pytest.mark.parametrize('arch,naming', [('v0-tiny', 'legacy'), ('v0-tiny', 'current'),
                                         ('v2-tiny', 'current')])
def test_release_checkpoint_loads(tmp_path, arch, naming):
    release = release_state_dict(arch, naming)
    path = tmp_path / 'release.pth'
    torch.save({'model': release, 'optimizer': {}, 'epoch': 300}, path)
    model = VMamba(arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    norms_before = {k: v.clone() for k, v in model.out_norms.state_dict().items()}
    model.init_weights()
    _assert_loaded(model, release, SIZES[arch][0])
    for k, v in model.out_norms.state_dict().items():  # new norms keep their init
        assert torch.equal(v, norms_before[k])


def test_release_detection_checkpoint_with_prefix(tmp_path):
    """The release's mmdet plugin names output norms ``outnorm<i>`` under ``backbone.``."""
    release = release_state_dict(('v2', (1, 1, 2, 1), 16))
    release.update({f'outnorm{i}.weight': torch.full((16 * 2 ** i,), 2.0) for i in range(4)})
    release.update({f'outnorm{i}.bias': torch.full((16 * 2 ** i,), 3.0) for i in range(4)})
    ckpt = {'state_dict': {f'backbone.{k}': v for k, v in release.items()
                           if not k.startswith('classifier.')}}
    ckpt['state_dict']['neck.lateral.weight'] = torch.zeros(1)
    path = tmp_path / 'det.pth'
    torch.save(ckpt, path)
    model = VMamba(MINI['v2'], init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                             prefix='backbone.'))
    model.init_weights()
    assert torch.equal(model.out_norms[3].weight, torch.full((128,), 2.0))
    assert torch.equal(model.layers[2].blocks[1].op.A_logs, release['layers.2.blocks.1.op.A_logs'])


def test_linear2d_weights_are_flattened():
    release = release_state_dict('v2-tiny')
    key = 'layers.0.blocks.0.op.in_proj.weight'
    release[key] = release[key][:, :, None, None]
    out = VMamba.convert_pretrained(release)
    assert out[key].shape == (192, 96)


@pytest.mark.parametrize('arch,naming', [('v0-tiny', 'legacy'), ('v2-tiny', 'current')])
def test_convert_pretrained_is_idempotent(arch, naming):
    once = VMamba.convert_pretrained(release_state_dict(arch, naming))
    twice = VMamba.convert_pretrained(once)
    assert list(once) == list(twice) and all(once[k] is twice[k] for k in once)
    assert not any(k.startswith(('head.', 'norm.', 'classifier.')) for k in once)


def _load(arch, release, tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save({'model': release}, path)
    VMamba(arch, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


def test_wrong_size_checkpoint_names_keys(tmp_path):
    with pytest.raises(CheckpointError) as err:  # small (27 blocks) into tiny (9)
        _load('v0-tiny', release_state_dict('v0-small', 'legacy'), tmp_path)
    # 18 surplus blocks of 13 tensors each (norm w/b, in_proj, conv w/b, x_proj, dt w/b,
    # A_logs, Ds, out_norm w/b, out_proj)
    assert 'unexpected keys (234): layers.2.blocks.10.' in str(err.value)
    with pytest.raises(CheckpointError) as err:  # base (128 wide) into small (96)
        _load('v0-small', release_state_dict('v0-base'), tmp_path)
    msg = str(err.value)
    assert 'shape mismatches' in msg
    assert 'layers.0.blocks.0.op.A_logs (checkpoint (1024, 16) vs model (768, 16))' in msg
    with pytest.raises(CheckpointError, match='missing keys'):  # V2 into V0
        _load('v0-tiny', release_state_dict('v2-tiny'), tmp_path)


def test_missing_key_is_an_error(tmp_path):
    release = release_state_dict('v2-tiny')
    del release['layers.1.blocks.0.op.A_logs']
    with pytest.raises(CheckpointError,
                       match=r'missing keys \(1\): layers\.1\.blocks\.0\.op\.A_logs'):
        _load('v2-tiny', release, tmp_path)


# ---- registry and tools -----------------------------------------------------------------
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_builds_through_registry(scope):
    import importlib

    import backbones  # noqa: F401  (registers)
    MODELS = importlib.import_module(f'{scope}.registry').MODELS
    model = MODELS.build(dict(type='VMamba', arch=MINI['v0'], out_indices=(0, 2)))
    assert isinstance(model, VMamba) and model.out_indices == (0, 2)


def test_convert_checkpoint_tool(tmp_path):
    release = release_state_dict('v2-tiny')
    src, dst = tmp_path / 'vssm1_tiny_0230.pth', tmp_path / 'out' / 'v2_tiny.pth'
    torch.save({'model': release}, src)
    proc = call_tool('convert_checkpoint', src, dst, '--backbone', 'VMamba', '--arch', 'v2-tiny')
    assert '29.94M params' in proc.stdout
    model = VMamba('v2-tiny', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    _assert_loaded(model, release, 'v2')
