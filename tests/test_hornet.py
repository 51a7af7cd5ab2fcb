"""HorNet (GF) dense backbones (backbones/models/hornet.py), their configs and lr decay.

Reference values come from outside the code under test: the official release
(github.com/raoyongming/HorNet @ ac9e210: ``semantic_segmentation/models/hornet.py``, its GF
UperNet configs, ``mmcv_custom/checkpoint.py`` and ``layer_decay_optimizer_constructor.py``)
and parameter counts measured on the release's modules
(../shared/reference/remaining_rows.md, section 5.3, and 0.2 for the mmdet heads). The slow
tests at the end run the release's own module and optimizer constructor from the pinned
snapshot.
"""
import importlib.util
import os.path as osp
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from backbones.engine.checkpoint import CheckpointError
from backbones.models.hornet import (
    GlobalLocalFilter,
    HorNet,
    HorNetLayerDecayOptimWrapperConstructor,
)
from conftest import REPO, call_tool, load_tool, randomize_, release_source

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')

RELEASE = ('raoyongming/HorNet', 'ac9e21058935f1cf8e27fcca72bbf598fa691d69')
SEG_GF = (None, None, (24, 13), (12, 7))
# backbone with its four output norms, [inst] on the release's modules
PARAMS_IMAGENET_GF = {'tiny-gf': 22_479_744, 'small-gf': 49_634_112, 'base-gf': 87_398_144}
PARAMS_SEG_GF = {'tiny-gf': 24_318_848, 'small-gf': 52_392_768, 'base-gf': 91_076_352}
COMPLEX_WEIGHT_SEG = {'tiny-gf': 2_862_336, 'small-gf': 4_293_504, 'base-gf': 5_724_672}
# whole models: UperNet [calc] of the reference; Mask R-CNN = ImageNet-size backbone above +
# mmdet's FPN / RPN / RoI heads for its widths (reference section 0.2)
MODEL_PARAMS = {
    'upernet_hornet-t-gf_8xb2-amp-160k_ade20k-512x512.py': 54_626_476,
    'upernet_hornet-s-gf_8xb2-amp-160k_ade20k-512x512.py': 84_813_932,
    'upernet_hornet-b-gf_8xb2-amp-160k_ade20k-512x512.py': 125_611_052,
    'mask-rcnn_hornet-t-gf_fpn_8xb2-amp-1x_coco.py': 22_479_744 + 20_151_024,
    'mask-rcnn_hornet-s-gf_fpn_8xb2-amp-1x_coco.py': 49_634_112 + 20_273_904,
    'mask-rcnn_hornet-b-gf_fpn_8xb2-amp-1x_coco.py': 87_398_144 + 20_396_784,
}
# the release's UperNet GF configs: drop path, num_layers of the stage-wise decay 0.9
SEG_RECIPE = {'t': (0.4, 6), 's': (0.3, 12), 'b': (0.5, 12)}
# a cheap model with both kinds of depthwise operator and every gnconv order
MINI = dict(base_dim=16, depths=(1, 1, 2, 1), orders=(2, 3, 4, 5),
            gf_sizes=(None, None, (6, 4), (3, 2)))


# ---- sizes and shapes ---------------------------------------------------------------------
@pytest.mark.parametrize('arch', list(PARAMS_IMAGENET_GF))
def test_params_are_the_releases(arch):
    def count(model, part=''):
        return sum(p.numel() for n, p in model.named_parameters() if part in n)
    with torch.device('meta'):  # counting only: no memory, no init
        imagenet, seg = HorNet(arch), HorNet(arch, gf_sizes=SEG_GF)
    assert count(imagenet) == PARAMS_IMAGENET_GF[arch]
    assert count(seg) == PARAMS_SEG_GF[arch]
    assert count(seg, 'complex_weight') == COMPLEX_WEIGHT_SEG[arch]
    assert seg.stages[2].blocks[0].gnconv.dwconv.complex_weight.shape[1:] == (24, 13, 2)
    assert seg.stages[3].blocks[0].gnconv.dwconv.complex_weight.shape[1:] == (12, 7, 2)
    assert isinstance(seg.stages[1].blocks[0].gnconv.dwconv, torch.nn.Conv2d)


