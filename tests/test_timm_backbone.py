"""TimmBackbone (backbones/timm_backbone.py): any timm model as an mm backbone.

One small member of each family the tables use (ConvNeXt, Swin, FocalNet, PVTv2, Twins,
ConvFormer, CAFormer), shrunk through timm's own constructor arguments where timm allows
it (Swin, Twins), at small inputs, so everything runs on CPU in seconds. Reference values
come from timm itself (its features_only model, its full model's state dict) and from the
families' det/seg code as written in the configs, and from the releases' own dense modules
(mmdet's SwinTransformer; Twins' gvt.py and FocalNet's detection code from their pinned
snapshots, slow), converted through the suite's release converters.
"""
import importlib.util
import math
import os.path as osp
import sys
import types
import warnings
from functools import partial

import pytest
import timm
import torch
from torch import nn

from backbones.engine.checkpoint import CheckpointError
from backbones.models.timm_backbone import TimmBackbone
from backbones.releases.convert import convert_release
from conftest import randomize_, release_source

# family -> (timm model, arguments that shrink it, out_norm_eps its det/seg code uses)
FAMILIES = {
    'convnext': ('convnext_atto', {}, 1e-6),
    'swin': ('swin_tiny_patch4_window7_224',
             dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)), 1e-5),
    'focalnet': ('focalnet_tiny_lrf', {}, 1e-5),  # timm's FocalNet sizes are fixed
    'pvtv2': ('pvt_v2_b0', {}, None),
    'twins': ('twins_svt_small', dict(embed_dims=(32, 64, 128, 256), depths=(2, 2, 2, 2),
                                      num_heads=(1, 2, 4, 8)), 1e-6),
    'convformer': ('convformer_s18', {}, 1e-6),  # so are MetaFormer's
    'caformer': ('caformer_s18', {}, 1e-6),
}
NO_CHECKPOINTING = {'twins'}  # timm's Twins refuses set_grad_checkpointing


@pytest.fixture(autouse=True)
def _one_thread(one_intra_op_thread):
    yield


def _build(family, **kwargs):
    name, shrink, eps = FAMILIES[family]
    args = dict(shrink, out_norm_eps=eps, drop_path_rate=0.0)
    args.update(kwargs)
    return TimmBackbone(name, **args)


def _timm_full(family, **kwargs):
    name, shrink, _ = FAMILIES[family]
    kw = dict(shrink, **kwargs)
    if family == 'swin':
        kw.update(strict_img_size=False, always_partition=True)
    return timm.create_model(name, **kw)


def _ceil_halvings(n, times):
    for _ in range(times):
        n = math.ceil(n / 2)
    return n


# ---- outputs ---------------------------------------------------------------------------
@pytest.mark.parametrize('family', FAMILIES)
def test_nchw_outputs_with_declared_channels_and_strides(family):
    model = _build(family).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 96, 128))
    assert model.strides == (4, 8, 16, 32)
    assert [tuple(y.shape) for y in outs] == [
        (2, c, 96 // s, 128 // s) for c, s in zip(model.out_channels, model.strides)]
    assert all(y.is_contiguous() for y in outs)


def test_swin_nhwc_features_come_back_as_nchw_and_equal_timm():
    """Where no stage needs padding to the window grid (every stage a multiple of 7), the
    dense Swin block computes what timm's does."""
    model = _build('swin', out_norm_eps=None).eval()
    randomize_(model)
    name, shrink, _ = FAMILIES['swin']
    ref = timm.create_model(name, features_only=True, strict_img_size=False,
                            always_partition=True, **shrink).eval()
    ref.load_state_dict(model.model.state_dict())
    x = torch.randn(1, 3, 224, 448)
    with torch.no_grad():
        theirs = ref(x)
        ours = model(x)
    assert str(ref.output_fmt).endswith('NHWC') and theirs[0].shape[-1] == model.out_channels[0]
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b.permute(0, 3, 1, 2))


@pytest.mark.parametrize('family', ['convnext', 'swin', 'twins'])
def test_output_norm_is_a_layer_norm_over_channels(family):
    model = _build(family).eval()
    randomize_(model)
    eps = FAMILIES[family][2]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        raw, outs = model.forward_stages(x), model(x)
    for i, (r, y) in enumerate(zip(raw, outs)):
        norm = model.out_norms[i]
        assert isinstance(norm, nn.LayerNorm) and norm.eps == eps
        expected = nn.functional.layer_norm(r.permute(0, 2, 3, 1), norm.normalized_shape,
                                            norm.weight, norm.bias, eps).permute(0, 3, 1, 2)
        torch.testing.assert_close(y, expected)
    assert {k.split('.')[0] for k in model.state_dict()} == {'model', 'out_norms'}


def test_without_out_norm_the_outputs_are_timms():
    model = _build('pvtv2').eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(x), model.forward_stages(x)))
    assert not any(k.startswith('out_norms') for k in model.state_dict())


