"""LocalVMamba dense backbones (backbones/localvmamba.py) and their det/seg configs.

Reference values come from outside the code under test: the official release
(github.com/hunto/LocalMamba @ 75e5d1f: ``classification/lib/models/local_vmamba.py``,
``mamba/multi_mamba.py``, ``mamba/local_scan.py``) for the sizes, the searched directions,
the checkpoint key layout, the window padding and the (buggy) reverse of the vertical
scans; parameter counts were measured on the release's modules
(../shared/reference/ssm_rows_and_timm_rows.md, sections 0 and 1). The block forward is
re-written below from the release, with loops instead of index maps.
"""
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from backbones.engine.checkpoint import CheckpointError
from backbones.models.localvmamba import (
    ALL_DIRECTIONS,
    DIRECTIONS,
    LocalScan,
    LocalSS2D,
    LocalVMamba,
)
from backbones.ops.reference import reference_scan
from backbones.ops.routes import SCAN_ROUTES, get_scan_route
from conftest import REPO, call_tool, randomize_

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')

# the release's backbone with its four outnorm<i> (classifier minus head: 24,758,160 /
# 48,979,536, of which 1,536 classifier.norm)
BACKBONE_PARAMS = {'tiny': 24_759_504, 'small': 48_980_880}
# whole det / seg models of the reference (backbone + mm default heads)
MODEL_PARAMS = {
    'mask-rcnn_localvmamba-t_fpn_8xb2-amp-1x_coco.py': 45_033_408,
    'mask-rcnn_localvmamba-s_fpn_8xb2-amp-1x_coco.py': 69_254_784,
    'upernet_localvmamba-t_8xb2-amp-160k_ade20k-512x512.py': 57_180_668,
    'upernet_localvmamba-s_8xb2-amp-160k_ade20k-512x512.py': 81_402_044,
}
# the release's local_vssm_tiny directions, a few blocks checked by hand (reference file)
SPOT_CHECKS = {('tiny', 0): ('h', 'h_flip', 'w7', 'w7_flip'),
               ('tiny', 7): ('h', 'h_flip', 'v', 'v_flip'),
               ('tiny', 14): ('h_flip', 'v', 'w7', 'w7_flip'),
               ('small', 0): ('h', 'v', 'v_flip', 'w7_flip'),
               ('small', 21): ('v', 'v_flip', 'w7', 'w7_flip'),
               ('small', 32): ('h', 'v', 'w7', 'w7_flip')}
# a cheap model using all eight directions (windows that do not divide the small maps)
MINI = dict(depths=(1, 1, 2, 1), embed_dim=16, directions=(
    ('h', 'h_flip', 'w7', 'w7_flip'), ('h_flip', 'v_flip', 'w2', 'w2_flip'),
    ('v', 'v_flip', 'w2', 'w7_flip'), ('h', 'v', 'w7', 'w2_flip'),
    ('h_flip', 'v', 'w7', 'w7_flip')))


def _blocks(model):
    return [b for layer in model.layers for b in layer.blocks]


# ---- sizes, directions and shapes -------------------------------------------------------
@pytest.mark.parametrize('arch', ['tiny', 'small'])
def test_params_and_directions_are_the_releases(arch):
    model = LocalVMamba(arch)
    assert sum(p.numel() for p in model.parameters()) == BACKBONE_PARAMS[arch]
    blocks = _blocks(model)
    assert len(blocks) == (15 if arch == 'tiny' else 33)
    assert [b.op.route.directions for b in blocks] == list(DIRECTIONS[arch])
    for (a, i), dirs in SPOT_CHECKS.items():
        if a == arch:
            assert blocks[i].op.route.directions == dirs
    # V0 block: gated SS2D, d_state 16, dt_rank ceil(C/16), no MLP; gate E -> E/8 -> E
    b = blocks[0]
    assert b.mlp is None and b.op.x_proj_weight.shape == (4, 6 + 32, 192)
    assert b.op.channel_gate.global_reduce.weight.shape == (24, 192)


