"""PlainMamba backbone and PlainMamba-Adapter (backbones/models/plainmamba.py, vit_adapter.py).

Reference values come from outside the code under test: the official release
(github.com/ChenhongyiYang/PlainMamba @ 0975a1d: plain_mamba.py, plain_mamba_layer.py,
patch_embed.py, plain_mamba_adapter.py and the det / seg configs) for the sizes, the zig-zag
orders, the checkpoint layout and the PlainMamba2D forward (re-written below from the release
around the step-by-step reference scan); parameter counts were measured on the release's
modules (shared/reference/ssm_rows_and_timm_rows.md, section 3.5).
"""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope

from backbones.engine.checkpoint import CheckpointError
from backbones.models.plainmamba import PlainMamba, PlainMamba2D, resize_pos_embed
from backbones.ops.reference import reference_scan
from backbones.ops.routes import get_scan_route
from conftest import REPO, call_tool, randomize_

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')

# cheap model with the structure of L1 (one stem conv, dwconv after layer 0), 4 taps
MINI = dict(dim=32, depth=4, num_convs=1, dwconv_layers=(0,), taps=(0, 1, 2, 3))
# release backbones (mmcls PlainMamba, no classifier; with ln1): exact counts
ADAPTER = dict(conv_inplane=64, n_points=4, cffn_ratio=0.25, deform_ratio=1.0)


def PlainMambaAdapter(arch, deform_num_heads=6, **kwargs):  # noqa: N802 - reads as a class
    """The detection form as the configs build it."""
    return PlainMamba(arch, adapter=dict(ADAPTER, deform_num_heads=deform_num_heads), **kwargs)


CLS_PARAMS = {'l1': 7_358_656, 'l2': 25_760_832, 'l3': 50_507_456}
# dense versions: + 3 tap LNs (seg) / ViT-Adapter without ln1 (det)
SEG_BACKBONE = {'l1': 7_359_808, 'l2': 25_763_136, 'l3': 50_510_144}
DET_BACKBONE = {'l1': 9_796_464, 'l2': 31_590_224, 'l3': 58_103_712}
# Table 2 has L1 / L2, Table 3 L2 / L3; the release (and the suite) has every size for both
DET = {'l1': 31_212_128, 'l2': 53_202_496, 'l3': 79_781_520}
SEG = {'l1': 35_455_596, 'l2': 55_874_156, 'l3': 81_292_908}
DET_CFG = 'det_configs/mask-rcnn_plainmamba-{}_fpn_8xb2-amp-1x_coco.py'
SEG_CFG = 'seg_configs/upernet_plainmamba-{}_8xb2-amp-160k_ade20k-512x512.py'


