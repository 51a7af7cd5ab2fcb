"""InternImage dense backbones (backbones/models/internimage.py) and their det/seg configs.

Reference values come from outside the code under test: the official release
(OpenGVLab/InternImage @ 31c962d: ``segmentation/mmseg_custom/models/backbones/
intern_image.py``, ``ops_dcnv3/``, the ade20k UperNet and coco Mask R-CNN configs) for the
sizes, the block forms and the checkpoint key layout; parameter counts were measured on the
release's modules (../shared/reference/remaining_rows.md, sections 0.2 and 6.3: backbone
[inst], UperNet [calc]; Mask R-CNN = backbone + the FPN/RPN/RoI-head sum of section 0.2 for
these widths). The slow tests run the release's own backbone (``core_op='DCNv3_pytorch'``)
against ours.
"""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from test_dcnv3 import load_release

from backbones.engine.checkpoint import CheckpointError
from backbones.models.internimage import InternImage, InternImageBlock
from conftest import REPO, call_tool, randomize_

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')

BACKBONE_PARAMS = {'tiny': 28_769_520, 'small': 48_502_560, 'base': 94_909_920}
MODEL_PARAMS = {
    'upernet_internimage-t_8xb2-amp-160k_ade20k-512x512.py': 59_077_148,
    'upernet_internimage-s_8xb2-amp-160k_ade20k-512x512.py': 79_866_956,
    'upernet_internimage-b_8xb2-amp-160k_ade20k-512x512.py': 128_387_852,
    'mask-rcnn_internimage-t_fpn_8xb2-amp-1x_coco.py': 48_920_544,
    'mask-rcnn_internimage-s_fpn_8xb2-amp-1x_coco.py': 68_715_024,
    'mask-rcnn_internimage-b_fpn_8xb2-amp-1x_coco.py': 115_245_264,
}
# cheap archs of the two block forms (8 channels per DCNv3 group, as T's first level: 64 / 4)
MINI = dict(channels=16, depths=(1, 1, 2, 1), groups=(2, 4, 8, 16))
MINI_POST = dict(MINI, post_norm=True)


def _blocks(model):
    return [b for level in model.levels for b in level.blocks]


# ---- sizes and shapes -------------------------------------------------------------------
@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_params_and_structure_are_the_releases(arch):
    with torch.device('meta'):  # shapes only: 10x faster to build
        model = InternImage(arch)
    assert sum(p.numel() for p in model.parameters()) == BACKBONE_PARAMS[arch]
    post_norm = arch != 'tiny'
    blocks = _blocks(model)
    assert len(blocks) == (30 if arch == 'tiny' else 33)
    assert all(b.post_norm == post_norm for b in blocks)
    assert [level.norm is None for level in model.levels] == [post_norm] * 4  # T only
    assert [level.downsample is None for level in model.levels] == [False] * 3 + [True]
    assert model.out_channels == {'tiny': (64, 128, 256, 512), 'small': (80, 160, 320, 640),
                                  'base': (112, 224, 448, 896)}[arch]
    assert blocks[0].dcn.offset.out_features == model.groups[0] * 9 * 2
    assert all(isinstance(n, torch.nn.Identity) for n in model.out_norms)  # no output norms


def test_stage_shapes_at_odd_input():
    """Every stride-2 conv pads by 1: ceil(H / 2) per step, any input size."""
    model = InternImage('tiny').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 97, 131))
    assert [tuple(o.shape) for o in outs] == [
        (1, 64, 25, 33), (1, 128, 13, 17), (1, 256, 7, 9), (1, 512, 4, 5)]
    assert all(torch.isfinite(o).all() and o.is_contiguous() for o in outs)