def test_stem_and_stage_sizes_at_odd_input():
    """The release's 4x4/s4 conv drops the last H % 4 rows / W % 4 cols (VMamba V0's stem):
    at 97x131 its stages are 24x32 / 12x16 / 6x8 / 3x4 (w7 windows pad all of them)."""
    model = LocalVMamba('tiny').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 97, 131))
    assert [tuple(o.shape) for o in outs] == [
        (1, 96, 24, 32), (1, 192, 12, 16), (1, 384, 6, 8), (1, 768, 3, 4)]
    assert all(torch.isfinite(o).all() and o.is_contiguous() for o in outs)
    assert model.out_channels == (96, 192, 384, 768)


def test_out_indices_and_nchw():
    model = LocalVMamba(MINI, out_indices=(1, 3)).eval()
    assert model.out_channels == (32, 128)
    assert isinstance(model.out_norms[0], torch.nn.Identity)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 33, 47))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 4, 6), (2, 128, 1, 2)]


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='base'), r"unknown arch 'base'; valid names: tiny, small"),
    (dict(arch=dict(depths=(1, 1), embed_dim=8, heads=2)), r"unknown arch keys \['heads'\]"),
    (dict(arch=dict(depths=(1, 1), embed_dim=8, directions=(('h',),))), 'one sequence per'),
    (dict(arch=dict(depths=(1,), embed_dim=8, directions=('h', 'w3'))), 'directions must be'),
    (dict(scan_backend='cuda'), 'unknown scan_backend'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(out_indices=(4,)), 'out_indices'),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LocalVMamba(**kwargs)


# ---- scan routes ------------------------------------------------------------------------
def _window_sequence(H, W, w, flip):
    """The release's local_scan written as loops: windows row-major, tokens row-major
    inside, -1 for the zero padding up to a multiple of w."""
    seq = []
    for a in range(math.ceil(H / w)):
        for b in range(math.ceil(W / w)):
            for i in range(w):
                for j in range(w):
                    r, c = a * w + i, b * w + j
                    seq.append(r * W + c if r < H and c < W else -1)
    return seq[::-1] if flip else seq


def _release_sequence(d, H, W):
    base, flip = d.split('_')[0], d.endswith('_flip')
    if base == 'h':
        seq = list(range(H * W))
    elif base == 'v':
        seq = [r * W + c for c in range(W) for r in range(H)]
    else:
        return _window_sequence(H, W, int(base[1:]), flip)
    return seq[::-1] if flip else seq


@pytest.mark.parametrize('size', [(4, 5), (7, 7), (9, 16), (14, 14)])
@pytest.mark.parametrize('d', ALL_DIRECTIONS)
def test_each_route_is_the_release_sequence_and_a_permutation(d, size):
    H, W = size
    route = get_scan_route(f'local_{d}')
    assert route.num_routes == 1 and route.has_positions
    assert route.sequence(H, W).tolist() == _release_sequence(d, H, W)
    pos = route.positions(H, W)
    assert pos.shape == (1, H * W) and sorted(pos[0].tolist()) == list(range(H * W))


@pytest.mark.parametrize('size', [(5, 9), (8, 8)])
def test_merge_is_the_adjoint_of_scan(size):
    """Generic (pad-free) scan / merge, and the release's padded scan / unscan + sum."""
    H, W = size
    route = LocalScan(ALL_DIRECTIONS)
    assert route.num_routes == 8
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    xs = route.scan(x)
    ys = torch.randn_like(xs)
    torch.testing.assert_close((xs * ys).sum(), (x.flatten(2) * route.merge(ys, H, W)).sum())
    xs = route.scan_padded(x)
    assert xs.shape == (2, 8, 3, max(len(_release_sequence(d, H, W)) for d in ALL_DIRECTIONS))
    ys = torch.randn_like(xs)
    back = route.unscan(ys, H, W).sum(1)
    torch.testing.assert_close((xs * ys).sum(), (x.flatten(2) * back).sum())
    # each direction's round trip is exact (pads dropped)
    torch.testing.assert_close(route.unscan(xs, H, W), x.flatten(2)[:, None].expand_as(
        route.unscan(xs, H, W)))