def _ceil16(n):
    return -(-n // 16)


# ---- the release's zig-zag orders, walked step by step ----------------------------------
def release_orders(H, W):
    """Four (order, move-label) pairs as the release's ``get_permute_order`` walks them:
    a row snake from (0, 0), its reverse, a column snake from (0, 0), its reverse; the label
    of a token is the move into it (0 start, 1 right, 2 left, 3 up, 4 down)."""
    def snake(outer, inner, cell):
        seq = []
        for a in range(outer):
            idx = range(inner) if a % 2 == 0 else range(inner - 1, -1, -1)
            seq += [cell(a, b) for b in idx]
        return seq

    rows = snake(H, W, lambda i, j: (i, j))
    cols = snake(W, H, lambda j, i: (i, j))
    out = []
    for seq in (rows, rows[::-1], cols, cols[::-1]):
        labels = [0]
        for (i0, j0), (i1, j1) in zip(seq, seq[1:]):
            labels.append({(0, 1): 1, (0, -1): 2, (-1, 0): 3, (1, 0): 4}[(i1 - i0, j1 - j0)])
        out.append(([i * W + j for i, j in seq], labels))
    return out


@pytest.mark.parametrize('H,W', [(3, 4), (4, 3), (5, 5), (1, 6), (6, 1), (2, 2)])
def test_zigzag_routes_are_the_releases_and_permutations(H, W):
    route = get_scan_route('zigzag4')
    pos, dirs = route.positions(H, W), route.directions(H, W)
    assert pos.shape == dirs.shape == (4, H * W)
    for k, (order, labels) in enumerate(release_orders(H, W)):
        assert pos[k].tolist() == order and dirs[k].tolist() == labels
        assert sorted(order) == list(range(H * W))  # a permutation


def test_zigzag_3x4_literal():
    pos = get_scan_route('zigzag4').positions(3, 4)
    assert pos[0].tolist() == [0, 1, 2, 3, 7, 6, 5, 4, 8, 9, 10, 11]
    assert pos[2].tolist() == [0, 4, 8, 9, 5, 1, 2, 6, 10, 11, 7, 3]
    assert pos[1].tolist() == pos[0].flip(0).tolist()


def test_zigzag_merge_is_the_adjoint_of_scan():
    route = get_scan_route('zigzag4')
    x, y = torch.randn(2, 3, 5, 7, dtype=torch.float64), torch.randn(2, 4, 3, 35,
                                                                     dtype=torch.float64)
    lhs = (route.scan(x) * y).sum()
    rhs = (x.flatten(2) * route.merge(y, 5, 7)).sum()
    torch.testing.assert_close(lhs, rhs)
    assert torch.equal(route.merge(route.scan(x), 5, 7), 4 * x.flatten(2))


# ---- the release's PlainMamba2D forward, re-written ----------------------------------------
def release_mixer(m, x):
    """PlainMamba2D.forward of the release on (B, H, W, C), fp64 step-by-step scans: u in
    scan order; dt (dt_proj WITH bias, then the bias again as delta_bias), B and C in raster
    order; direction biases in scan order; outputs put back, summed, times SiLU(z)."""
    Bsz, H, W, C = x.shape
    L, E = H * W, m.d_inner
    xz = m.in_proj(x.reshape(Bsz, L, C))
    xs, z = xz.chunk(2, dim=-1)
    xs = F.silu(m.conv2d(xs.reshape(Bsz, H, W, E).permute(0, 3, 1, 2)))
    x_conv = xs.permute(0, 2, 3, 1).reshape(Bsz, L, E)
    dt, Bm, Cm = torch.split(m.x_proj(x_conv), [m.dt_rank, m.d_state, m.d_state], dim=-1)
    dt = m.dt_proj(dt).transpose(1, 2)
    Bm, Cm = Bm.transpose(1, 2), Cm.transpose(1, 2)
    A = -torch.exp(m.A_log.float())
    y = 0
    for order, labels in release_orders(H, W):
        inv = [0] * L
        for t, p in enumerate(order):
            inv[p] = t
        dB = m.direction_Bs[labels].t()[None]                     # (1, N, L) scan order
        ys = reference_scan(x_conv[:, order].transpose(1, 2), dt, A, Bm + dB, Cm, m.D,
                            m.dt_proj.bias, delta_softplus=True)
        y = y + ys.transpose(1, 2)[:, inv]
    return m.out_proj((y * F.silu(z.double())).float()).view(Bsz, H, W, C)


@pytest.mark.parametrize('H,W', [(3, 5), (4, 4)])
def test_mixer_matches_release_forward(H, W):
    torch.manual_seed(0)
    m = randomize_(PlainMamba2D(16, scan_backend='torch'))
    x = torch.randn(2, H, W, 16)
    with torch.no_grad():
        torch.testing.assert_close(m(x), release_mixer(m, x), atol=2e-5, rtol=1e-4)


def test_consistent_order_option_differs():
    torch.manual_seed(0)
    a = randomize_(PlainMamba2D(16, scan_backend='torch'))
    with torch.no_grad():
        a.x_proj.weight.mul_(20)  # position-dependent dt / B / C, so the orders matter
    b = PlainMamba2D(16, release_order=False, scan_backend='torch')
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 4, 16)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert (ya - yb).abs().max() > 1e-2 * ya.abs().max()


# ---- sizes, shapes, parameters ------------------------------------------------------------
@pytest.mark.parametrize('arch', ['l1', 'l2', 'l3'])
def test_parameter_counts(arch):
    seg = PlainMamba(arch)
    n_seg = sum(p.numel() for p in seg.parameters())
    assert n_seg == SEG_BACKBONE[arch]
    tap_norms = sum(p.numel() for k, p in seg.named_parameters()
                    if k.startswith(('out_norms.0.', 'out_norms.1.', 'out_norms.2.')))
    assert n_seg - tap_norms == CLS_PARAMS[arch]
    heads = 8 if arch == 'l3' else 6
    det = PlainMambaAdapter(arch, deform_num_heads=heads)
    assert sum(p.numel() for p in det.parameters()) == DET_BACKBONE[arch]


