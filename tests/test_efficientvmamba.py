"""EfficientVMamba dense backbones (backbones/efficientvmamba.py) and their det / seg rows.

Reference values come from outside the code under test: the official release
(github.com/TerryPei/EfficientVMamba @ 0bc5ee2: ``classification/models/vmamba_efficient.py``
for the ES2D scan / merge, the EVSS block and the checkpoint key layout; its training logs
for the sizes) and parameter counts measured on the release's modules
(../shared/reference/ssm_rows_and_timm_rows.md, sections 0 and 2). The release's ES2D
forward is re-written below with the step-by-step scan of backbones/ops/reference.py.
"""
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from backbones.engine.checkpoint import CheckpointError
from backbones.models.efficientvmamba import AtrousScan2x2, EfficientSS2D, EfficientVMamba
from backbones.ops import scan_triton
from backbones.ops.reference import reference_scan
from backbones.ops.routes import get_scan_route
from conftest import REPO, call_tool, randomize_

DET = osp.join(REPO, 'det_configs', 'mask-rcnn_efficientvmamba-b_fpn_8xb2-amp-1x_coco.py')
SEG = osp.join(REPO, 'seg_configs', 'upernet_efficientvmamba-b_8xb2-amp-160k_ade20k-512x512.py')

SIZES = {'tiny': ((2, 2, 4, 2), 48), 'small': ((2, 2, 4, 2), 64), 'base': ((2, 2, 9, 2), 96)}
# The release's classification models without the linear head (they keep the classifier
# norm): measured on the release's EfficientVSSM; small from its training log (11.274M with
# the 1000-class head).
REFERENCE_PARAMS = {'tiny': 6_108_660, 'small': 11_274_000 - 513_000, 'base': 32_948_136}
# Whole models (backbone with its 4 output norms + mm heads), exact counts of the reference.
REFERENCE_DET, REFERENCE_SEG = 53_223_384, 65_370_644
# a cheap model with the structure of the release (2 EVSS stages, 2 inverted-residual stages)
MINI = dict(depths=(1, 1, 2, 1), embed_dim=16)

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


def _own_params(model):
    return sum(p.numel() for k, p in model.named_parameters() if not k.startswith('out_norms.'))


# ---- sizes and shapes -------------------------------------------------------------------
@pytest.mark.parametrize('arch', list(SIZES))
def test_sizes_and_parameter_counts(arch):
    depths, dim = SIZES[arch]
    model = EfficientVMamba(arch)
    assert model.depths == depths and model.dims == tuple(dim * 2 ** i for i in range(4))
    with_cls_norm = _own_params(model) + 2 * model.dims[-1]
    tol = 1000 if arch == 'small' else 0  # small: a log value rounded to 1e3
    assert abs(with_cls_norm - REFERENCE_PARAMS[arch]) <= tol, with_cls_norm
    if arch == 'base':  # the release's Backbone_EfficientVSSM (with outnorm0..3)
        assert sum(p.numel() for p in model.parameters()) == 32_949_480
    assert model.out_channels == model.dims


@pytest.mark.parametrize('h, w', [(64, 64), (52, 76), (97, 131)])
def test_shapes_at_odd_sizes(h, w):
    # the stem drops H % 4 rows (the release's conv), the merges round up; 52x76 gives a
    # 13x19 and a 7x10 map to the atrous scan (odd: padded, as the release)
    model = EfficientVMamba('tiny').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, h, w))
    size = (h // 4, w // 4)
    expected = []
    for i in range(4):
        expected.append((1, 48 * 2 ** i, *size))
        size = tuple(math.ceil(s / 2) for s in size)
    assert [tuple(o.shape) for o in outs] == expected
    assert all(o.is_contiguous() and torch.isfinite(o).all() for o in outs)


def test_out_indices_subset():
    model = EfficientVMamba(MINI, out_indices=(3, 1)).eval()
    assert model.out_indices == (1, 3) and model.out_channels == (32, 128)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 40, 56))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 5, 7), (2, 128, 2, 2)]
    assert [type(n).__name__ for n in model.out_norms] == ['Identity', 'LayerNorm',
                                                          'Identity', 'LayerNorm']


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='huge'), 'unknown arch'),
    (dict(arch=dict(depths=(2, 2), embed_dim=8, mlp_ratio=4)), 'unknown arch keys'),
    (dict(arch=dict(depths=(2, 2, 2), dims=(8, 16))), 'depths and embed_dim'),
    (dict(arch=dict(MINI, evss_stages=5)), 'evss_stages'),
    (dict(scan_route='spiral'), 'unknown scan_route'),
    (dict(scan_backend='cuda'), 'unknown scan_backend'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EfficientVMamba(**{'arch': MINI, **kwargs})


def test_drop_path_rises_linearly_over_all_blocks():
    model = EfficientVMamba('base', drop_path_rate=0.2)
    rates = [b.drop_path.drop_prob for stage in model.layers for b in stage.blocks]
    assert len(rates) == 15
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.2, 15))
    kinds = [type(b).__name__ for stage in model.layers for b in stage.blocks]
    assert kinds == ['EVSSBlock'] * 4 + ['InvertedResidual'] * 11


