"""SG-Former dense backbones (backbones/models/sgformer.py) and their det/seg configs.

Reference values come from outside the code under test: the official release
(OliverRensu/SG-Former @ b982803: ``sgformer.py``, classification only) for the sizes, the
blocks and the checkpoint key layout; parameter counts were measured on the release's module
(../shared/reference/remaining_rows.md, sections 0.2 and 3.4: backbone [inst], Mask R-CNN and
UperNet [calc]; B's Mask R-CNN = its backbone + the FPN/RPN/RoI-head sum of section 0.2 for
widths 96-768). The release has no dense code: where it runs (every stage map a multiple of 7,
whole token groups) the slow tests run it against ours; the generalisation to other sizes is
checked against direct evaluations of what the module docstring specifies (windows cut by the
border, partial token groups).
"""
import importlib.util
import os.path as osp
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backbones.engine.checkpoint import CheckpointError
from backbones.models.sgformer import (
    HybridScaleAttention,
    SGFormer,
    SignificanceGuidedAttention,
    sincos_pos_embed,
)
from conftest import REPO, call_tool, randomize_, release_source

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')

RELEASE = ('OliverRensu/SG-Former', 'b982803ceb0af70ff20f42784ddac51212ef954e')
BACKBONE_PARAMS = {'small': 22_032_981, 'medium': 38_176_316, 'base': 77_181_293}
MODEL_PARAMS = {
    'mask-rcnn_sgformer-s_fpn_8xb2-amp-1x_coco.py': 42_184_005,
    'mask-rcnn_sgformer-m_fpn_8xb2-amp-1x_coco.py': 58_327_340,
    'mask-rcnn_sgformer-b_fpn_8xb2-amp-1x_coco.py': 77_181_293 + 20_273_904,
    'upernet_sgformer-s_8xb2-amp-160k_ade20k-512x512.py': 52_340_609,
    'upernet_sgformer-m_8xb2-amp-160k_ade20k-512x512.py': 68_483_944,
    'upernet_sgformer-b_8xb2-amp-160k_ade20k-512x512.py': 109_602_457,
}
# cheap arch with every block kind (hybrid / guided in stages 1-3, global in stage 4)
MINI = dict(dims=(16, 32, 64, 128), num_heads=(2, 2, 4, 4), depths=(2, 2, 2, 1))


def _blocks(model):
    return [b for stage in model.stages for b in stage.blocks]


# ---- sizes and shapes -------------------------------------------------------------------
@pytest.mark.parametrize('arch', ['small', 'medium', 'base'])
def test_params_and_structure_are_the_releases(arch):
    with torch.device('meta'):  # shapes only
        model = SGFormer(arch)
    assert sum(p.numel() for p in model.parameters()) == BACKBONE_PARAMS[arch]
    depths = {'small': (2, 4, 16, 1), 'medium': (2, 6, 28, 2), 'base': (4, 6, 24, 2)}[arch]
    assert [len(s.blocks) for s in model.stages] == list(depths)
    for i, stage in enumerate(model.stages):  # alternating hybrid / guided, global last
        want = ['global'] * depths[i] if i == 3 else \
            ['guided' if j % 2 else 'hybrid' for j in range(depths[i])]
        assert [b.kind for b in stage.blocks] == want
    assert [f.in_features for f in (model.stages[0].blocks[1].attn.f1,
                                    model.stages[0].blocks[1].attn.f2,
                                    model.stages[0].blocks[1].attn.f3)] == [196, 56, 28]
    assert not hasattr(model.stages[2].blocks[1].attn, 'f3')
    assert model.stem.pos_embed.shape == (1, 56 * 56, model.dims[0])
    assert all(isinstance(n, torch.nn.Identity) for n in model.out_norms)