def test_stage_shapes_at_odd_input():
    """No padding, as the release: the 4x4/s4 stem and 2x2/s2 convs floor the map sizes."""
    model = HorNet('tiny-gf', gf_sizes=SEG_GF).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 97, 131))
    assert [tuple(o.shape) for o in outs] == [
        (1, 64, 24, 32), (1, 128, 12, 16), (1, 256, 6, 8), (1, 512, 3, 4)]
    assert all(torch.isfinite(o).all() and o.is_contiguous() for o in outs)
    assert model.out_channels == (64, 128, 256, 512)


def test_out_indices_and_nchw():
    model = HorNet(MINI, out_indices=(1, 3)).eval()
    assert model.out_channels == (32, 128)
    assert isinstance(model.out_norms[0], torch.nn.Identity)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 45, 67))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 5, 8), (2, 128, 1, 2)]


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='large-gf'), r"unknown arch 'large-gf'; valid names: tiny-gf, small-gf"),
    (dict(arch=dict(MINI, heads=2)), r"exactly the keys \['base_dim', 'depths'"),
    (dict(arch=dict(MINI, orders=(2, 3))), 'one order per stage'),
    (dict(arch=dict(MINI, gf_sizes=(None, (4, 4)))), 'for each of the 4 stages'),
    (dict(arch=dict(MINI, base_dim=10)), 'stage 2 width 40 must be divisible by 16'),
    (dict(gf_sizes=(None, (24, 13), (24, 13), (12, 7))), 'changes which stages'),
    (dict(gf_sizes=(None, None, (24, 0), (12, 7))), r'the \(h, w\) of its global filter'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(out_indices=(4,)), 'out_indices'),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HorNet(**kwargs)


# ---- the global filter against the release's forward --------------------------------------
def _ln_channels_first(x, norm):
    """The release's ``LayerNorm(data_format='channels_first')`` written out."""
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    return norm.weight[:, None, None] * ((x - u) / torch.sqrt(s + 1e-6)) + norm.bias[:, None, None]


def release_global_local_filter(m, x):
    """``GlobalLocalFilter.forward`` as the release computes it (ours' weights)."""
    x = _ln_channels_first(x, m.pre_norm)
    x1, x2 = torch.chunk(x, 2, dim=1)
    x1 = m.dw(x1)
    B, C, a, b = x2.shape
    x2 = torch.fft.rfft2(x2.float(), dim=(2, 3), norm='ortho')
    weight = m.complex_weight
    if weight.shape[1:3] != x2.shape[2:4]:
        weight = F.interpolate(weight.permute(3, 0, 1, 2), size=x2.shape[2:4], mode='bilinear',
                               align_corners=True).permute(1, 2, 3, 0)
    x2 = torch.fft.irfft2(x2 * torch.view_as_complex(weight.contiguous()), s=(a, b),
                          dim=(2, 3), norm='ortho')
    x = torch.cat([x1.unsqueeze(2), x2.unsqueeze(2)], dim=2).reshape(B, 2 * C, a, b)
    return _ln_channels_first(x, m.post_norm)


@pytest.mark.parametrize('size', [(6, 7), (9, 13), (11, 5)])  # (6, 4): the stored size
def test_global_local_filter_matches_release_forward(size):
    torch.manual_seed(0)
    m = randomize_(GlobalLocalFilter(12, (6, 4)))
    x = torch.randn(2, 12, *size)
    torch.testing.assert_close(m(x), release_global_local_filter(m, x), atol=1e-5, rtol=1e-5)


# ---- training behaviour -------------------------------------------------------------------
def _blocks(model):
    return [b for stage in model.stages for b in stage.blocks]


def test_drop_path_rises_linearly_and_is_stochastic_in_training():
    model = HorNet('tiny-gf', drop_path_rate=0.4)
    rates = [b.drop_path.drop_prob for b in _blocks(model)]
    assert len(rates) == 25 and rates[0] == 0 and rates[-1] == pytest.approx(0.4)
    assert all(b - a == pytest.approx(0.4 / 24) for a, b in zip(rates, rates[1:]))
    mini = randomize_(HorNet(MINI, drop_path_rate=0.5))
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    assert not torch.allclose(mini.train()(x)[-1], mini(x)[-1])
    with torch.no_grad():
        mini.eval()
        torch.testing.assert_close(mini(x)[-1], mini(x)[-1])