def test_local_routes_are_registered():
    assert {f'local_{d}' for d in ALL_DIRECTIONS} <= set(SCAN_ROUTES)


# ---- the release's vertical reverse -----------------------------------------------------
def _release_v_reverse(y, H, W, flip):
    """multi_mamba.MultiScan.reverse for 'v' / 'v_flip': rearrange '(h w) -> (w h)'."""
    y = y.flip(-1) if flip else y
    return y.unflatten(-1, (H, W)).transpose(-1, -2).flatten(-2)


@pytest.mark.parametrize('size', [(6, 6), (6, 10), (13, 21)])
def test_release_v_reverse_option(size):
    H, W = size
    dirs = ('h', 'v', 'v_flip', 'w2')
    correct, release = LocalScan(dirs), LocalScan(dirs, release_v_reverse=True)
    x = torch.randn(1, 2, H, W)
    xs = correct.scan_padded(x)
    ys = torch.randn_like(xs)
    got = release.unscan(ys, H, W)
    for k, d in ((1, 'v'), (2, 'v_flip')):
        torch.testing.assert_close(  # the release crops the right padding first
            got[:, k], _release_v_reverse(ys[:, k, :, :H * W], H, W, d == 'v_flip'))
    torch.testing.assert_close(got[:, ::3], correct.unscan(ys, H, W)[:, ::3])  # h, w2 alike
    same = torch.equal(release.unscan(xs, H, W), correct.unscan(xs, H, W))
    assert same == (H == W)  # the release round trip scrambles non-square maps only


def test_release_v_reverse_model_agrees_on_square_maps_only():
    ref = randomize_(LocalVMamba(MINI)).eval()
    rel = LocalVMamba(MINI, release_v_reverse=True).eval()
    rel.load_state_dict(ref.state_dict())
    with torch.no_grad():
        for size, agree in (((32, 32), True), ((32, 48), False)):
            x = torch.randn(1, 3, *size)
            diffs = [(a - b).abs().max().item() for a, b in zip(ref(x), rel(x))]
            assert (max(diffs) < 1e-5) == agree, (size, diffs)


# ---- the block against the release's forward --------------------------------------------
def release_local_ss2d_forward(m, x, directions, release_v=True):
    """local_vmamba.SS2D.forward as the release computes it, on NHWC ``x``."""
    xz = F.linear(x, m.in_proj.weight)
    x, z = xz.chunk(2, dim=-1)
    x = F.silu(m.conv2d(x.permute(0, 3, 1, 2)))
    B, D, H, W = x.shape
    R, N, K = m.dt_rank, m.d_state, len(directions)
    flat = x.flatten(2)
    seqs = []
    for d in directions:  # MultiScanVSSM.multi_scan: zero tokens for -1, right-pad to max
        idx = _release_sequence(d, H, W)
        seqs.append(torch.stack([flat[:, :, i] if i >= 0 else flat.new_zeros(B, D)
                                 for i in idx], -1))
    lengths = [s.shape[-1] for s in seqs]
    xs = torch.stack([F.pad(s, (0, max(lengths) - s.shape[-1])) for s in seqs], 1)
    L = xs.shape[-1]
    x_dbl = torch.einsum('bkdl,kcd->bkcl', xs, m.x_proj_weight)
    dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
    dts = torch.einsum('bkrl,kdr->bkdl', dts, m.dt_projs_weight)
    ys = reference_scan(xs.reshape(B, -1, L), dts.reshape(B, -1, L), -torch.exp(m.A_logs),
                        Bs, Cs, m.Ds, m.dt_projs_bias.reshape(-1), True).float().view(B, K, D, L)
    outs = []
    for k, d in enumerate(directions):  # MultiScanVSSM.merge: crop, reverse, gate, sum
        y = ys[:, k, :, :lengths[k]]
        if release_v and d.startswith('v'):
            y = _release_v_reverse(y, H, W, d == 'v_flip')
        else:
            back = y.new_zeros(B, D, H * W)
            for t, i in enumerate(_release_sequence(d, H, W)):
                if i >= 0:
                    back[:, :, i] = y[:, :, t]
            y = back
        y = y.transpose(1, 2)
        g = m.channel_gate
        s = F.layer_norm(y, (D,), g.norm.weight, g.norm.bias, 1e-5).mean(1, keepdim=True)
        s = F.linear(F.gelu(F.linear(s, g.global_reduce.weight, g.global_reduce.bias)),
                     g.channel_select.weight, g.channel_select.bias)
        outs.append(y * torch.sigmoid(s))
    y = torch.stack(outs).sum(0)
    y = F.layer_norm(y, (D,), m.out_norm.weight, m.out_norm.bias, 1e-5).view(B, H, W, D)
    return F.linear(y * F.silu(z), m.out_proj.weight)