def test_which_families_need_an_output_norm():
    """PVTv2's stages end in a LayerNorm of their own (its det code adds none); the other
    families' features models end in a block, their ImageNet final norm being dropped."""
    pvt = _build('pvtv2')
    assert all(isinstance(pvt.model[f'stages_{i}'].norm, nn.LayerNorm) for i in range(4))
    for family in ('convnext', 'swin', 'focalnet', 'convformer', 'caformer'):
        keys = _build(family, out_norm_eps=None).model.state_dict()
        assert not any(k.startswith(('norm.', 'head.')) for k in keys), family
    twins = _build('twins', out_norm_eps=None).model.state_dict()
    assert not any(k.startswith(('model.norm.', 'model.head.')) for k in twins)


# ---- out_indices -----------------------------------------------------------------------
@pytest.mark.parametrize('family', ['convnext', 'swin', 'twins'])
def test_out_indices_select_levels(family):
    full = _build(family)
    model = _build(family, out_indices=(1, 3)).eval()
    assert model.out_channels == (full.out_channels[1], full.out_channels[3])
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [y.shape[1] for y in outs] == list(model.out_channels)
    assert [y.shape[2] for y in outs] == [8, 2]
    # Twins' stage norms feed the next stage (gvt.py's norm_list): every stage up to the
    # last output keeps its norm; elsewhere only the returned levels have one
    normed = [not isinstance(m, nn.Identity) for m in model.out_norms]
    assert normed == ([True] * 4 if family == 'twins' else [False, True, False, True])