# ---- the atrous route and ES2D against the release ------------------------------------
def _release_scan(x):
    """The release's ``EfficientScan`` (step 2): (B, C, H, W) -> (B, 4, C, HW/4)."""
    x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
    xt = x.transpose(2, 3)
    return torch.stack([x[:, :, ::2, ::2].flatten(2), xt[:, :, ::2, 1::2].flatten(2),
                        x[:, :, ::2, 1::2].flatten(2), xt[:, :, 1::2, 1::2].flatten(2)], 1)


def _release_merge(ys, H, W):
    """The release's ``EfficientMerge``: (B, 4, C, HW/4) -> (B, C, H, W), cropped."""
    B, _, C, _ = ys.shape
    h, w = math.ceil(H / 2), math.ceil(W / 2)
    y = ys.new_zeros(B, C, 2 * h, 2 * w)
    y[:, :, ::2, ::2] = ys[:, 0].reshape(B, C, h, w)
    y[:, :, 1::2, ::2] = ys[:, 1].reshape(B, C, w, h).transpose(2, 3)
    y[:, :, ::2, 1::2] = ys[:, 2].reshape(B, C, h, w)
    y[:, :, 1::2, 1::2] = ys[:, 3].reshape(B, C, w, h).transpose(2, 3)
    return y[:, :, :H, :W]