def test_out_indices_skip_unused_levels():
    model = randomize_(InternImage(MINI, out_indices=(1, 2))).eval()
    full = InternImage(MINI).eval()
    full.load_state_dict(model.state_dict())
    assert model.out_channels == (32, 64)
    x = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        outs, ref = model(x), full(x)
    assert [tuple(o.shape) for o in outs] == [(2, 32, 5, 6), (2, 64, 3, 3)]
    torch.testing.assert_close(outs[0], ref[1])
    torch.testing.assert_close(outs[1], ref[2])


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='large'), r"unknown arch 'large'; valid names: tiny, small, base"),
    (dict(arch=dict(MINI, heads=2)), r"unknown arch keys \['heads'\]"),
    (dict(arch=dict(MINI, groups=(2, 4, 8))), 'equally long'),
    (dict(arch=dict(MINI, groups=(3, 4, 8, 16))), r'divisible by its groups'),
    (dict(arch=dict(MINI, channels=15, groups=(1, 1, 1, 1))), 'channels must be even'),
    (dict(arch=dict(MINI, post_norm='yes')), 'bool post_norm'),
    (dict(layer_scale=0), 'layer_scale must be a positive number'),
    (dict(offset_scale=None), 'offset_scale must be a positive number'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(out_indices=(4,)), 'out_indices'),
    (dict(with_cp=(True, False)), 'with_cp must be a bool or 4 bools'),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InternImage(**dict(dict(arch=MINI), **kwargs))


# ---- the block, both forms ----------------------------------------------------------------
def release_block_forward(b, x):
    """The release's InternImageLayer._inner_forward with layer scale (intern_image.py
    l.423-429), the LayerNorms written out (eps 1e-6)."""
    def ln(m, t):
        return F.layer_norm(t, t.shape[-1:], m.weight, m.bias, 1e-6)

    def mlp(t):
        return F.linear(F.gelu(F.linear(t, b.mlp.fc1.weight, b.mlp.fc1.bias)),
                        b.mlp.fc2.weight, b.mlp.fc2.bias)
    if b.post_norm:
        x = x + b.gamma1 * ln(b.norm1, b.dcn(x))
        return x + b.gamma2 * ln(b.norm2, mlp(x))
    x = x + b.gamma1 * b.dcn(ln(b.norm1, x))
    return x + b.gamma2 * mlp(ln(b.norm2, x))


@pytest.mark.parametrize('post_norm', [False, True])
def test_block_is_the_releases_form(post_norm):
    torch.manual_seed(0)
    b = randomize_(InternImageBlock(16, group=2, post_norm=post_norm)).eval()
    with torch.no_grad():
        b.dcn.offset.weight.mul_(20)
    x = torch.randn(2, 7, 9, 16)
    with torch.no_grad():
        torch.testing.assert_close(b(x), release_block_forward(b, x), atol=1e-5, rtol=1e-5)