def test_release_layout_shapes():
    own = PlainMamba('l1').state_dict()
    expect = {'pos_embed': (1, 196, 192), 'patch_embed.stem.0.weight': (64, 3, 7, 7),
              'patch_embed.convs.0.weight': (64, 64, 3, 3),
              'patch_embed.projection.weight': (192, 64, 8, 8),
              'layers.0.dw.0.weight': (192, 1, 3, 3), 'layers.0.dw.1.running_var': (192,),
              'layers.3.mamba.in_proj.bias': (768,), 'layers.3.mamba.conv2d.weight': (384, 1, 7, 7),
              'layers.3.mamba.x_proj.weight': (44, 384), 'layers.3.mamba.dt_proj.weight': (384, 12),
              'layers.3.mamba.A_log': (384, 16), 'layers.3.mamba.D': (384,),
              'layers.3.mamba.direction_Bs': (5, 16), 'layers.3.mamba.out_proj.bias': (192,)}
    for k, shape in expect.items():
        assert tuple(own[k].shape) == shape, k
    assert 'layers.1.dw.0.weight' not in own and 'patch_embed.convs.3.weight' not in own
    assert 'patch_embed.convs.3.weight' in PlainMamba('l2').state_dict()


@pytest.mark.parametrize('H,W', [(37, 53), (64, 48), (17, 16)])
def test_shapes_nchw_out_indices_odd_sizes(H, W):
    model = PlainMamba(MINI, out_indices=(1, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, H, W))
    assert len(outs) == 2 and model.out_channels == (32, 32)
    for o in outs:
        assert o.shape == (2, 32, _ceil16(H), _ceil16(W)) and o.is_contiguous()


def test_adapter_pyramid_shapes_and_padding():
    model = PlainMambaAdapter(MINI, deform_num_heads=4).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
        padded = model(torch.randn(1, 3, 50, 90))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 16, 24), (1, 32, 8, 12), (1, 32, 4, 6),
                                              (1, 32, 2, 3)]
    assert [tuple(o.shape[2:]) for o in padded] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_pos_embed_resize_is_bicubic():
    pe = torch.randn(1, 14 * 14, 8)
    assert resize_pos_embed(pe, (14, 14), (14, 14)) is pe
    out = resize_pos_embed(pe, (14, 14), (5, 9))
    grid = pe.reshape(1, 14, 14, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(5, 9), mode='bicubic', align_corners=False)
    torch.testing.assert_close(out, ref.flatten(2).transpose(1, 2))
    # the backbone adds the resized table to the stem output
    model = PlainMamba(MINI, out_indices=(0,)).eval()
    x = torch.randn(1, 3, 80, 144)
    with torch.no_grad():
        base = model.forward_stages(x)[0]
        model.pos_embed.add_(1.0)
        assert torch.allclose(model.forward_stages(x)[0], base) is False


def test_drop_path_rises_linearly_and_acts_in_train_mode():
    model = PlainMamba(MINI, drop_path_rate=0.3)
    rates = [layer.drop_path.drop_prob for layer in model.layers]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])
    x = torch.randn(4, 3, 32, 32)
    model.train()
    torch.manual_seed(0)
    a = model(x)[3]
    torch.manual_seed(1)
    b = model(x)[3]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize('frozen', [0, 2])