@pytest.mark.parametrize('size,shapes', [
    ((97, 131), [(25, 33), (13, 17), (7, 9), (4, 5)]),
    ((512, 512), [(128, 128), (64, 64), (32, 32), (16, 16)]),
])
def test_runs_at_any_size_with_gradients(size, shapes):
    """Sizes the release cannot run (maps not multiples of 7, partial token groups)."""
    model = randomize_(SGFormer(MINI, drop_path_rate=0.)).train()
    x = torch.randn(1, 3, *size, requires_grad=True)
    outs = model(x)
    assert [tuple(o.shape) for o in outs] == [(1, c, *s) for c, s in zip(MINI['dims'], shapes)]
    assert all(torch.isfinite(o).all() and o.is_contiguous() for o in outs)
    sum(o.square().mean() for o in outs).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), \
        [n for n, g in grads.items() if g is None]


@pytest.mark.slow
def test_runs_at_detection_size_with_gradients():
    """800x1344 (the Mask R-CNN input): stage maps 200x336 ... 25x42."""
    model = randomize_(SGFormer(MINI, drop_path_rate=0.)).train()
    x = torch.randn(1, 3, 800, 1344, requires_grad=True)
    outs = model(x)
    assert [tuple(o.shape[2:]) for o in outs] == [(200, 336), (100, 168), (50, 84), (25, 42)]
    sum(o.square().mean() for o in outs).backward()
    assert all(torch.isfinite(o).all() for o in outs) and torch.isfinite(x.grad).all()


def test_smallest_input_and_too_small_input():
    model = SGFormer(MINI).eval()
    with torch.no_grad():
        assert [tuple(o.shape[2:]) for o in model(torch.randn(1, 3, 29, 40))] == \
            [(8, 10), (4, 5), (2, 3), (1, 2)]
        with pytest.raises(ValueError, match=r'a 28x40 input gives stage 0 a 7x10 map, smaller '
                                             r'than its 8x8 key pooling'):
            model(torch.randn(1, 3, 28, 40))


def test_out_indices_skip_unused_stages():
    model = randomize_(SGFormer(MINI, out_indices=(1, 2))).eval()
    full = SGFormer(MINI).eval()
    full.load_state_dict(model.state_dict())
    assert model.out_channels == (32, 64)
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        outs, ref = model(x), full(x)
    assert [tuple(o.shape) for o in outs] == [(2, 32, 6, 8), (2, 64, 3, 4)]
    torch.testing.assert_close(outs[0], ref[1])
    torch.testing.assert_close(outs[1], ref[2])


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='tiny'), r"unknown arch 'tiny'; valid names: small, medium, base"),
    (dict(arch=dict(MINI, heads=2)), r"unknown arch keys \['heads'\]"),
    (dict(arch=dict(MINI, depths=(2, 2, 2))), 'one per stage'),
    (dict(arch=dict(MINI, sr_ratios=(8, 4, 3, 1))), r'sr_ratios must each be 8, 4, 2'),
    (dict(arch=dict(MINI, num_heads=(3, 2, 4, 4))), r'stage 0: dims 16 must divide'),
    (dict(arch=dict(MINI, dims=(18, 32, 64, 128))), 'multiple of 4'),
    (dict(arch=dict(MINI, num_heads=(2, 2, 1, 4), dims=(16, 32, 64, 128))), 'an even number'),
    (dict(arch=dict(MINI, mlp_ratio=0)), 'mlp_ratio must be a positive number'),
    (dict(in_channels=0), 'in_channels'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(out_indices=(4,)), 'out_indices'),
    (dict(frozen_stages=5), 'frozen_stages'),
    (dict(with_cp=(True, False)), 'with_cp must be a bool or 4 bools'),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGFormer(**dict(dict(arch=MINI), **kwargs))