@pytest.mark.parametrize('kwargs,match', [
    (dict(out_indices=(4,)), 'out_indices'),
    (dict(out_indices=(3, 1)), 'increasing'),
    (dict(out_indices=()), 'out_indices'),
    (dict(drop_path_rate=1.5), 'drop_path_rate'),
    (dict(with_cp=(True, False, True, True)), 'with_cp'),
    (dict(pretrained=True), 'init_cfg'),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _build('convnext', **kwargs)


def test_unknown_model_names_timms_list():
    with pytest.raises(ValueError, match='timm.list_models'):
        TimmBackbone('no_such_model')


# ---- frozen stages, drop path, checkpointing --------------------------------------------
@pytest.mark.parametrize('family', ['convnext', 'swin', 'twins'])
@pytest.mark.parametrize('frozen', [0, 1, 2])
def test_frozen_stages(family, frozen):
    model = _build(family, frozen_stages=frozen)
    model.train()
    stem, groups = model._stages
    frozen_mods = list(stem) + [m for g in groups[:frozen] for m in g] + \
        [model.out_norms[i] for i in range(frozen)]
    frozen_ids = {id(p) for m in frozen_mods for p in m.parameters()}
    assert frozen_ids or (family == 'twins' and frozen == 0)  # Twins has no stem module
    for p in model.parameters():
        assert p.requires_grad == (id(p) not in frozen_ids)
    assert all(not m.training for m in frozen_mods)
    live = [m for g in groups[frozen:] for m in g]
    assert live and all(m.training for m in live)
    # the frozen part really is the first stages: their maps carry no gradient
    out = model(torch.randn(1, 3, 64, 64))
    assert [y.requires_grad for y in out] == [i >= frozen for i in range(4)]


def test_drop_path_rate_reaches_timm():
    model = _build('convnext', drop_path_rate=0.3)
    rates = [m.drop_prob for m in model.modules() if type(m).__name__ == 'DropPath']
    assert rates and math.isclose(max(rates), 0.3, abs_tol=1e-6)


@pytest.mark.parametrize('family', [f for f in FAMILIES if f not in NO_CHECKPOINTING])
def test_with_cp_uses_timms_checkpointing_with_identical_outputs_and_grads(family, monkeypatch):
    import torch.utils.checkpoint as cp
    calls = []
    real = cp.checkpoint

    def spy(*args, **kwargs):
        calls.append(kwargs.get('use_reentrant'))
        return real(*args, **kwargs)
    monkeypatch.setattr(cp, 'checkpoint', spy)
    ref = _build(family, drop_path_rate=0.2)
    randomize_(ref)
    ours = _build(family, drop_path_rate=0.2, with_cp=True)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    results = []
    for model in (ref, ours):
        model.train()
        torch.manual_seed(0)
        outs = model(x)
        sum((y.float() ** 2).mean() for y in outs).backward()
        results.append(([y.detach() for y in outs],
                        {k: p.grad.clone() for k, p in model.named_parameters()}))
    assert calls and all(c is False for c in calls)  # non-reentrant, timm's default
    for a, b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(a, b)
    assert results[0][1].keys() == results[1][1].keys()
    for k in results[0][1]:
        torch.testing.assert_close(results[0][1][k], results[1][1][k], msg=k)


def test_with_cp_where_timm_cannot_checkpoint_is_an_error():
    with pytest.raises(ValueError, match='cannot checkpoint'):
        _build('twins', with_cp=True)


# ---- input sizes -----------------------------------------------------------------------
@pytest.mark.parametrize('size', [(800, 1333), (512, 2048), (512, 683), (97, 141)])
def test_swin_takes_any_input_size(size):
    model = _build('swin').eval()
    h, w = size
    with torch.no_grad():
        outs = model(torch.randn(1, 3, h, w))
    # padded to the patch size at the stem (as mmdet's Swin), to even sizes when merging
    expected = [(math.ceil(h / 4), math.ceil(w / 4))]
    for _ in range(3):
        expected.append(tuple(math.ceil(s / 2) for s in expected[-1]))
    assert [tuple(y.shape[2:]) for y in outs] == expected


def test_swin_shifts_windows_in_every_stage():
    """As the Swin det/seg code: odd blocks shift by half a window in all four stages
    (timm's ImageNet default would not shift where a stage fits in one 224x224 window)."""
    model = TimmBackbone('swin_tiny_patch4_window7_224', drop_path_rate=0.)
    for i in range(4):
        blocks = model.model[f'layers_{i}'].blocks
        assert [tuple(b.shift_size) for b in blocks[:2]] == [(0, 0), (3, 3)]
    default = timm.create_model('swin_tiny_patch4_window7_224', features_only=True)
    assert tuple(default.layers_3.blocks[1].shift_size) == (0, 0)


@pytest.mark.parametrize('family', [f for f in FAMILIES if f != 'swin'])
def test_other_families_take_odd_input_sizes(family):
    model = _build(family).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 97, 141))
    assert len(outs) == 4 and all(y.shape[2] >= 1 and y.shape[3] >= 1 for y in outs)


def test_focalnet_pads_to_its_stride_as_its_det_code():
    """FocalNet's det code pads every patch embedding to its stride: ceil(size / stride)
    rows at the stem and after each downsampling (timm alone would drop the remainder)."""
    model = _build('focalnet').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 97, 141))
    assert [tuple(y.shape[2:]) for y in outs] == [
        (_ceil_halvings(math.ceil(97 / 4), i), _ceil_halvings(math.ceil(141 / 4), i))
        for i in range(4)]


def test_attention_is_explicit_only_while_traced():
    """FLOP counting traces the model; the fused attention kernel is invisible to the
    counter, so tracing switches timm's attention to its explicit matmuls, and back."""
    from mmengine.analysis import FlopAnalyzer
    model = _build('pvtv2').eval()
    assert model._fused_attn and all(m.fused_attn for m in model._fused_attn)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        eager = model(x)
    analyzer = FlopAnalyzer(model, (x,))
    analyzer.unsupported_ops_warnings(False)
    ops = analyzer.by_operator()
    assert ops.get('matmul', 0) > 0
    assert all(m.fused_attn for m in model._fused_attn)  # restored
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(eager, model(x)))