@pytest.mark.parametrize('frozen', [-1, 0, 2])
def test_frozen_stages(frozen):
    model = HorNet(MINI, frozen_stages=frozen, drop_path_rate=0.5)
    model.train()
    frozen_mods = ([model.stem] if frozen >= 0 else []) + \
        [m for i in range(frozen) for m in (model.stages[i], model.out_norms[i])]
    frozen_ids = {id(p) for m in frozen_mods for p in m.parameters()}
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) not in frozen_ids), name
    assert all(not m.training for m in frozen_mods)
    sum(o.sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    assert all(p.grad is None for m in frozen_mods for p in m.parameters())
    assert model.stages[3].blocks[0].gnconv.dwconv.complex_weight.grad is not None


def test_with_cp_same_outputs_and_grads(monkeypatch):
    import backbones.layers.blocks as layers
    calls = []
    real = layers.cp.checkpoint
    monkeypatch.setattr(layers.cp, 'checkpoint',
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    ref = randomize_(HorNet(MINI)).train()
    cpm = HorNet(MINI, with_cp=True).train()
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 37, 45)
    outs = [m(x) for m in (ref, cpm)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for o in outs:
        sum((t ** 2).sum() for t in o).backward()
    for (name, p), q in zip(ref.named_parameters(), cpm.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert len(calls) == 5 and all(k.get('use_reentrant') is False for k in calls)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_autocast_is_finite_and_filters_in_fp32(dtype, monkeypatch):
    """cuFFT in half precision takes power-of-two sizes only: the filter must run in fp32
    whatever autocast does (the maps here, 5x7 and 2x3, are not powers of two)."""
    model = randomize_(HorNet(MINI)).eval()
    x = torch.randn(1, 3, 45, 59)
    seen, real = [], torch.fft.rfft2
    monkeypatch.setattr(torch.fft, 'rfft2', lambda t, *a, **k: seen.append(t.dtype) or
                        real(t, *a, **k))
    with torch.no_grad():
        ref = model(x)
        seen.clear()
        with torch.autocast('cpu', dtype=dtype):
            outs = model(x)
    assert seen and set(seen) == {torch.float32}
    for o, r in zip(outs, ref):
        assert o.dtype == torch.float32 and torch.isfinite(o).all()
        assert (o - r).abs().mean() < 0.05 * r.abs().mean()


def test_bf16_model_stays_bf16():
    model = randomize_(HorNet(MINI)).eval().to(torch.bfloat16)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 33, 41, dtype=torch.bfloat16))
    assert all(o.dtype == torch.bfloat16 and torch.isfinite(o).all() for o in outs)


# ---- pretrained weights -------------------------------------------------------------------
def _release_key(key):
    """Our key -> the release's (ImageNet and seg) name."""
    parts = key.split('.')
    if parts[0] == 'stem':
        parts = ['downsample_layers', '0'] + parts[1:]
    elif parts[0] == 'stages' and parts[2] == 'downsample':
        parts = ['downsample_layers', parts[1]] + parts[3:]
    elif parts[0] == 'stages':
        parts = parts[:2] + parts[3:]
    elif parts[0] == 'out_norms':
        parts = [f'norm{parts[1]}'] + parts[2:]
    return '.'.join(parts)


def release_state_dict(model, seed=0, dense=False, mmpretrain=False):
    """Random weights in the release's layout, built from the shapes of ``model``: ImageNet
    (no output norms, final ``norm`` + ``head``) or, with ``dense``, the backbone of its
    UperNet (``norm0..3``); ``mmpretrain``: that library's names."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith('out_norms.') and not dense:
            continue
        key = _release_key(key)
        if mmpretrain:
            key = key.replace('.gnconv.pws.', '.gnconv.projs.')
            key = key + '.weight' if key.endswith(('.gamma1', '.gamma2')) else key
        out[key] = torch.randn(value.shape, generator=g)
    if not dense:
        C = model.dims[-1]
        out.update({'norm.weight': torch.ones(C), 'norm.bias': torch.zeros(C),
                    'head.weight': torch.zeros(1000, C), 'head.bias': torch.zeros(1000)})
    return out


def _load(path, arch=MINI, **kwargs):
    model = HorNet(arch, init_cfg=dict(type='Pretrained', checkpoint=str(path), **kwargs))
    model.init_weights()
    return model


def test_imagenet_checkpoint_loads_with_filters_resized(tmp_path):
    """hornet_*_gf.pth ({'model': ...}, filters 6x4 / 3x2 here) into a model with larger
    filters: resized as the release's loader (bilinear, align_corners=True)."""
    release = release_state_dict(HorNet(MINI))
    path = tmp_path / 'hornet_mini_gf.pth'
    torch.save({'model': release}, path)
    big = dict(MINI, gf_sizes=(None, None, (9, 5), (5, 3)))
    own = _load(path, big).state_dict()
    assert torch.equal(own['stem.0.weight'], release['downsample_layers.0.0.weight'])
    assert torch.equal(own['stages.2.downsample.1.weight'],
                       release['downsample_layers.2.1.weight'])
    assert torch.equal(own['stages.1.blocks.0.gnconv.pws.1.weight'],
                       release['stages.1.0.gnconv.pws.1.weight'])
    assert torch.equal(own['stages.3.blocks.0.gamma2'], release['stages.3.0.gamma2'])
    key = 'stages.2.blocks.1.gnconv.dwconv.complex_weight'
    stored = release['stages.2.1.gnconv.dwconv.complex_weight']
    assert own[key].shape == (stored.shape[0], 9, 5, 2)
    expected = F.interpolate(stored.permute(3, 0, 1, 2), size=(9, 5), mode='bilinear',
                             align_corners=True).permute(1, 2, 3, 0)
    torch.testing.assert_close(own[key], expected)
    torch.testing.assert_close(own[key][:, ::8, ::4], stored[:, ::5, ::3])  # corners kept
    loaded = len(release) - 4  # all but the classifier
    assert loaded == len([k for k in own if not k.startswith('out_norms.')])


def test_mmpretrain_names_load(tmp_path):
    release = release_state_dict(HorNet(MINI), mmpretrain=True)
    path = tmp_path / 'mmpretrain_hornet.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in release.items()}}, path)
    own = _load(path, prefix='backbone.').state_dict()
    assert torch.equal(own['stages.2.blocks.0.gnconv.pws.2.weight'],
                       release['stages.2.0.gnconv.projs.2.weight'])
    assert torch.equal(own['stages.0.blocks.0.gamma1'], release['stages.0.0.gamma1.weight'])


def test_released_upernet_backbone_loads(tmp_path):
    """The backbone part of upernet_hornet_*_gf (mmseg 0.x, ``backbone.*``, filters stored
    24x13 / 12x7 as the config builds them), output norms included."""
    model = HorNet('tiny-gf', gf_sizes=SEG_GF)
    release = release_state_dict(model, dense=True)
    sd = {f'backbone.{k}': v for k, v in release.items()}
    sd['decode_head.conv_seg.weight'] = torch.zeros(150, 512, 1, 1)
    path = tmp_path / 'upernet_hornet_tiny_gf.pth'
    torch.save({'meta': {}, 'state_dict': sd}, path)
    model = HorNet('tiny-gf', gf_sizes=SEG_GF,
                   init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    model.init_weights()
    own = model.state_dict()
    assert set(own) == set(HorNet.convert_pretrained(release))
    assert torch.equal(own['out_norms.2.weight'], release['norm2.weight'])
    assert torch.equal(own['stages.3.blocks.1.gnconv.dwconv.complex_weight'],
                       release['stages.3.1.gnconv.dwconv.complex_weight'])


def test_wrong_size_or_7x7_checkpoint_names_keys(tmp_path):
    wide = release_state_dict(HorNet(dict(MINI, base_dim=32)))
    torch.save({'model': wide}, tmp_path / 'wide.pth')
    with pytest.raises(CheckpointError) as err:
        _load(tmp_path / 'wide.pth')
    assert 'stages.0.blocks.0.gamma1 (checkpoint (32,) vs model (16,))' in str(err.value)
    conv = release_state_dict(HorNet(dict(MINI, gf_sizes=(None,) * 4)))  # a 7x7 model
    torch.save({'model': conv}, tmp_path / 'conv.pth')
    with pytest.raises(CheckpointError) as err:
        _load(tmp_path / 'conv.pth')
    msg = str(err.value)
    assert 'stages.2.blocks.0.gnconv.dwconv.complex_weight' in msg  # missing
    assert 'stages.2.blocks.0.gnconv.dwconv.weight' in msg  # unexpected


def test_convert_pretrained_is_idempotent_and_keeps_stored_sizes():
    release = release_state_dict(HorNet(MINI))
    once = HorNet.convert_pretrained(release)
    twice = HorNet.convert_pretrained(once)
    assert list(once) == list(twice) and not any(k.startswith(('head.', 'norm.')) for k in once)
    big = HorNet(dict(MINI, gf_sizes=(None, None, (9, 5), (5, 3))))
    key = 'stages.3.blocks.0.gnconv.dwconv.complex_weight'
    assert once[key].shape[1:3] == (3, 2) and big.convert_pretrained(once)[key].shape[1:3] == (5, 3)


def test_convert_checkpoint_tool(tmp_path, capsys):
    """The release's ImageNet file (filters 14x8 / 7x4) through tools/convert_checkpoint.py,
    then loaded by the UperNet backbone (24x13 / 12x7); and a released UperNet checkpoint."""
    release = release_state_dict(HorNet('tiny-gf'))
    src, dst = tmp_path / 'hornet_tiny_gf.pth', tmp_path / 'out' / 'hornet_tiny_gf.pth'
    torch.save({'model': release}, src)
    proc = call_tool('convert_checkpoint', src, dst,
                    '--backbone', 'HorNet', '--arch', 'tiny-gf')
    assert '22.48M params' in proc.stdout
    model = HorNet('tiny-gf', gf_sizes=SEG_GF,
                   init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    assert model.state_dict()['stages.3.blocks.1.gnconv.dwconv.complex_weight'].shape == \
        (496, 12, 7, 2)
    seg = release_state_dict(HorNet('tiny-gf', gf_sizes=SEG_GF), dense=True)
    src = tmp_path / 'upernet_hornet_tiny_gf.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in seg.items()}}, src)
    load_tool('convert_checkpoint').main([  # the same tool in-process (start-up is slow)
        str(src), str(dst), '--backbone', 'HorNet', '--arch', 'tiny-gf', '--prefix',
        'backbone.', '--arg', 'gf_sizes=(None, None, (24, 13), (12, 7))'])
    assert '24.32M params' in capsys.readouterr().out


# ---- det / seg configs ----------------------------------------------------------------------
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
    with torch.device('meta'):
        model, cfg = _build(_config(name))
    assert type(model.backbone).__name__ == 'HorNet'
    assert sum(p.numel() for p in model.parameters()) == MODEL_PARAMS[name]
    size = {'t': 'tiny', 's': 'small', 'b': 'base'}[name.split('_')[1].split('-')[1]]
    assert cfg.pretrained == f'checkpoints/hornet/hornet_{size}_gf.pth'


@pytest.mark.parametrize('size', list(SEG_RECIPE))
def test_seg_config_is_the_releases_recipe(size):
    from mmengine.config import Config
    cfg = Config.fromfile(_config(f'upernet_hornet-{size}-gf_8xb2-amp-160k_ade20k-512x512.py'))
    dpr, num_layers = SEG_RECIPE[size]
    bb = cfg.model.backbone
    assert (bb.drop_path_rate, tuple(bb.gf_sizes)) == (dpr, SEG_GF)
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(512, 512), stride=(341, 341))
    assert tuple(cfg.model.data_preprocessor.size) == (512, 512)  # HorNet-B too (its config)
    ow = cfg.optim_wrapper
    assert ow.constructor == 'HorNetLayerDecayOptimWrapperConstructor'
    assert ow.paramwise_cfg == dict(decay_rate=0.9, decay_type='stage_wise',
                                    num_layers=num_layers)
    assert (ow.optimizer.lr, ow.optimizer.weight_decay) == (1e-4, 0.05)
    assert ow.clip_grad == dict(max_norm=1.0, norm_type=2)
    assert ow.type == 'AmpOptimWrapper'
    det = Config.fromfile(_config(f'mask-rcnn_hornet-{size}-gf_fpn_8xb2-amp-1x_coco.py'))
    assert 'gf_sizes' not in det.model.backbone  # the arch's ImageNet sizes, as released
    assert det.model.backbone.drop_path_rate == {'t': 0.4, 's': 0.6, 'b': 0.7}[size]


# ---- the release's stage-wise lr decay ----------------------------------------------------
class _Segmentor(torch.nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.decode_head = torch.nn.Sequential(torch.nn.Conv2d(8, 4, 1), torch.nn.BatchNorm2d(4))


def _our_groups(model, num_layers, lr=1e-4, wd=0.05):
    ctor = HorNetLayerDecayOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=lr, weight_decay=wd)),
        dict(decay_rate=0.9, decay_type='stage_wise', num_layers=num_layers))
    groups = ctor(model).optimizer.param_groups
    by_param = {id(p): (g['lr'], g['weight_decay']) for g in groups for p in g['params']}
    return {n: by_param[id(p)] for n, p in model.named_parameters() if id(p) in by_param}