@pytest.mark.parametrize('release_v', [True, False])
@pytest.mark.parametrize('directions', [('h', 'v_flip', 'w7', 'w2_flip'),
                                        ('h_flip', 'v', 'w2', 'w7_flip')])
def test_local_ss2d_matches_release_forward(directions, release_v):
    torch.manual_seed(0)
    m = randomize_(LocalSS2D(8, directions=directions, release_v_reverse=release_v))
    x = torch.randn(2, 9, 11, 8)  # H != W, neither divisible by 2 or 7
    torch.testing.assert_close(m(x), release_local_ss2d_forward(m, x, directions, release_v),
                               atol=1e-4, rtol=1e-4)


# ---- training behaviour -----------------------------------------------------------------
def test_drop_path_rises_linearly_and_is_stochastic_in_training():
    model = LocalVMamba('tiny', drop_path_rate=0.2)
    rates = [b.drop_path.drop_prob for b in _blocks(model)]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.2)
    assert all(b - a == pytest.approx(0.2 / 14) for a, b in zip(rates, rates[1:]))
    mini = randomize_(LocalVMamba(MINI, drop_path_rate=0.5))
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    a = mini.train()(x)[-1]
    b = mini(x)[-1]
    assert not torch.allclose(a, b)
    with torch.no_grad():
        mini.eval()
        torch.testing.assert_close(mini(x)[-1], mini(x)[-1])