# ---- pretrained weights ----------------------------------------------------------------
def _save(tmp_path, sd, name='ckpt.pth', wrap=None):
    path = tmp_path / name
    if name.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save({wrap: sd} if wrap else sd, path)
    return str(path)


def _pretrained(family, path, **kwargs):
    kwargs.setdefault('init_cfg', dict(type='Pretrained', checkpoint=path))
    model = _build(family, **kwargs)
    model.init_weights()
    return model


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('fmt', ['ckpt.pth', 'ckpt.safetensors'])
def test_full_timm_checkpoint_loads_every_used_weight(tmp_path, family, fmt):
    full = randomize_(_timm_full(family))
    source = full.state_dict()
    model = _pretrained(family, _save(tmp_path, source, fmt, wrap='state_dict'
                                      if fmt.endswith('.pth') else None))
    own = model.state_dict()
    loaded = 0
    for key, value in own.items():
        if key.startswith('out_norms.'):
            assert torch.equal(value, torch.ones_like(value) if key.endswith('weight')
                               else torch.zeros_like(value)), key  # their own init
            continue
        inner = key[len('model.model.' if family == 'twins' else 'model.'):]
        candidates = [k for k in source if k.replace('.', '_') == inner.replace('.', '_')]
        assert len(candidates) == 1, key
        assert torch.equal(value, source[candidates[0]]), key
        loaded += 1
    assert loaded == sum(1 for k in own if not k.startswith('out_norms.'))


def test_headless_and_other_head_checkpoints_load(tmp_path):
    for num_classes in (0, 10):
        sd = randomize_(_timm_full('convnext', num_classes=num_classes)).state_dict()
        _pretrained('convnext', _save(tmp_path, sd, f'c{num_classes}.pth'))


def test_wrong_size_checkpoint_fails_naming_the_keys(tmp_path):
    sd = timm.create_model('convnext_femto').state_dict()  # femto for an atto backbone
    with pytest.raises(CheckpointError, match=r'shape mismatches .*stages_0'):
        _pretrained('convnext', _save(tmp_path, sd))


def test_missing_and_unexpected_keys_fail(tmp_path):
    sd = _timm_full('convnext').state_dict()
    missing = {k: v for k, v in sd.items() if k != 'stages.1.blocks.0.conv_dw.weight'}
    with pytest.raises(CheckpointError, match=r'missing keys .*stages_1\.blocks\.0\.conv_dw'):
        _pretrained('convnext', _save(tmp_path, missing, 'missing.pth'))
    extra = dict(sd, **{'stages.1.blocks.0.extra': torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r'unexpected keys .*stages\.1\.blocks\.0\.extra'):
        _pretrained('convnext', _save(tmp_path, extra, 'extra.pth'))


def test_only_local_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        _pretrained('convnext', str(tmp_path / 'absent.safetensors'))
    with pytest.raises(FileNotFoundError):
        _pretrained('convnext', str(tmp_path / 'absent.pth'))
    with pytest.raises(CheckpointError, match='local files only'):
        _pretrained('convnext', 'https://example.invalid/convnext.pth')


def test_official_swin_checkpoint_goes_through_timms_filter(tmp_path):
    """The official Swin release keeps PatchMerging at the end of a stage
    (``layers.i.downsample``); timm's filter moves it to the next stage."""
    import re
    sd = randomize_(_timm_full('swin')).state_dict()
    official = {re.sub(r'^layers\.(\d+)\.downsample',
                       lambda m: f'layers.{int(m.group(1)) - 1}.downsample', k): v
                for k, v in sd.items()}
    official = {k.replace('head.fc.', 'head.'): v for k, v in official.items()}
    model = _pretrained('swin', _save(tmp_path, official, wrap='model'))
    torch.testing.assert_close(model.state_dict()['model.layers_1.downsample.reduction.weight'],
                               sd['layers.1.downsample.reduction.weight'])


def test_own_dense_checkpoint_loads_with_prefix(tmp_path):
    src = randomize_(_build('convnext'))
    det = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    det['neck.lateral.weight'] = torch.zeros(1)
    model = _pretrained('convnext', _save(tmp_path, det, wrap='state_dict'),
                        init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'ckpt.pth'),
                                      prefix='backbone.'))
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_focal_kernels_are_zero_padded_only_when_asked(tmp_path):
    """FocalNet's detection configs widen the focal windows to 9 over an ImageNet model
    trained with 3 and zero-pad the pretrained kernels (its checkpoint loader)."""
    sd = randomize_(_timm_full('focalnet')).state_dict()  # focal windows 3
    path = _save(tmp_path, sd)
    with pytest.raises(CheckpointError, match='shape mismatches'):
        _pretrained('focalnet', path, focal_windows=(9, 9, 9, 9))
    model = _pretrained('focalnet', path, focal_windows=(9, 9, 9, 9),
                        pad_pretrained_kernels=True)
    key = 'layers.0.blocks.0.modulation.focal_layers.0.0.weight'
    small, big = sd[key], model.state_dict()['model.layers_0.' + key[len('layers.0.'):]]
    assert small.shape[-1] == 3 and big.shape[-1] == 9
    torch.testing.assert_close(big[..., 3:6, 3:6], small)
    assert big.abs().sum() == small.abs().sum()  # zeros around it