# ---- the generalisation, against direct evaluations -------------------------------------
def test_window_attention_on_cut_windows_is_attention_over_real_tokens():
    """A 10x16 map: windows cut by the bottom / right border attend over their real tokens
    only; a key's window significance is its attention averaged over heads and the window's
    real queries."""
    torch.manual_seed(0)
    attn = HybridScaleAttention(16, 4, sr_ratio=2).double()
    B, h, H, W, d = 2, 2, 10, 16, 4
    q, k, v = (torch.randn(B, h, H * W, d, dtype=torch.float64) for _ in range(3))
    out, sig = attn.window_attention(q, k, v, (H, W))
    want_out = torch.zeros(B, H, W, h, d, dtype=torch.float64)
    want_sig = torch.zeros(B, H, W, dtype=torch.float64)
    grid = lambda t: t.reshape(B, h, H, W, d)  # noqa: E731
    for r in range(0, H, 7):
        for c in range(0, W, 7):
            rows, cols = slice(r, min(r + 7, H)), slice(c, min(c + 7, W))
            n = (rows.stop - r) * (cols.stop - c)
            qw, kw, vw = (grid(t)[:, :, rows, cols].reshape(B, h, n, d) for t in (q, k, v))
            a = torch.softmax(qw @ kw.transpose(-1, -2) * d ** -0.5, dim=-1)
            want_out[:, rows, cols] = (a @ vw).permute(0, 2, 1, 3).reshape(
                B, rows.stop - r, cols.stop - c, h, d)
            want_sig[:, rows, cols] = a.mean(1).mean(1).reshape(B, rows.stop - r, -1)
    torch.testing.assert_close(out, want_out.reshape(B, H * W, h * d))
    torch.testing.assert_close(sig, want_sig)
    assert (sig[:, 7:, 14:].sum() / B).item() == pytest.approx(1.0)  # a 3x2 window: sums to 1