def test_stage_wise_lr_decay_on_our_names():
    """The release's rule (L = num_layers + 2; downsampling 0, stage i i + 1, the rest
    L - 1; lr * 0.9 ** (L - 1 - layer); no decay for 1-D params and biases), num_layers 6."""
    model = _Segmentor(HorNet(MINI, frozen_stages=0))
    got = _our_groups(model, 6)
    assert 'backbone.stem.0.weight' not in got  # frozen: left out, as the release
    expect = {
        'backbone.stages.1.downsample.1.weight': (0.9 ** 7, 0.05),
        'backbone.stages.1.downsample.0.weight': (0.9 ** 7, 0.),
        'backbone.stages.0.blocks.0.pwconv1.weight': (0.9 ** 6, 0.05),
        'backbone.stages.0.blocks.0.gamma1': (0.9 ** 6, 0.),
        'backbone.stages.2.blocks.1.gnconv.dwconv.complex_weight': (0.9 ** 4, 0.05),
        'backbone.stages.3.blocks.0.gnconv.pws.3.bias': (0.9 ** 3, 0.),
        'backbone.out_norms.3.weight': (1., 0.),
        'decode_head.0.weight': (1., 0.05),
        'decode_head.1.weight': (1., 0.),
    }
    for name, (scale, wd) in expect.items():
        assert got[name] == (pytest.approx(1e-4 * scale), wd), name
    assert len(got) == sum(p.requires_grad for p in model.parameters())