# ---- training behaviour -----------------------------------------------------------------
def test_drop_path_rises_linearly_and_is_stochastic_in_training():
    model = InternImage('tiny', drop_path_rate=0.2)
    rates = [b.drop_path.drop_prob for b in _blocks(model)]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.2)
    assert all(b - a == pytest.approx(0.2 / 29) for a, b in zip(rates, rates[1:]))
    mini = randomize_(InternImage(MINI, drop_path_rate=0.5))
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
    model = InternImage(MINI, frozen_stages=frozen, drop_path_rate=0.5)
    model.train()
    frozen_mods = ([model.stem] if frozen >= 0 else []) + list(model.levels[:max(frozen, 0)])
    frozen_ids = {id(p) for m in frozen_mods for p in m.parameters()}
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) not in frozen_ids), name
    assert all(not m.training for m in frozen_mods)
    sum(o.sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    assert all(p.grad is None for m in frozen_mods for p in m.parameters())
    assert model.levels[3].blocks[0].dcn.offset.weight.grad is not None


def test_with_cp_same_outputs_and_grads(monkeypatch):
    import backbones.layers.blocks as layers
    calls = []
    real = layers.cp.checkpoint
    monkeypatch.setattr(layers.cp, 'checkpoint',
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    ref = randomize_(InternImage(MINI_POST)).train()
    cpm = InternImage(MINI_POST, with_cp=True).train()
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
@pytest.mark.parametrize('arch', [MINI, MINI_POST], ids=['pre', 'post'])
def test_autocast_is_finite_and_close(arch, dtype):
    model = randomize_(InternImage(arch)).eval()
    x = torch.randn(1, 3, 45, 35)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outs = model(x)
    for o, r in zip(outs, ref):
        assert torch.isfinite(o).all()
        assert (o.float() - r).abs().mean() < 0.05 * r.abs().mean()


# ---- pretrained weights -----------------------------------------------------------------
def release_key(key):
    """Our key -> the release's (its build_norm_layer Sequentials: ``patch_embed.norm1.1``,
    ``norm1.0``, ``dcn.dw_conv.{0,1.1}``, ``levels.i.norm.0``, ``downsample.norm.1``)."""
    parts = key.split('.')
    if parts[0] == 'stem':
        parts[0] = 'patch_embed'
        if parts[1].startswith('norm'):
            parts.insert(2, '1')
    elif parts[2] == 'blocks':
        if parts[4] in ('norm1', 'norm2'):
            parts.insert(5, '0')
        elif parts[4:6] == ['dcn', 'dw_conv']:
            parts.insert(6, '0')
        elif parts[4:6] == ['dcn', 'dw_norm']:
            parts[5:6] = ['dw_conv', '1', '1']
    elif parts[2] == 'norm':
        parts.insert(3, '0')
    elif parts[2:4] == ['downsample', 'norm']:
        parts.insert(4, '1')
    return '.'.join(parts)


def release_state_dict(model, seed=0, layer_scale=True, classifier=True):
    """The release's key layout with distinct random values, built from ``model``'s shapes
    (``classifier``: the ImageNet model's conv_head + BN + head)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in model.state_dict().items():
        if not layer_scale and key.endswith(('.gamma1', '.gamma2')):
            continue
        out[release_key(key)] = torch.randn(value.shape, generator=g)
    if classifier:
        C = model.dims[-1]
        out.update({'conv_head.0.weight': torch.randn(1280, C, 1, 1, generator=g),
                    'conv_head.1.0.weight': torch.ones(1280),
                    'conv_head.1.0.running_mean': torch.zeros(1280),
                    'conv_head.1.0.num_batches_tracked': torch.tensor(0),
                    'head.weight': torch.zeros(1000, 1280), 'head.bias': torch.zeros(1000)})
    return out


def test_release_key_names_match_the_reference_file():
    """A few keys spelled as in the release's state dict (released_checkpoints.md)."""
    keys = set(release_state_dict(InternImage(MINI)))
    assert {'patch_embed.norm1.1.weight', 'patch_embed.norm2.1.bias',
            'levels.0.blocks.0.norm1.0.weight', 'levels.0.blocks.0.dcn.dw_conv.0.weight',
            'levels.0.blocks.0.dcn.dw_conv.1.1.weight', 'levels.2.blocks.1.dcn.offset.weight',
            'levels.1.downsample.norm.1.weight', 'levels.3.norm.0.weight',
            'levels.0.blocks.0.gamma1'} <= keys


def test_imagenet_t_checkpoint_without_layer_scale_loads_with_unit_gammas(tmp_path):
    """The release's ImageNet InternImage-T has no layer scale: its dense model starts
    gamma1 / gamma2 at layer_scale=1.0, i.e. the classification network unchanged."""
    release = release_state_dict(InternImage(MINI), layer_scale=False)
    path = tmp_path / 'internimage_mini_1k_224.pth'
    torch.save({'model': release, 'epoch': 299}, path)  # classification/utils.py format
    model = InternImage(MINI, layer_scale=1e-5,
                        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    own = model.state_dict()
    assert torch.equal(own['stem.norm1.weight'], release['patch_embed.norm1.1.weight'])
    assert torch.equal(own['levels.2.blocks.1.dcn.dw_norm.bias'],
                       release['levels.2.blocks.1.dcn.dw_conv.1.1.bias'])
    assert torch.equal(own['levels.3.norm.weight'], release['levels.3.norm.0.weight'])
    gammas = [k for k in own if k.endswith(('.gamma1', '.gamma2'))]
    assert len(gammas) == 2 * 5 and all(torch.equal(own[k], torch.ones_like(own[k]))
                                        for k in gammas)
    assert len(release) - 6 + len(gammas) == len(own)  # all but the classifier


def test_checkpoint_with_some_gammas_missing_is_refused(tmp_path):
    release = release_state_dict(InternImage(MINI_POST))
    del release['levels.2.blocks.1.gamma2']
    path = tmp_path / 'partial.pth'
    torch.save({'model': release}, path)
    with pytest.raises(CheckpointError, match=r'missing keys \(1\): levels.2.blocks.1.gamma2'):
        InternImage(MINI_POST, init_cfg=dict(type='Pretrained',
                                             checkpoint=str(path))).init_weights()


def test_released_segmentor_backbone_loads_strictly(tmp_path):
    """UperNet checkpoints of the release (mmseg 0.27): ``state_dict`` with ``backbone.``,
    ``decode_head.`` and ``auxiliary_head.`` keys; the backbone part loads by prefix."""
    release = release_state_dict(InternImage(MINI_POST), classifier=False)
    full = {f'backbone.{k}': v for k, v in release.items()}
    full['decode_head.conv_seg.weight'] = torch.zeros(150, 512, 1, 1)
    full['auxiliary_head.conv_seg.bias'] = torch.zeros(150)
    path = tmp_path / 'upernet_internimage_mini.pth'
    torch.save({'meta': {}, 'state_dict': full}, path)
    model = InternImage(MINI_POST, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                                 prefix='backbone.'))
    model.init_weights()
    own = model.state_dict()
    assert len(own) == len(release)
    assert torch.equal(own['levels.1.blocks.0.gamma2'], release['levels.1.blocks.0.gamma2'])
    assert torch.equal(own['levels.0.downsample.norm.weight'],
                       release['levels.0.downsample.norm.1.weight'])


def test_wrong_size_checkpoint_names_keys(tmp_path):
    release = release_state_dict(InternImage(dict(MINI, channels=24, groups=(3, 6, 12, 24))))
    path = tmp_path / 'wide.pth'
    torch.save({'model': release}, path)
    with pytest.raises(CheckpointError) as err:
        InternImage(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    msg = str(err.value)
    assert 'shape mismatches' in msg and 'levels.0.blocks.0.dcn.offset.weight' in msg


def test_pre_norm_checkpoint_refused_by_post_norm_model(tmp_path):
    """T (pre-norm, level norms) into a post-norm model: the level norms are unexpected."""
    path = tmp_path / 't_like.pth'
    torch.save({'model': release_state_dict(InternImage(MINI))}, path)
    with pytest.raises(CheckpointError, match=r'unexpected keys \(8\): levels.0.norm.bias'):
        InternImage(MINI_POST, init_cfg=dict(type='Pretrained',
                                             checkpoint=str(path))).init_weights()


def test_convert_pretrained_is_idempotent():
    once = InternImage.convert_pretrained(release_state_dict(InternImage(MINI),
                                                             layer_scale=False))
    twice = InternImage.convert_pretrained(once)
    assert list(once) == list(twice) and all(once[k] is twice[k] for k in once)
    assert set(once) == set(InternImage(MINI).state_dict())


def test_convert_checkpoint_tool(tmp_path):
    """The release's internimage_t_1k_224.pth layout through tools/convert_checkpoint.py."""
    release = release_state_dict(InternImage('tiny'), layer_scale=False)
    src, dst = tmp_path / 'internimage_t_1k_224.pth', tmp_path / 'out' / 'internimage_t.pth'
    torch.save({'model': release}, src)
    proc = call_tool('convert_checkpoint', src, dst,
                    '--backbone', 'InternImage', '--arch', 'tiny')
    assert '28.77M params' in proc.stdout
    model = InternImage('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    assert torch.equal(model.state_dict()['levels.2.blocks.17.dcn.mask.weight'],
                       release['levels.2.blocks.17.dcn.mask.weight'])


# ---- det / seg configs ------------------------------------------------------------------
def _config(name):
    return osp.join(REPO, 'det_configs' if name.startswith('mask-rcnn') else 'seg_configs', name)


def _build(path, device='meta'):
    """The config's model (on the meta device by default: shapes only, 10x faster)."""
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
    assert type(model.backbone).__name__ == 'InternImage'
    assert sum(p.numel() for p in model.parameters()) == MODEL_PARAMS[name]
    assert cfg.pretrained == 'checkpoints/internimage/internimage_{}_1k_224.pth'.format(
        name.split('internimage-')[1][0])


@pytest.mark.parametrize('name', ['upernet_internimage-t_8xb2-amp-160k_ade20k-512x512.py',
                                  'mask-rcnn_internimage-t_fpn_8xb2-amp-1x_coco.py'])
def test_no_weight_decay_on_1d_parameters(name):
    """The release's optimizer constructor: weight decay 0.05 on weights, none on any 1-D
    parameter (norms, biases, layer-scale gammas)."""
    from mmengine.optim import build_optim_wrapper
    model, cfg = _build(_config(name))
    cfg.optim_wrapper.type = 'OptimWrapper'  # AmpOptimWrapper needs CUDA
    cfg.optim_wrapper.pop('loss_scale')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    for pname, p in model.named_parameters():
        want = 0. if p.dim() == 1 else 0.05
        assert decay[id(p)] == want, pname


def test_seg_test_pipelines_resize_to_a_multiple_of_32():
    from mmengine.config import Config
    cfg = Config.fromfile(_config('upernet_internimage-s_8xb2-amp-160k_ade20k-512x512.py'))
    for pipeline in (cfg.val_dataloader.dataset.pipeline, cfg.test_dataloader.dataset.pipeline):
        assert [t['type'] for t in pipeline] == ['LoadImageFromFile', 'Resize',
                                                 'ResizeToMultiple', 'LoadAnnotations',
                                                 'PackSegInputs']
        assert pipeline[2]['size_divisor'] == 32
    assert cfg.tta_pipeline[1].transforms[1] == [dict(type='ResizeToMultiple', size_divisor=32)]
    assert cfg.model.test_cfg.mode == 'whole'


# ---- equivalence with the release ---------------------------------------------------------
def _release_backbone(tmp_path_factory, channels, depths, groups, post_norm):
    intern_image = load_release(tmp_path_factory).intern_image
    torch.manual_seed(0)
    ref = intern_image.InternImage(
        core_op='DCNv3_pytorch', channels=channels, depths=list(depths), groups=list(groups),
        mlp_ratio=4., drop_path_rate=0., norm_layer='LN', layer_scale=1.0, offset_scale=1.0,
        post_norm=post_norm, with_cp=False, out_indices=(0, 1, 2, 3))
    randomize_(ref)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith('dcn.offset.weight'):
                # offsets of ~1-2 pixels, past the 3x3 grid. (x20 makes the random 30-block
                # network chaotic: the release's own fp32 and fp64 outputs then differ by 10%)
                p.mul_(4)
    ref.eval()  # (the release's train() returns None: no chaining)
    return ref


@pytest.mark.slow
@pytest.mark.parametrize('arch', ['tiny', 'post_norm'])
def test_equals_release_backbone(arch, tmp_path_factory):
    """The release's InternImage (DCNv3_pytorch core), seeded random weights converted
    through our converter; every level output at 64x64 and 97x131, and the input gradient."""
    if arch == 'tiny':
        spec = dict(channels=64, depths=(4, 4, 18, 4), groups=(4, 8, 16, 32), post_norm=False)
        ours = InternImage('tiny')
    else:  # S / B structure, small widths
        spec = dict(MINI_POST, depths=(2, 2, 3, 2))
        ours = InternImage(spec)
    ref = _release_backbone(tmp_path_factory, **spec)
    ours.load_state_dict(InternImage.convert_pretrained(ref.state_dict()), strict=True)
    ours.eval()
    for size in ((64, 64), (97, 131)):
        x = torch.randn(1, 3, *size, requires_grad=True)
        want, got = ref(x), ours(x)
        assert len(got) == len(want) == 4
        for i, (a, b) in enumerate(zip(got, want)):
            err = (a - b).abs().max().item()
            rel = err / b.abs().max().item()
            print(f'{arch} {size} level {i} {tuple(b.shape)}: max abs {err:.2e}, rel {rel:.2e}')
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        gw, = torch.autograd.grad(sum(o.square().mean() for o in want), x)
        gg, = torch.autograd.grad(sum(o.square().mean() for o in got), x)
        torch.testing.assert_close(gg, gw, atol=1e-5, rtol=1e-3)