@pytest.mark.parametrize('sr,N', [(8, 1000), (4, 130), (2, 35)])
def test_token_groups_pool_consecutive_sorted_tokens(sr, N):
    """Parts at N // 4 and 3N // 4 (sr 2: N // 2), each pooled in consecutive groups of its
    linear's size; a partial last group sums its real tokens only."""
    torch.manual_seed(0)
    attn = randomize_(SignificanceGuidedAttention(8, 2, sr)).double()
    x = torch.randn(2, N, 8, dtype=torch.float64)
    order = torch.stack([torch.randperm(N), torch.randperm(N)])
    got = attn.pool_groups(x, order)
    bounds = (0, N // 4, N // 4 * 3, N) if sr > 2 else (0, N // 2, N)
    want = []
    for b in range(2):
        xs, pooled = x[b, order[b]], []
        for i, size in enumerate(attn.group_sizes):
            fc = getattr(attn, f'f{i + 1}')
            for start in range(bounds[i], bounds[i + 1], size):
                stop = min(start + size, bounds[i + 1])
                w = fc.weight[0, :stop - start]
                pooled.append((w[:, None] * xs[start:stop]).sum(0) + fc.bias)
        want.append(torch.stack(pooled))
    torch.testing.assert_close(got, torch.stack(want))
    groups = sum(-(-(bounds[i + 1] - bounds[i]) // s) for i, s in enumerate(attn.group_sizes))
    assert got.shape == (2, groups, 8)


def test_position_table_is_resized_to_the_stage_1_map():
    model = SGFormer(MINI)
    table = model.stem.pos_embed
    assert model.stem.position_table(56, 56) is table
    grid = table.detach().reshape(1, 56, 56, 16).permute(0, 3, 1, 2)
    want = F.interpolate(grid, size=(25, 33), mode='bicubic', align_corners=False)
    torch.testing.assert_close(model.stem.position_table(25, 33).detach(),
                               want.permute(0, 2, 3, 1).reshape(1, 25 * 33, 16))


def test_position_table_starts_as_2d_sincos():
    """MAE's table (the release's pos_embed.py): channels [sin(x w), cos(x w), sin(y w),
    cos(y w)] with w_k = 10000^(-k / (C / 4)), x the column, y the row."""
    table = SGFormer(MINI).stem.pos_embed.detach()[0].reshape(56, 56, 16)
    w = 10000. ** (-np.arange(4) / 4.)
    y, x = 5, 9
    want = np.concatenate([np.sin(x * w), np.cos(x * w), np.sin(y * w), np.cos(y * w)])
    np.testing.assert_allclose(table[y, x].numpy(), want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sincos_pos_embed(16, 56), table.reshape(1, -1, 16))


# ---- training behaviour -----------------------------------------------------------------
def test_drop_path_rises_linearly_and_is_stochastic_in_training():
    model = SGFormer('small', drop_path_rate=0.2)
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0.
             for b in _blocks(model)]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.2)
    assert all(b - a == pytest.approx(0.2 / 22) for a, b in zip(rates, rates[1:]))
    mini = randomize_(SGFormer(MINI, drop_path_rate=0.5))
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
    model = SGFormer(MINI, frozen_stages=frozen, drop_path_rate=0.5)
    model.train()
    frozen_mods = ([model.stem] if frozen >= 0 else []) + list(model.stages[:max(frozen, 0)])
    frozen_ids = {id(p) for m in frozen_mods for p in m.parameters()}
    assert (id(model.stem.pos_embed) in frozen_ids) == (frozen >= 0)
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) not in frozen_ids), name
    assert all(not m.training for m in frozen_mods)
    sum(o.sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    assert all(p.grad is None for m in frozen_mods for p in m.parameters())
    assert model.stages[3].blocks[0].attn.q.weight.grad is not None


def test_with_cp_same_outputs_and_grads(monkeypatch):
    import backbones.models.sgformer as sg
    calls = []
    real = sg.cp.checkpoint
    monkeypatch.setattr(sg.cp, 'checkpoint', lambda *a, **k: calls.append(k) or real(*a, **k))
    ref = randomize_(SGFormer(MINI, drop_path_rate=0.)).train()
    cpm = SGFormer(MINI, drop_path_rate=0., with_cp=True).train()
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 37, 45)
    outs = [m(x) for m in (ref, cpm)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for o in outs:
        sum((t ** 2).sum() for t in o).backward()
    for (name, p), q in zip(ref.named_parameters(), cpm.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert len(calls) == 7 and all(k.get('use_reentrant') is False for k in calls)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_autocast_is_finite_and_close(dtype):
    model = randomize_(SGFormer(MINI)).eval()
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outs = model(x)
    for o, r in zip(outs, ref):
        assert torch.isfinite(o).all()
        assert (o.float() - r).abs().mean() < 0.05 * r.abs().mean()


# ---- pretrained weights -----------------------------------------------------------------
def release_key(key):
    """Our key -> the release's (``patch_embed1.conv.{0,2,4}.{c,bn}``, ``block{i}.j``...)."""
    parts = key.split('.')
    conv_sub = {'conv': 'c', 'norm': 'bn'}
    if key == 'stem.pos_embed':
        return 'pos_embed'
    if parts[0] == 'stem':
        if parts[1] == 'norm':
            return 'patch_embed1.' + '.'.join(parts[1:])
        index = {'conv1': '0', 'conv2': '2', 'conv3': '4'}[parts[1]]
        return f'patch_embed1.conv.{index}.{conv_sub[parts[2]]}.{parts[3]}'
    stage = int(parts[1]) + 1
    if parts[2] == 'downsample':
        return f'patch_embed{stage}.{parts[3]}.{conv_sub[parts[4]]}.{parts[5]}'
    if parts[2] == 'norm':
        return f'norm{stage}.{parts[3]}'
    rest = '.'.join(parts[4:]).replace('mlp.dwconv.', 'mlp.dwconv.dwconv.')
    return f'block{stage}.{parts[3]}.{rest}'


def release_state_dict(model, seed=0, classifier=True):
    """The release's key layout with distinct random values, built from ``model``'s shapes."""
    g = torch.Generator().manual_seed(seed)
    out = {release_key(k): torch.randn(v.shape, generator=g)
           for k, v in model.state_dict().items()}
    if classifier:
        out.update({'head.weight': torch.zeros(1000, model.dims[-1]),
                    'head.bias': torch.zeros(1000)})
    return out


def test_release_key_names_match_the_reference_file():
    """Keys spelled as in remaining_rows.md section 3.5."""
    keys = set(release_state_dict(SGFormer(MINI)))
    assert {'pos_embed', 'patch_embed1.conv.0.c.weight', 'patch_embed1.conv.4.bn.bias',
            'patch_embed1.norm.weight', 'patch_embed2.conv1.c.weight',
            'patch_embed4.conv3.bn.weight', 'block1.0.attn.q1.weight', 'block1.0.attn.sr.weight',
            'block1.0.attn.norm.weight', 'block1.1.attn.f3.weight', 'block3.1.attn.f2.bias',
            'block1.1.attn.kv2.weight', 'block4.0.attn.kv.weight',
            'block2.1.attn.lepe_conv.weight', 'block2.0.mlp.dwconv.dwconv.weight',
            'norm4.bias', 'head.weight'} <= keys


def test_imagenet_checkpoint_loads_strictly_preferring_ema(tmp_path):
    """The release's timm training script saves ``state_dict`` and ``state_dict_ema``; its
    evaluation loads the EMA weights."""
    model = SGFormer(MINI)
    release, ema = release_state_dict(model, seed=0), release_state_dict(model, seed=1)
    path = tmp_path / 'sgformer_mini.pth.tar'
    torch.save({'epoch': 299, 'arch': 'sgformer_s', 'state_dict': release,
                'state_dict_ema': ema}, path)
    model = SGFormer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    own = model.state_dict()
    assert len(own) == len(ema) - 2  # all but the classifier
    for ours, theirs in (('stem.pos_embed', 'pos_embed'),
                         ('stem.conv2.norm.weight', 'patch_embed1.conv.2.bn.weight'),
                         ('stages.2.downsample.conv3.conv.weight', 'patch_embed3.conv3.c.weight'),
                         ('stages.0.blocks.1.attn.f1.weight', 'block1.1.attn.f1.weight'),
                         ('stages.1.blocks.0.mlp.dwconv.bias', 'block2.0.mlp.dwconv.dwconv.bias'),
                         ('stages.3.norm.weight', 'norm4.weight')):
        assert torch.equal(own[ours], ema[theirs]), ours
    plain = tmp_path / 'plain.pth'
    torch.save({'state_dict': release}, plain)
    model = SGFormer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(plain)))
    model.init_weights()
    assert torch.equal(model.state_dict()['stem.pos_embed'], release['pos_embed'])