def test_mmseg_constructor_does_not_serve_hornet():
    """Why the suite has its own: mmseg 1.x's LearningRateDecayOptimizerConstructor only
    knows backbones named ConvNeXt / BEiT / MAE."""
    from mmseg.engine.optimizers import LearningRateDecayOptimizerConstructor
    ctor = LearningRateDecayOptimizerConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05)),
        dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
    with pytest.raises(NotImplementedError):
        ctor(_Segmentor(HorNet(MINI)))


@pytest.mark.parametrize('cfg,match', [
    (dict(decay_rate=0.9, decay_type='layer_wise', num_layers=12), "must be 'stage_wise'"),
    (dict(decay_rate=0.9, num_layers=12), 'needs exactly the keys'),
    (dict(decay_rate=0.9, decay_type='stage_wise', num_layers=12, norm_decay_mult=0.),
     'needs exactly the keys'),
    (dict(decay_rate=1.5, decay_type='stage_wise', num_layers=12), 'decay_rate'),
])
def test_constructor_refuses_other_paramwise_options(cfg, match):
    with pytest.raises(ValueError, match=match):
        HorNetLayerDecayOptimWrapperConstructor(
            dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4)), cfg)


def test_constructor_is_registered_for_both_tasks():
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS as det
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as seg
    name = 'HorNetLayerDecayOptimWrapperConstructor'
    assert det.get(name) is seg.get(name) is HorNetLayerDecayOptimWrapperConstructor