def test_no_checkpoint_is_plain_init():
    model = _build('convnext', init_cfg=None)
    model.init_weights()  # nothing to load, nothing fails


def test_pretrained_without_checkpoint_is_an_error():
    model = _build('convnext', init_cfg=dict(type='Pretrained'))
    with pytest.raises(ValueError, match='checkpoint'):
        model.init_weights()


# ---- the releases' own dense modules, converted by the suite's release converters -------
# Sizes: one that needs no padding, and odd ones where every stage pads (Swin: to the window
# grid; FocalNet: to the stride; Twins: to its windows, 61x93 also with the bottom pad 0).
SIZES = [(224, 224), (100, 132), (61, 93)]
TWINS_RELEASE = ('Meituan-AutoML/Twins', 'c1ff6714969ad8ef330e75cf97bd310f7488f529')
FOCALNET_RELEASE = ('microsoft/FocalNet', 'e8514bdcfe1eb6e7e110403e9f2972c67dfed1c3')


class _Holder(nn.Module):
    """A detector / segmentor as far as convert_release sees it: only ``backbone``."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def _converted(release, ours, layout):
    holder = _Holder(ours)
    out, _ = convert_release({f'backbone.{k}': v for k, v in release.state_dict().items()},
                             holder, layout)
    holder.load_state_dict(out)
    return ours.eval()


def _assert_stages_equal(release_outs, ours, x):
    with torch.no_grad():
        theirs, got = list(release_outs(x)), ours(x)
    assert len(theirs) == len(got) == 4
    for i, (a, b) in enumerate(zip(theirs, got)):
        assert a.shape == b.shape, f'stage {i}: {tuple(a.shape)} vs {tuple(b.shape)}'
        # float32 noise grows with depth and kernel size (FocalNet-T: 4e-5 of about 4)
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4, msg=lambda m, i=i: f'stage {i}: {m}')


@pytest.fixture(scope='module')
def mmdet_swin():
    from mmdet.models.backbones import SwinTransformer
    torch.manual_seed(0)
    release = randomize_(SwinTransformer(embed_dims=32, depths=(2, 2, 2, 2),
                                         num_heads=(1, 2, 4, 8), window_size=7,
                                         out_indices=(0, 1, 2, 3)))
    release.eval()  # (its train() returns None)
    return release, _converted(release, _build('swin'), 'swin-mm')


@pytest.mark.parametrize('size', SIZES)
def test_swin_equals_mmdet_swin(mmdet_swin, size):
    """mmdet's SwinTransformer (the OpenMMLab zoo's code; the official det/seg code pads and
    shifts the same way) and ours, through the swin-mm converter, at every stage."""
    release, ours = mmdet_swin
    _assert_stages_equal(release, ours, torch.randn(1, 3, *size))


def _import_release(path, name, stubs):
    """Run one release file as module ``name``, with ``stubs`` (module name -> attributes)
    standing in for the imports of its mm 0.x / timm 0.3 era; the file is not changed."""
    saved = {k: sys.modules.get(k) for k in stubs}
    try:
        for mod_name, attrs in stubs.items():
            mod = types.ModuleType(mod_name)
            mod.__dict__.update(attrs)
            sys.modules[mod_name] = mod
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        with warnings.catch_warnings():  # timm.models.layers is deprecated
            warnings.simplefilter('ignore')
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


class _Timm032Block(nn.Module):
    """timm 0.3.2's ``vision_transformer.Block`` (the version Twins pins) as far as gvt.py's
    ``GroupBlock`` uses it: the positional constructor and the layers it keeps (it replaces
    ``attn`` and has its own forward). timm 1.x's Block takes other positional arguments."""

    def __init__(self, dim, num_heads, mlp_ratio=4., qkv_bias=False, qk_scale=None, drop=0.,
                 attn_drop=0., drop_path=0., act_layer=nn.GELU, norm_layer=nn.LayerNorm):
        from timm.layers import DropPath, Mlp
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)