def test_own_detector_checkpoint_backbone_loads_by_prefix(tmp_path):
    """No det/seg checkpoint was released; a suite-trained one (our keys under
    ``backbone.``) loads back strictly."""
    model = randomize_(SGFormer(MINI))
    full = {f'backbone.{k}': v for k, v in model.state_dict().items()}
    full['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 16, 1, 1)
    path = tmp_path / 'mask_rcnn_sgformer_mini.pth'
    torch.save({'meta': {}, 'state_dict': full}, path)
    loaded = SGFormer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                          prefix='backbone.'))
    loaded.init_weights()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_wrong_size_checkpoint_names_keys(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': release_state_dict(SGFormer(dict(MINI, depths=(2, 2, 4, 1))))},
               path)
    with pytest.raises(CheckpointError, match=r'unexpected keys \(\d+\): '
                                              r'stages\.2\.blocks\.2\.attn\.kv1\.bias'):
        SGFormer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    torch.save({'state_dict': release_state_dict(SGFormer(dict(MINI, dims=(24, 32, 64, 128),
                                                                num_heads=(2, 2, 4, 4))))},
               path)
    with pytest.raises(CheckpointError, match=r'shape mismatches \(65\): '
                                              r'stages\.0\.blocks\.0\.attn\.kv1\.bias'):
        SGFormer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