# ---- the release's own code (slow: needs the pinned snapshot) ------------------------------
def _import_release(root, rel_path, name, stubs):
    """Import one file of the release with ``stubs`` (module name -> attributes) standing
    in for its mm 0.x / mmcv_custom imports; the file itself is not changed."""
    saved = {k: sys.modules.get(k) for k in stubs}
    try:
        for mod_name, attrs in stubs.items():
            mod = types.ModuleType(mod_name)
            mod.__dict__.update(attrs)
            sys.modules[mod_name] = mod
        spec = importlib.util.spec_from_file_location(name, osp.join(root, rel_path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Registry:
    def register_module(self, *args, **kwargs):
        return lambda cls: cls


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    root = release_source(*RELEASE, tmp_path_factory.mktemp('release'),
                          paths=('semantic_segmentation/models/hornet.py',
                                 'semantic_segmentation/mmcv_custom/'
                                 'layer_decay_optimizer_constructor.py'))
    model_file = _import_release(root, 'semantic_segmentation/models/hornet.py',
                                 'release_hornet_seg', {
                                     'mmcv_custom': dict(load_checkpoint=None),
                                     'mmseg.utils': dict(get_root_logger=None),
                                     'mmseg.models.builder': dict(BACKBONES=_Registry())})

    class DefaultOptimizerConstructor:  # mmcv 1.x's, as far as the release's subclass uses it
        def __init__(self, optimizer_cfg, paramwise_cfg=None):
            self.base_lr = optimizer_cfg['lr']
            self.base_wd = optimizer_cfg.get('weight_decay')
            self.paramwise_cfg = paramwise_cfg or {}

    optim_file = _import_release(
        root, 'semantic_segmentation/mmcv_custom/layer_decay_optimizer_constructor.py',
        'release_hornet_layer_decay', {'mmcv.runner': dict(
            OPTIMIZER_BUILDERS=_Registry(), get_dist_info=lambda: (1, 1),
            DefaultOptimizerConstructor=DefaultOptimizerConstructor)})
    return model_file, optim_file


def _release_hornet(module, base_dim, drop_path_rate=0.):
    """The release's seg backbone as its GF UperNet configs build it."""
    gnconv = ['partial(gnconv, order=2, s=1/3)', 'partial(gnconv, order=3, s=1/3)',
              'partial(gnconv, order=4, s=1/3, h=24, w=13, gflayer=GlobalLocalFilter)',
              'partial(gnconv, order=5, s=1/3, h=12, w=7, gflayer=GlobalLocalFilter)']
    return module.HorNet(depths=[2, 3, 18, 2], base_dim=base_dim, block='Block', gnconv=gnconv,
                         drop_path_rate=drop_path_rate, out_indices=[0, 1, 2, 3])


@pytest.mark.slow
def test_equivalence_with_the_release(release, capsys):
    """The release's UperNet backbone (HorNet-T GF, seeded random weights) through our
    converter: all four outputs equal at 97x131 and 224x320 (filters resized at run time)."""
    ref = randomize_(_release_hornet(release[0], 64)).eval()
    ours = HorNet('tiny-gf', gf_sizes=SEG_GF).eval()
    assert sum(p.numel() for p in ref.parameters()) == PARAMS_SEG_GF['tiny-gf']
    ours.load_state_dict(HorNet.convert_pretrained(ref.state_dict()), strict=True)
    torch.manual_seed(0)
    report = []
    for size in ((97, 131), (224, 320)):
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            want, got = ref(x), ours(x)
        assert len(want) == len(got) == 4
        for i, (w, g) in enumerate(zip(want, got)):
            assert w.shape == g.shape
            err = (w - g).abs().max().item()
            report.append(f'{size} stage {i}: max abs {err:.2e}, '
                          f'max rel {err / w.abs().max().item():.2e}')
            torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
    with capsys.disabled():
        print('\nHorNet-T GF vs release:\n  ' + '\n  '.join(report))


@pytest.mark.slow
@pytest.mark.parametrize('num_layers', [6, 12])
def test_lr_decay_equals_the_releases_constructor(release, num_layers):
    """Per parameter: lr and weight decay of the release's
    LearningRateDecayOptimizerConstructorHorNet (stage_wise, decay 0.9) on its model equal
    ours on the converted model."""
    _, optim_file = release
    ref_model = _Segmentor(_release_hornet(release[0], 16))
    ctor = optim_file.LearningRateDecayOptimizerConstructorHorNet(
        dict(type='AdamW', lr=1e-4, weight_decay=0.05),
        dict(decay_rate=0.9, decay_type='stage_wise', num_layers=num_layers))
    groups = []
    ctor.add_params(groups, ref_model)
    want = {}
    for g in groups:
        for name in g['param_names']:
            if name.startswith('backbone.'):
                name = 'backbone.' + next(iter(HorNet.convert_pretrained({name[9:]: None})))
            want[name] = (g['lr'], g['weight_decay'])
    ours = _Segmentor(HorNet(dict(base_dim=16, depths=(2, 3, 18, 2), orders=(2, 3, 4, 5),
                                  gf_sizes=SEG_GF)))
    got = _our_groups(ours, num_layers)
    assert set(got) == set(want)
    for name in want:
        assert got[name] == (pytest.approx(want[name][0]), want[name][1]), name