@pytest.mark.parametrize('H, W', [(2, 2), (4, 6), (6, 10), (26, 40), (12, 2)])
def test_atrous_route_is_the_releases_permutation(H, W):
    route = get_scan_route('atrous2x2')
    assert isinstance(route, AtrousScan2x2) and route.num_routes == 4
    pos = route.positions(H, W)
    assert pos.shape == (4, H * W // 4)
    assert sorted(pos.flatten().tolist()) == list(range(H * W))  # each position once
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    xs = route.scan(x)
    torch.testing.assert_close(xs, _release_scan(x), rtol=0, atol=0)
    torch.testing.assert_close(route.merge(xs, H, W), x.flatten(2), rtol=0, atol=0)
    # merge is the adjoint of scan: <scan(x), y> == <x, merge(y)>
    ys = torch.randn_like(xs)
    torch.testing.assert_close((xs * ys).sum(), (x.flatten(2) * route.merge(ys, H, W)).sum())
    torch.testing.assert_close(route.merge(ys, H, W).view(2, 3, H, W), _release_merge(ys, H, W),
                               rtol=0, atol=0)


def test_atrous_route_refuses_odd_maps():
    with pytest.raises(ValueError, match='even map'):
        get_scan_route('atrous2x2').positions(5, 6)


def _release_es2d(op, x):
    """The release's SS2D forward (forward_type v2, step 2) on NHWC ``x``, fp64 scan."""
    x, z = op.in_proj(x).chunk(2, dim=-1)
    x = F.silu(op.conv2d(x.permute(0, 3, 1, 2)))
    B, D, H, W = x.shape
    xs = _release_scan(x)
    R, N = op.dt_rank, op.d_state
    x_dbl = torch.einsum('bkdl,kcd->bkcl', xs, op.x_proj_weight)
    dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
    dts = torch.einsum('bkrl,kdr->bkdl', dts, op.dt_projs_weight)
    ys = reference_scan(xs.reshape(B, 4 * D, -1), dts.reshape(B, 4 * D, -1),
                        -torch.exp(op.A_logs), Bs, Cs, op.Ds, op.dt_projs_bias.flatten(),
                        delta_softplus=True).float()
    y = _release_merge(ys.view(B, 4, D, -1), H, W).permute(0, 2, 3, 1)
    y = F.layer_norm(y, (D,), op.out_norm.weight, op.out_norm.bias, op.out_norm.eps)
    return op.out_proj(y * F.silu(z))


@pytest.mark.parametrize('H, W', [(8, 12), (7, 10), (13, 19), (5, 5)])
def test_es2d_matches_release_forward(H, W):
    # odd maps: the release pads the scanned map with zeros (they decay the state) and crops
    op = randomize_(EfficientSS2D(16, scan_route='atrous2x2', scan_backend='torch'))
    x = torch.randn(2, H, W, 16)
    with torch.no_grad():
        torch.testing.assert_close(op(x), _release_es2d(op, x), atol=2e-5, rtol=1e-4)


_FUSED_SCRIPT = r"""
import torch
import backbones.models.vmamba as vm
from backbones.models.efficientvmamba import EfficientSS2D
from backbones.ops import scan_triton
assert scan_triton.interpreting()
calls, real = [], vm.selective_scan_routed
vm.selective_scan_routed = lambda *a, **k: calls.append(k['index'].shape) or real(*a, **k)
torch.manual_seed(0)
fused, ref = EfficientSS2D(8, scan_backend='triton'), EfficientSS2D(8, scan_backend='torch')
ref.load_state_dict(fused.state_dict())
x = torch.randn(2, 5, 7, 8, requires_grad=True)
got = []
for m in (fused, ref):
    x.grad = None
    (m(x) ** 2).sum().backward()
    got.append([m(x).detach(), x.grad, m.A_logs.grad, m.x_proj_weight.grad, m.Ds.grad])
for a, b in zip(*got):
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
assert calls and set(calls) == {(4, 12)}, calls  # the padded 6x8 map's 4 phases
print('fused atrous ok')
"""


@pytest.mark.slow
def test_fused_triton_route_matches_torch_at_odd_size():
    # the Triton kernels read the atrous index map of the padded map (CPU: interpreter)
    if scan_triton.unavailable() is not None:
        pytest.skip(f'triton unavailable: {scan_triton.unavailable()}')
    proc = subprocess.run([sys.executable, '-c', _FUSED_SCRIPT], cwd=REPO, text=True,
                          env={**os.environ, 'TRITON_INTERPRET': '1'}, timeout=600,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode == 0 and 'fused atrous ok' in proc.stdout, proc.stdout[-4000:]


def test_evss_block_shares_one_channel_gate():
    model = EfficientVMamba(MINI)
    block = model.layers[0].blocks[0]
    names = {k.split('.')[0] for k, _ in block.named_parameters()}
    assert names == {'norm', 'op', 'conv_branch', 'se'}
    assert block.op.route.name == 'atrous2x2' and block.op.gate
    assert EfficientSS2D(8).route.name == 'atrous2x2'  # the default route of ES2D
    ir = model.layers[2].blocks[0]
    assert ir.se.conv_reduce.out_channels == int(4 * 64 * 0.125)


# ---- training behaviour -----------------------------------------------------------------
@pytest.mark.parametrize('frozen', [-1, 0, 3])
def test_frozen_stages(frozen):
    model = EfficientVMamba(MINI, frozen_stages=frozen, drop_path_rate=0.5)
    model.train()
    frozen_mods = ([model.patch_embed] if frozen >= 0 else []) + \
        [m for i in range(frozen) for m in (model.layers[i], model.out_norms[i])]
    frozen_ids = {id(p) for m in frozen_mods for p in m.parameters()}
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) not in frozen_ids), name
    assert all(not m.training for f in frozen_mods for m in f.modules())  # BN stats kept
    assert model.layers[max(frozen, 0)].training
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    assert all(p.grad is None for m in frozen_mods for p in m.parameters())


def test_frozen_stage_gets_no_gradient_and_last_stage_does():
    model = EfficientVMamba(MINI, frozen_stages=2).train()
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    assert model.layers[0].blocks[0].op.A_logs.grad is None
    assert model.layers[3].blocks[0].conv_pw[0].weight.grad is not None


def test_norm_eval_keeps_batchnorm_in_eval():
    model = EfficientVMamba(MINI, norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)