def test_convert_pretrained_is_idempotent():
    once = SGFormer.convert_pretrained(release_state_dict(SGFormer(MINI)))
    twice = SGFormer.convert_pretrained(once)
    assert list(once) == list(twice) and all(once[k] is twice[k] for k in once)
    assert set(once) == set(SGFormer(MINI).state_dict())


def test_convert_checkpoint_tool(tmp_path):
    """The release's ImageNet layout (timm's checkpoint saver) through
    tools/convert_checkpoint.py."""
    release = release_state_dict(SGFormer('small'))
    ema = {k: v + 1 for k, v in release.items()}
    src, dst = tmp_path / 'sgformer_s.pth.tar', tmp_path / 'out' / 'sgformer_s.pth'
    torch.save({'state_dict': release, 'state_dict_ema': ema}, src)
    proc = call_tool('convert_checkpoint', src, dst,
                    '--backbone', 'SGFormer', '--arch', 'small')
    assert '22.03M params' in proc.stdout
    model = SGFormer('small', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    assert torch.equal(model.state_dict()['stages.2.blocks.15.attn.f2.weight'],
                       ema['block3.15.attn.f2.weight'])


# ---- det / seg configs ------------------------------------------------------------------
def _config(name):
    return osp.join(REPO, 'det_configs' if name.startswith('mask-rcnn') else 'seg_configs', name)


def _build(path, device='meta'):
    import mmdet.utils
    import mmseg.utils
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(path)
    (mmdet.utils if cfg.default_scope == 'mmdet' else mmseg.utils).register_all_modules(False)
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope), torch.device(device):
        return MODELS.build(cfg.model), cfg


@pytest.mark.parametrize('name', list(MODEL_PARAMS))
def test_model_params_equal_the_reference(name):
    model, cfg = _build(_config(name))
    assert type(model.backbone).__name__ == 'SGFormer'
    assert sum(p.numel() for p in model.parameters()) == MODEL_PARAMS[name]
    size = name.split('sgformer-')[1][0]
    assert cfg.pretrained == f'checkpoints/sgformer/sgformer_{size}.pth'


@pytest.mark.parametrize('name', ['mask-rcnn_sgformer-s_fpn_8xb2-amp-1x_coco.py',
                                  'upernet_sgformer-s_8xb2-amp-160k_ade20k-512x512.py'])
def test_position_table_is_not_decayed(name):
    from mmengine.optim import build_optim_wrapper
    model, cfg = _build(_config(name))
    cfg.optim_wrapper.type = 'OptimWrapper'  # AmpOptimWrapper needs CUDA
    cfg.optim_wrapper.pop('loss_scale')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    assert decay[id(model.backbone.stem.pos_embed)] == 0
    assert decay[id(model.backbone.stages[0].blocks[1].attn.f1.weight)] > 0