@pytest.mark.parametrize('frozen', [-1, 0, 2])
def test_frozen_stages(frozen):
    model = LocalVMamba(MINI, frozen_stages=frozen, drop_path_rate=0.5)
    model.train()
    frozen_mods = ([model.patch_embed] if frozen >= 0 else []) + \
        [m for i in range(frozen) for m in (model.layers[i], model.out_norms[i])]
    frozen_ids = {id(p) for m in frozen_mods for p in m.parameters()}
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) not in frozen_ids), name
    assert all(not m.training for m in frozen_mods)
    sum(o.sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    assert all(p.grad is None for m in frozen_mods for p in m.parameters())
    assert model.layers[3].blocks[0].op.channel_gate.channel_select.weight.grad is not None


def test_with_cp_same_outputs_and_grads(monkeypatch):
    import backbones.layers.blocks as layers
    calls = []
    real = layers.cp.checkpoint
    monkeypatch.setattr(layers.cp, 'checkpoint',
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    ref = randomize_(LocalVMamba(MINI, drop_path_rate=0.)).train()
    cpm = LocalVMamba(MINI, drop_path_rate=0., with_cp=True).train()
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 37, 29)
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
    model = randomize_(LocalVMamba(MINI)).eval()
    x = torch.randn(1, 3, 45, 35)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outs = model(x)
    assert scan_dtypes and set(scan_dtypes) == {(torch.float32, torch.float32)}
    for o, r in zip(outs, ref):
        assert torch.isfinite(o).all()
        assert (o.float() - r).abs().mean() < 0.1 * r.abs().mean()


# ---- pretrained weights -----------------------------------------------------------------
def release_state_dict(model, seed=0):
    """The release's ``local_vssm_*`` ``state_dict`` layout (bare VSSM keys) with distinct
    random values, built from the shapes of ``model``: ``patch_embed.0/.2``,
    ``op.multi_scan.attn.*``, a classifier, no output norms."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith('out_norms.'):
            continue
        key = key.replace('patch_embed.proj.', 'patch_embed.0.')
        key = key.replace('patch_embed.norm.', 'patch_embed.2.')
        key = key.replace('.op.channel_gate.', '.op.multi_scan.attn.')
        out[key] = torch.randn(value.shape, generator=g)
    C = model.dims[-1]
    out.update({'classifier.norm.weight': torch.ones(C), 'classifier.norm.bias': torch.zeros(C),
                'classifier.head.weight': torch.zeros(1000, C),
                'classifier.head.bias': torch.zeros(1000)})
    return out


def test_release_checkpoint_loads_strictly(tmp_path):
    release = release_state_dict(LocalVMamba(MINI))
    path = tmp_path / 'local_vssm_mini.ckpt'
    torch.save({'state_dict': release}, path)  # classification/tools/convert_ckpt.py format
    model = LocalVMamba(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    own = model.state_dict()
    assert torch.equal(own['patch_embed.proj.weight'], release['patch_embed.0.weight'])
    assert torch.equal(own['layers.2.blocks.1.op.channel_gate.channel_select.weight'],
                       release['layers.2.blocks.1.op.multi_scan.attn.channel_select.weight'])
    assert torch.equal(own['layers.0.downsample.reduction.weight'],
                       release['layers.0.downsample.reduction.weight'])
    loaded = len(release) - 4  # all but the classifier
    assert loaded == len([k for k in own if not k.startswith('out_norms.')])


def test_wrong_size_checkpoint_names_keys(tmp_path):
    release = release_state_dict(LocalVMamba(dict(MINI, embed_dim=24)))
    path = tmp_path / 'wide.ckpt'
    torch.save({'state_dict': release}, path)
    with pytest.raises(CheckpointError) as err:
        LocalVMamba(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    msg = str(err.value)
    assert 'shape mismatches' in msg
    assert 'layers.0.blocks.0.op.channel_gate.global_reduce.weight' in msg


def test_convert_pretrained_is_idempotent():
    once = LocalVMamba.convert_pretrained(release_state_dict(LocalVMamba(MINI)))
    twice = LocalVMamba.convert_pretrained(once)
    assert list(once) == list(twice) and not any(k.startswith('classifier.') for k in once)


# ---- det / seg configs ------------------------------------------------------------------
def _config(name):
    return osp.join(REPO, 'det_configs' if name.startswith('mask-rcnn') else 'seg_configs', name)


def _build(path):
    import mmdet.utils
    import mmseg.utils
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(path)
    (mmdet.utils if cfg.default_scope == 'mmdet' else mmseg.utils).register_all_modules(False)
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model), cfg


@pytest.mark.parametrize('name', list(MODEL_PARAMS))
def test_model_params_equal_the_reference(name):
    model, cfg = _build(_config(name))
    assert type(model.backbone).__name__ == 'LocalVMamba'
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - MODEL_PARAMS[name]) <= 100_000, n
    assert n == MODEL_PARAMS[name]  # exact, as the reference's count
    assert cfg.pretrained.startswith('checkpoints/localvmamba/')





def test_convert_checkpoint_tool(tmp_path):
    """The release's local_vssm_small.ckpt format through tools/convert_checkpoint.py."""
    release = release_state_dict(LocalVMamba('tiny'))
    src, dst = tmp_path / 'local_vssm_tiny.ckpt', tmp_path / 'out' / 'local_vssm_tiny.pth'
    torch.save({'state_dict': release}, src)
    proc = call_tool('convert_checkpoint', src, dst,
                    '--backbone', 'LocalVMamba', '--arch', 'tiny')
    assert '24.76M params' in proc.stdout
    model = LocalVMamba('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    assert torch.equal(model.state_dict()['layers.3.blocks.1.op.channel_gate.norm.weight'],
                       release['layers.3.blocks.1.op.multi_scan.attn.norm.weight'])