def test_with_cp_same_outputs_and_grads(monkeypatch):
    import backbones.layers.blocks as layers
    calls = []
    real = layers.cp.checkpoint
    monkeypatch.setattr(layers.cp, 'checkpoint', lambda *a, **k: calls.append(k) or real(*a, **k))
    ref = randomize_(EfficientVMamba(MINI, drop_path_rate=0., scan_backend='torch')).train()
    cpm = EfficientVMamba(MINI, drop_path_rate=0., scan_backend='torch', with_cp=True).train()
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 44, 29)
    outs = [m(x) for m in (ref, cpm)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for o in outs:
        sum((t ** 2).sum() for t in o).backward()
    for (name, p), q in zip(ref.named_parameters(), cpm.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert len(calls) == 5 and all(k.get('use_reentrant') is False for k in calls)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_autocast_is_finite_and_scans_in_fp32(dtype, scan_dtypes):
    model = randomize_(EfficientVMamba(MINI, scan_backend='torch')).eval()
    x = torch.randn(1, 3, 44, 36)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outs = model(x)
    assert scan_dtypes and set(scan_dtypes) == {(torch.float32, torch.float32)}
    for o, r in zip(outs, ref):
        assert torch.isfinite(o).all()
        assert (o.float() - r).abs().mean() < 0.1 * r.abs().mean()


# ---- pretrained weights: the release's checkpoint layout ---------------------------------
def release_state_dict(arch, legacy=False, seed=0):
    """A randomized checkpoint in the release's layout: ``{'state_dict': ...}`` saved from
    a twice-wrapped model (``module.module.``), Sequential indices, the inverted-residual
    stages as ``layers.i.<1..d>`` with the patch merging at ``layers.i.<d+2>``, a
    classifier; ``legacy`` uses the old VMamba names the release renames on load."""
    model = randomize_(EfficientVMamba(arch), seed=seed)
    stem = {'proj': 'proj', 'norm': 'norm'} if legacy else {'proj': '0', 'norm': '2'}
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith('out_norms.'):
            continue
        parts = key.split('.')
        if parts[0] == 'patch_embed':
            parts[1] = stem[parts[1]]
        elif parts[0] == 'layers' and int(parts[1]) >= 2:  # IR stage: index in a Sequential
            i = int(parts[1])
            k = int(parts[3]) + 1 if parts[2] == 'blocks' else model.depths[i] + 2
            parts = parts[:2] + [str(k)] + parts[(4 if parts[2] == 'blocks' else 3):]
        elif legacy and parts[0] == 'layers' and parts[4] in ('norm', 'op'):
            parts[4] = {'norm': 'ln_1', 'op': 'self_attention'}[parts[4]]
        out['module.module.' + '.'.join(parts)] = value.clone()
    dim = model.dims[-1]
    cls = 'module.module.' + ('' if legacy else 'classifier.')
    out.update({cls + 'norm.weight': torch.ones(dim), cls + 'norm.bias': torch.zeros(dim),
                cls + 'head.weight': torch.zeros(1000, dim), cls + 'head.bias': torch.zeros(1000)})
    return model, out


def test_release_layout_of_base():
    # key names of the release's B checkpoint (reference file, section 2.4)
    _, sd = release_state_dict('base')
    for key in ['patch_embed.0.weight', 'patch_embed.2.bias', 'layers.0.blocks.1.op.A_logs',
                'layers.0.blocks.0.conv_branch.3.weight', 'layers.1.blocks.1.se.norm.weight',
                'layers.1.blocks.0.se.channel_select.weight',
                'layers.1.downsample.reduction.weight',
                'layers.2.1.conv_pw.0.weight', 'layers.2.9.conv_dw.1.running_var',
                'layers.2.9.se.conv_reduce.bias', 'layers.2.11.norm.weight',
                'layers.2.11.reduction.weight', 'layers.3.2.conv_pw2.1.weight',
                'classifier.head.weight']:
        assert 'module.module.' + key in sd, key
    assert not any(k.startswith('module.module.layers.3.4.') for k in sd)  # Identity


def _assert_loaded(model, reference):
    own = model.state_dict()
    for key, value in reference.state_dict().items():
        if not key.startswith('out_norms.'):
            assert torch.equal(own[key], value), key


@pytest.mark.parametrize('legacy', [False, True])
def test_release_checkpoint_loads_strictly(tmp_path, legacy):
    reference, sd = release_state_dict(MINI, legacy=legacy)
    path = tmp_path / 'efficient_vmamba.ckpt'
    torch.save({'state_dict': sd, 'epoch': 300}, path)
    model = EfficientVMamba(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    _assert_loaded(model, reference)
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        # forward_stages: the output norms are not in a classification checkpoint
        for a, b in zip(model.eval().forward_stages(x), reference.eval().forward_stages(x)):
            torch.testing.assert_close(a, b)


def test_release_detection_checkpoint_with_prefix(tmp_path):
    # Mask R-CNN checkpoint of the release's MM_EfficientVSSM: backbone.<release key>,
    # plus its output norms outnorm<i>
    reference, sd = release_state_dict(MINI)
    sd = {'backbone.' + k[len('module.module.'):]: v for k, v in sd.items()
          if 'classifier' not in k}
    for i, d in enumerate(reference.dims):
        sd[f'backbone.outnorm{i}.weight'] = torch.full((d,), 2.)
        sd[f'backbone.outnorm{i}.bias'] = torch.full((d,), .5)
    sd['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    path = tmp_path / 'mask_rcnn.pth'
    torch.save({'state_dict': sd, 'meta': {}}, path)
    model = EfficientVMamba(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                                prefix='backbone.'))
    model.init_weights()
    _assert_loaded(model, reference)
    assert torch.equal(model.out_norms[3].weight, torch.full((128,), 2.))


@pytest.mark.parametrize('legacy', [False, True])
def test_convert_pretrained_is_idempotent(legacy):
    _, sd = release_state_dict(MINI, legacy=legacy)
    once = EfficientVMamba.convert_pretrained(sd)
    assert EfficientVMamba.convert_pretrained(once).keys() == once.keys()
    assert set(once) == {k for k in EfficientVMamba(MINI).state_dict()
                         if not k.startswith('out_norms.')}


def test_wrong_size_checkpoint_names_keys(tmp_path):
    _, sd = release_state_dict(dict(depths=(1, 1, 2, 1), embed_dim=24))
    path = tmp_path / 'wrong.ckpt'
    torch.save({'state_dict': sd}, path)
    model = EfficientVMamba(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match=r'shape mismatches .*layers\.0\.blocks\.0'):
        model.init_weights()


def test_deeper_checkpoint_names_unexpected_keys(tmp_path):
    # one more inverted residual in stage 3: its block and the moved merge are named
    _, sd = release_state_dict(dict(depths=(1, 1, 3, 1), embed_dim=16))
    path = tmp_path / 'deeper.ckpt'
    torch.save({'state_dict': sd}, path)
    model = EfficientVMamba(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match=r'unexpected keys .*layers\.2\.blocks\.2\.'):
        model.init_weights()


def test_missing_key_is_an_error(tmp_path):
    _, sd = release_state_dict(MINI)
    del sd['module.module.layers.1.blocks.0.op.A_logs']
    path = tmp_path / 'partial.ckpt'
    torch.save({'state_dict': sd}, path)
    model = EfficientVMamba(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError,
                       match=r'missing keys \(1\): layers\.1\.blocks\.0\.op\.A_logs'):
        model.init_weights()


def test_convert_checkpoint_tool(tmp_path):
    reference, sd = release_state_dict('tiny')
    src, dst = tmp_path / 'efficient_vmamba_tiny.ckpt', tmp_path / 'out' / 'tiny.pth'
    torch.save({'state_dict': sd}, src)
    call_tool('convert_checkpoint', src, dst, '--backbone', 'EfficientVMamba', '--arch', 'tiny')
    model = EfficientVMamba('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    _assert_loaded(model, reference)


# ---- registry, configs, Params ---------------------------------------------------------
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_builds_through_registry(scope):
    import importlib

    import backbones  # noqa: F401  (registers)
    MODELS = importlib.import_module(f'{scope}.registry').MODELS
    model = MODELS.build(dict(type='EfficientVMamba', arch=MINI, out_indices=(0, 2)))
    assert isinstance(model, EfficientVMamba) and model.out_indices == (0, 2)


def _build(path):
    import mmdet.utils
    import mmseg.utils
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(path)
    (mmdet.utils if cfg.default_scope == 'mmdet' else mmseg.utils).register_all_modules(False)
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return cfg, MODELS.build(cfg.model)


@pytest.mark.parametrize('path, expected', [(DET, REFERENCE_DET), (SEG, REFERENCE_SEG)],
                         ids=['det', 'seg'])
def test_config_parameter_counts(path, expected):
    cfg, model = _build(path)
    assert cfg.model.backbone.arch == 'base' and cfg.model.backbone.drop_path_rate == 0.2
    assert cfg.pretrained.startswith('checkpoints/efficientvmamba/')
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - expected) <= 100_000, n
    assert n == expected  # the counts are exact (mm heads on the release's backbone)