# ---- equivalence with the release ---------------------------------------------------------
@pytest.fixture(scope='module')
def release_module(tmp_path_factory):
    """The release's sgformer.py, imported from its pinned snapshot. Its pos_embed.py uses
    ``np.float`` (removed in NumPy 1.24), an alias of the builtin float: restored on numpy
    while the release runs, its files untouched."""
    root = release_source(*RELEASE, tmp_path_factory.mktemp('sgformer_release'),
                          paths=('sgformer.py', 'pos_embed.py'))
    had_float = hasattr(np, 'float')
    np.float = float
    sys.path.insert(0, root)
    try:
        spec = importlib.util.spec_from_file_location('sgformer_release',
                                                      osp.join(root, 'sgformer.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # timm's register_model looks its module up
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(root)
        for name in ('sgformer_release', 'pos_embed'):
            sys.modules.pop(name, None)
        if not had_float:
            del np.float


def _release_stages(ref, x):
    """The release's four stage outputs (its ``norm{i}``, captured by hooks) as NCHW, from
    its own forward_features, with the position table resized for x (bicubic, as its
    interpolate_pos_embed, generalised to non-square grids)."""
    H1, W1 = -(-x.shape[2] // 4), -(-x.shape[3] // 4)
    grid = ref.pos_embed_56.reshape(1, 56, 56, -1).permute(0, 3, 1, 2)
    if (H1, W1) != (56, 56):
        grid = F.interpolate(grid, size=(H1, W1), mode='bicubic', align_corners=False)
    ref.pos_embed = torch.nn.Parameter(grid.permute(0, 2, 3, 1).flatten(1, 2))
    captured = {}
    hooks = [getattr(ref, f'norm{i + 1}').register_forward_hook(
        lambda m, a, o, i=i: captured.__setitem__(i, o)) for i in range(4)]
    try:
        ref.forward_features(x)
    finally:
        for h in hooks:
            h.remove()
    outs, (H, W) = [], (H1, W1)
    for i in range(4):
        outs.append(captured[i].reshape(x.shape[0], H, W, -1).permute(0, 3, 1, 2))
        H, W = -(-H // 2), -(-W // 2)
    return outs


def _release_model(release_module, arch, seed=0):
    torch.manual_seed(seed)
    ref = getattr(release_module, f'sgformer_{arch}')(num_classes=0)
    randomize_(ref, seed)
    ref.pos_embed_56 = ref.pos_embed.detach().clone()
    return ref.eval()


@pytest.mark.slow
def test_param_counts_and_position_table_are_the_releases(release_module):
    for arch, name in (('s', 'small'), ('m', 'medium'), ('b', 'base')):
        ref = getattr(release_module, f'sgformer_{arch}')(num_classes=0)
        assert sum(p.numel() for p in ref.parameters()) == BACKBONE_PARAMS[name]
    torch.testing.assert_close(SGFormer('base').stem.pos_embed.detach(), ref.pos_embed.detach(),
                               atol=1e-6, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize('arch,sizes', [
    ('s', [(224, 224), (448, 448), (224, 448), (112, 448)]), ('b', [(224, 224), (112, 448)])])
def test_equals_release_where_it_runs(release_module, arch, sizes):
    """The release's SGFormer (seeded random weights, converted through our converter): all
    four stage outputs and the input gradient, at the sizes it can run. 112x448 (not a
    multiple of 32) is one: stage maps 28x112, 14x56, 7x28, 4x14, whole token groups, and
    the global half pools 28 rows by 8 (floored to 3), upsampling by a non-integer factor."""
    ref = _release_model(release_module, arch)
    ours = SGFormer({'s': 'small', 'b': 'base'}[arch], drop_path_rate=0.)
    state = dict(ref.state_dict(), pos_embed=ref.pos_embed_56)
    ours.load_state_dict(SGFormer.convert_pretrained(state), strict=True)
    ours.eval()
    for size in sizes:
        x = torch.randn(1, 3, *size, requires_grad=True)
        want, got = _release_stages(ref, x), ours(x)
        assert len(got) == 4
        for i, (a, b) in enumerate(zip(got, want)):
            err = (a - b).abs().max().item()
            print(f'sgformer_{arch} {size} stage {i} {tuple(b.shape)}: max abs {err:.2e}, '
                  f'rel {err / b.abs().max().item():.2e}')
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        gw, = torch.autograd.grad(sum(o.square().mean() for o in want), x)
        gg, = torch.autograd.grad(sum(o.square().mean() for o in got), x)
        print(f'sgformer_{arch} {size} input grad: max abs {(gg - gw).abs().max():.2e}')
        torch.testing.assert_close(gg, gw, atol=1e-6, rtol=1e-4)