@pytest.fixture(scope='module')
def twins_release(tmp_path_factory):
    """The release's ALTGVT (Twins-SVT) at our shrunk sizes, as its alt_gvt_* build it."""
    import mmseg.models  # noqa: F401  (imported before its builder is stubbed)
    from timm.models import vision_transformer as vit
    root = release_source(*TWINS_RELEASE, tmp_path_factory.mktemp('twins'),
                          paths=('segmentation/gvt.py',))
    gvt = _import_release(osp.join(root, 'segmentation', 'gvt.py'), 'twins_release_gvt', {
        'mmcv.runner': dict(load_checkpoint=None),
        'mmseg.models.builder': dict(BACKBONES=_Registry()),
        'mmseg.utils': dict(get_root_logger=None),
        'timm.models.vision_transformer': dict(Block=_Timm032Block, Attention=vit.Attention,
                                               _cfg=vit._cfg)})
    _, shrink, eps = FAMILIES['twins']
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        release = gvt.ALTGVT(
            patch_size=4, embed_dims=list(shrink['embed_dims']),
            num_heads=list(shrink['num_heads']), mlp_ratios=[4] * 4, qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=eps), depths=list(shrink['depths']),
            wss=[7] * 4, sr_ratios=[8, 4, 2, 1], extra_norm=True, drop_path_rate=0.)
    release = randomize_(release).eval()
    return release, _converted(release, _build('twins'), 'twins-official')


@pytest.mark.slow
@pytest.mark.parametrize('size', SIZES)
def test_twins_equals_its_release(twins_release, size):
    """Twins' own segmentation backbone (gvt.py ``ALTGVT``, extra_norm: its norm_list feeds
    the next stage; its local attention masks the window padding), through the
    twins-official converter, at every stage."""
    release, ours = twins_release
    _assert_stages_equal(release.forward_features, ours, torch.randn(1, 3, *size))


@pytest.fixture(scope='module')
def focalnet_release(tmp_path_factory):
    """The release's FocalNet-T as its Mask R-CNN configs build it (focal windows 9, 3
    levels), imported as a module of a stand-in package for its ``..builder`` import."""
    import mmdet.models  # noqa: F401  (imported before its utils are stubbed)
    rel = 'detection/mmdet/models/backbones/focalnet.py'
    root = release_source(*FOCALNET_RELEASE, tmp_path_factory.mktemp('focalnet'),
                          paths=(rel,))
    mod = _import_release(osp.join(root, rel), 'focalnet_release.backbones.focalnet', {
        'focalnet_release': {}, 'focalnet_release.builder': dict(BACKBONES=_Registry()),
        'mmcv_custom': dict(load_checkpoint=None), 'mmdet.utils': dict(get_root_logger=None)})
    torch.manual_seed(0)
    release = randomize_(mod.FocalNet(embed_dim=96, depths=[2, 2, 6, 2],
                                      focal_windows=[9] * 4, focal_levels=[3] * 4,
                                      drop_path_rate=0.))
    release.eval()  # (its train() returns None)
    ours = _build('focalnet', focal_windows=(9, 9, 9, 9), pad_pretrained_kernels=True)
    return release, _converted(release, ours, 'focalnet-mm')


@pytest.mark.slow
@pytest.mark.parametrize('size', SIZES)
def test_focalnet_equals_its_det_release(focalnet_release, size):
    release, ours = focalnet_release
    _assert_stages_equal(release, ours, torch.randn(1, 3, *size))