def test_frozen_stages(frozen):
    model = PlainMamba(MINI, frozen_stages=frozen).train()
    frozen_mods = [model.patch_embed] + [m for i in range(frozen)
                                         for m in model.stage_modules(i)]
    ids = {id(p) for m in frozen_mods for p in m.parameters()} | {id(model.pos_embed)}
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) not in ids), name
    assert not model.patch_embed.stem[1].training  # stem BN in eval
    sum(o.sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    assert model.layers[3].mamba.A_log.grad is not None


def test_adapter_frozen_stages():
    model = PlainMambaAdapter(MINI, deform_num_heads=4, frozen_stages=1).train()
    frozen = [model.patch_embed, model.adapter.spm, model.adapter.interactions[0],
              model.layers[0], model.out_norms[0]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert not model.adapter.level_embed.requires_grad and not model.pos_embed.requires_grad
    assert all(p.requires_grad for p in model.adapter.interactions[1].parameters())
    assert not model.adapter.spm.stem[1].training and model.out_norms[1].training


def test_with_cp_same_outputs_and_grads(monkeypatch):
    import backbones.layers.blocks as layers
    calls = []
    real = layers.cp.checkpoint
    monkeypatch.setattr(layers.cp, 'checkpoint',
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    ref = randomize_(PlainMamba(MINI)).train()
    cpm = PlainMamba(MINI, with_cp=True).train()
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 37, 29)
    outs = [m(x) for m in (ref, cpm)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for o in outs:
        sum((t ** 2).sum() for t in o).backward()
    for (name, p), q in zip(ref.named_parameters(), cpm.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert len(calls) == 4 and all(k.get('use_reentrant') is False for k in calls)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_autocast_is_finite_and_scans_in_fp32(dtype, scan_dtypes):
    model = randomize_(PlainMamba(MINI, scan_backend='torch')).eval()
    x = torch.randn(1, 3, 45, 35)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outs = model(x)
    assert scan_dtypes and set(scan_dtypes) == {(torch.float32, torch.float32)}
    for o, r in zip(outs, ref):
        assert torch.isfinite(o).all()
        assert (o.float() - r).abs().mean() < 0.1 * r.abs().mean()


def test_adapter_autocast_is_finite():
    model = PlainMambaAdapter(MINI, deform_num_heads=4).eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(1, 3, 64, 64))
    assert all(torch.isfinite(o).all() for o in outs)


# ---- checkpoints ----------------------------------------------------------------------------
def release_classifier_ckpt(arch, seed=0):
    """An mmcls ImageClassifier checkpoint as the release saves it: ``backbone.`` keys with
    the final norm ``ln1``, the linear head, and the EMA hook's ``ema_*`` buffers."""
    model = randomize_(PlainMamba(arch), seed=seed)
    sd = {}
    last = model.num_stages - 1
    for k, v in model.state_dict().items():
        if k.startswith('out_norms.'):
            if not k.startswith(f'out_norms.{last}.'):
                continue  # the classifier has no tap norms
            k = 'ln1.' + k.split('.', 2)[2]
        sd[f'backbone.{k}'] = v.clone()
    sd['head.fc.weight'] = torch.randn(1000, model.dim)
    sd['head.fc.bias'] = torch.randn(1000)
    for k in list(sd):
        if 'A_log' in k or k.endswith('pos_embed'):
            sd['ema_' + k.replace('.', '_')] = sd[k] + 1
    return {'meta': {}, 'state_dict': sd}


def test_release_checkpoint_loads_strictly(tmp_path):
    ckpt = release_classifier_ckpt(MINI)
    path = tmp_path / 'l.pth'
    torch.save(ckpt, path)
    model = PlainMamba(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    own = model.state_dict()
    sd = ckpt['state_dict']
    for k, v in sd.items():
        if k.startswith('backbone.'):
            key = k[9:].replace('ln1.', 'out_norms.3.')
            assert torch.equal(own[key], v), k
    # an adapter starts from the same checkpoint (without ln1)
    det = PlainMambaAdapter(MINI, deform_num_heads=4,
                            init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    bn_before = det.out_norms[3].weight.clone()
    det.init_weights()
    assert torch.equal(det.layers[2].mamba.direction_Bs,
                       sd['backbone.layers.2.mamba.direction_Bs'])
    assert torch.equal(det.out_norms[3].weight, bn_before)  # ln1 is not loaded into a BN


def test_release_dense_checkpoints_load(tmp_path):
    """The release's seg backbone names tap norms ``norm_layer<i>``, the detector's
    ``ad_norm<k>``; both under ``backbone.`` of a full mm checkpoint."""
    seg = randomize_(PlainMamba(MINI))
    sd = {}
    for k, v in seg.state_dict().items():
        if k.startswith('out_norms.'):
            t, rest = k.split('.')[1:2][0], k.split('.', 2)[2]
            k = 'ln1.' + rest if t == '3' else f'norm_layer{t}.{rest}'
        sd['backbone.' + k] = v
    sd['decode_head.conv_seg.weight'] = torch.zeros(1)
    torch.save({'state_dict': sd}, tmp_path / 'seg.pth')
    model = PlainMamba(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'seg.pth')))
    model.init_weights()
    for a, b in zip(model.state_dict().values(), seg.state_dict().values()):
        assert torch.equal(a, b)

    det = randomize_(PlainMambaAdapter(MINI, deform_num_heads=4))
    sd = {'backbone.' + (f'ad_norm{int(k.split(".")[1]) + 1}.' + k.split('.', 2)[2]
                         if k.startswith('out_norms.') else k): v
          for k, v in det.state_dict().items()}
    sd = {k.replace('backbone.adapter.', 'backbone.'): v for k, v in sd.items()}  # release names
    assert 'backbone.ad_norm4.running_mean' in sd and 'backbone.spm.stem.0.weight' in sd
    assert 'backbone.interactions.3.extra_extractors.1.ffn.dwconv.dwconv.weight' in sd
    assert 'backbone.interactions.0.injector.attn.sampling_offsets.weight' in sd
    torch.save({'state_dict': sd}, tmp_path / 'det.pth')
    model = PlainMambaAdapter(MINI, deform_num_heads=4,
                              init_cfg=dict(type='Pretrained',
                                            checkpoint=str(tmp_path / 'det.pth')))
    model.init_weights()
    for (k, a), b in zip(model.state_dict().items(), det.state_dict().values()):
        assert torch.equal(a, b), k


def _pretrained(path):
    return dict(type='Pretrained', checkpoint=str(path))


def test_wrong_size_checkpoint_names_keys(tmp_path):
    ckpt = release_classifier_ckpt(dict(MINI, dim=48))
    torch.save(ckpt, tmp_path / 'wide.pth')
    model = PlainMamba(MINI, init_cfg=_pretrained(tmp_path / 'wide.pth'))
    with pytest.raises(CheckpointError) as err:
        model.init_weights()
    assert 'shape mismatches' in str(err.value)
    assert 'layers.0.mamba.A_log (checkpoint (96, 16) vs model (64, 16))' in str(err.value)
    deep = release_classifier_ckpt(dict(MINI, depth=5, taps=(0, 1, 2, 4)))
    torch.save(deep, tmp_path / 'deep.pth')
    model = PlainMamba(MINI, init_cfg=_pretrained(tmp_path / 'deep.pth'))
    with pytest.raises(CheckpointError, match=r'unexpected keys \(\d+\): layers\.4\.'):
        model.init_weights()


# ---- configs ----------------------------------------------------------------------------------
def _build(path):
    import mmdet.utils
    import mmseg.utils
    from mmengine.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, path))
    (mmdet.utils if cfg.default_scope == 'mmdet' else mmseg.utils).register_all_modules(False)
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return cfg, MODELS.build(cfg.model)


@pytest.mark.parametrize('path,expected', [(DET_CFG.format(k), v) for k, v in DET.items()] +
                         [(SEG_CFG.format(k), v) for k, v in SEG.items()],
                         ids=lambda v: osp.basename(v) if isinstance(v, str) else str(v))
def test_config_models_have_the_release_parameter_counts(path, expected):
    cfg, model = _build(path)
    assert sum(p.numel() for p in model.parameters()) == expected
    if cfg.default_scope == 'mmseg':  # stride-16 taps straight into UperNet
        assert cfg.model.neck is None if 'neck' in cfg.model else True
        assert cfg.model.auxiliary_head.in_index == 3





def test_convert_checkpoint_tool(tmp_path):
    """tools/convert_checkpoint.py takes the release's mmcls file as it is."""
    torch.save(release_classifier_ckpt('l1'), tmp_path / 'l1.pth')
    out = call_tool('convert_checkpoint', tmp_path / 'l1.pth', tmp_path / 'own.pth',
                   '--backbone', 'PlainMamba', '--arch', 'l1').stdout
    assert 'PlainMamba' in out
    model = PlainMamba('l1', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'own.pth')))
    model.init_weights()
