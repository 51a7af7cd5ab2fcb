"""Focal Transformer dense backbones (backbones/models/focal_transformer.py) and their configs.

Reference values come from outside the code under test: the official release
(github.com/microsoft/Focal-Transformer @ 57bb303, ``classification/focal_transformer.py`` and
the six ``configs/focal_*_patch4_window7_224.yaml``) for the sizes, the key layout and the
forward; parameter counts were measured on the release's modules
(../shared/reference/remaining_rows.md, sections 0.2 and 8.3). The slow tests run the
release's own module from the pinned snapshot against ours.
"""
import importlib.util
import os.path as osp
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backbones.engine.checkpoint import CheckpointError, load_state_dict_strict
from backbones.models.focal_transformer import FocalTransformer, neighbour_offsets, to_windows
from conftest import REPO, call_tool, randomize_, release_source

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')

RELEASE = ('microsoft/Focal-Transformer', '57bb3031582a2afb2d2a6916612bc4311316f9fc')
# the release's classifier built at 224 without its head, the final norm replaced by four
# output norms (remaining_rows.md 8.3)
BACKBONE_PARAMS = {'tiny': 28_112_724, 'small': 50_374_284, 'base': 88_792_192,
                   'tiny-useconv': 30_057_588, 'small-useconv': 52_319_148,
                   'base-useconv': 92_245_504}
# whole models: backbone + mmseg UPerHead/FCN (32,421,164 for C96, 34,534,700 for C128) or
# mmdet FPN/RPN/RoI heads (20,273,904 for C96, 20,396,784 for C128), remaining_rows.md 0.2
MODEL_PARAMS = {
    'upernet_focal-t_8xb2-amp-160k_ade20k-512x512.py': 62_478_752,
    'upernet_focal-s_8xb2-amp-160k_ade20k-512x512.py': 84_740_312,
    'upernet_focal-b_8xb2-amp-160k_ade20k-512x512.py': 126_780_204,
    'mask-rcnn_focal-t_fpn_8xb2-amp-1x_coco.py': 30_057_588 + 20_273_904,
    'mask-rcnn_focal-s_fpn_8xb2-amp-1x_coco.py': 52_319_148 + 20_273_904,
    'mask-rcnn_focal-b_fpn_8xb2-amp-1x_coco.py': 92_245_504 + 20_396_784,
}
# a cheap model with every feature: conv embedding, a ring in all four stages, three levels
MINI = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), conv_embed=True,
            expand_sizes=(3, 3, 3, 3), focal_levels=(3, 3, 3, 3))
# ... and the zoo's focal settings (no stage-4 ring, two levels) at a small width
SMALL_ZOO = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), conv_embed=True)


def _blocks(model):
    return [b for layer in model.layers for b in layer.blocks]


# ---- sizes and structure ----------------------------------------------------------------
@pytest.mark.parametrize('arch', list(BACKBONE_PARAMS))
def test_params_and_structure_are_the_releases(arch):
    with torch.device('meta'):  # shapes only
        model = FocalTransformer(arch)
    assert sum(p.numel() for p in model.parameters()) == BACKBONE_PARAMS[arch]
    depths = (2, 2, 6, 2) if arch.startswith('tiny') else (2, 2, 18, 2)
    assert [len(layer.blocks) for layer in model.layers] == list(depths)
    conv = arch.endswith('useconv')
    assert model.patch_embed.proj.kernel_size == ((7, 7) if conv else (4, 4))
    assert model.layers[0].downsample.proj.kernel_size == ((3, 3) if conv else (2, 2))
    heads = model.layers[0].blocks[0].attn.num_heads
    for i, layer in enumerate(model.layers):
        attn = layer.blocks[0].attn
        # as built at 224: a 132-key ring table in stages 1-3, none in stage 4 (7x7 map)
        assert hasattr(attn, 'relative_position_bias_table_to_neighbors') == (i < 3)
        if i < 3:
            assert attn.relative_position_bias_table_to_neighbors.shape == \
                (1, heads * 2 ** i, 49, 132)
        fw = (7, 5, 3, 1)[i]
        assert attn.relative_position_bias_table_to_windows[0].shape == \
            (heads * 2 ** i, (7 + fw - 1) ** 2)
        assert layer.blocks[0].pool_layers[0].weight.shape == (1, 49)
    assert not any('index' in k or 'offsets' in k for k in model.state_dict())


@pytest.mark.parametrize('arch', ['tiny-useconv', 'tiny'])
def test_stage_shapes_at_odd_input(arch):
    """The stem pads to a multiple of 4, each downsampling to a multiple of 2 (Swin's dense
    backbone does the same): stages are ceil(H / 4), ceil(H / 8), ... of any input."""
    model = FocalTransformer(arch).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 97, 131))
    assert [tuple(o.shape) for o in outs] == [
        (1, 96, 25, 33), (1, 192, 13, 17), (1, 384, 7, 9), (1, 768, 4, 5)]
    assert all(torch.isfinite(o).all() and o.is_contiguous() for o in outs)
    assert model.out_channels == (96, 192, 384, 768)


def test_out_indices_and_nchw():
    model = FocalTransformer(SMALL_ZOO, out_indices=(1, 3)).eval()
    assert model.out_channels == (32, 128)
    assert isinstance(model.out_norms[0], nn.Identity)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 33, 47))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 5, 6), (2, 128, 2, 2)]


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='huge'), r"unknown arch 'huge'; valid names: tiny, small, base, tiny-useconv"),
    (dict(arch=dict(SMALL_ZOO, heads=2)), r"unknown arch keys \['heads'\]"),
    (dict(arch=dict(embed_dim=16, depths=(1, 1))), r"arch needs \['num_heads'\]"),
    (dict(arch=dict(SMALL_ZOO, num_heads=(1, 2, 2))), 'num_heads needs one value per stage'),
    (dict(arch=dict(SMALL_ZOO, num_heads=(3, 2, 2, 4))), 'width 16 is not divisible by its '
                                                          'num_heads 3'),
    (dict(arch=dict(SMALL_ZOO, expand_sizes=(3, 3, 7, 0))), r'expand_sizes\[2\] must be an '
                                                            r'int in \[0, window_size=7\)'),
    (dict(arch=dict(SMALL_ZOO, focal_windows=(7, 4, 3, 1))), r'focal_windows\[1\] must be odd'),
    (dict(arch=dict(SMALL_ZOO, focal_levels=(2, 2, 5, 2))), r'focal_levels\[2\]=5 pools'),
    (dict(arch=dict(SMALL_ZOO, conv_embed='yes')), 'conv_embed must be a bool'),
    (dict(arch=dict(SMALL_ZOO, window_size=0)), 'must be positive ints'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(out_indices=(4,)), 'out_indices'),
    (dict(frozen_stages=5), 'frozen_stages'),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FocalTransformer(**kwargs)


# ---- focal attention pieces against the release's formulation ---------------------------
def _release_ring(t, ws, e):
    """The release's ring keys of every window, written as it computes them: the map
    rolled by (-e, -e), (-e, e), (e, -e), (e, e), each cut into windows, the four stacked
    and the tokens that fall inside the window itself dropped."""
    masks, rolled = [], []
    for sy, sx in ((-e, -e), (-e, e), (e, -e), (e, e)):
        m = torch.ones(ws, ws)
        m[slice(None, -e) if sy < 0 else slice(e, None),
          slice(None, -e) if sx < 0 else slice(e, None)] = 0
        masks.append(m)
        rolled.append(to_windows(torch.roll(t, shifts=(sy, sx), dims=(1, 2)), ws))
    keep = torch.stack(masks).flatten().nonzero().flatten()
    return torch.cat(rolled, 1)[:, keep]


@pytest.mark.parametrize('size', [(14, 14), (14, 21), (28, 7)])
def test_ring_gather_is_the_releases_rolled_windows(size):
    from backbones.models.focal_transformer import FocalAttention
    H, W = size
    attn = FocalAttention(8, 2, window_size=7, expand_size=3)
    assert len(neighbour_offsets(7, 3)) == 4 * 49 - 4 * 16 == 132  # the release's key count
    t = torch.arange(2 * H * W, dtype=torch.float).view(2, H, W, 1)
    idx = attn._neighbour_index(H // 7, W // 7, H, W)
    ours = t.reshape(2, H * W, 1)[:, idx].view(-1, 132, 1)
    torch.testing.assert_close(ours, _release_ring(t, 7, 3), rtol=0, atol=0)


def test_ring_is_dropped_where_the_map_fits_one_window():
    """The release builds no ring for a block whose map is no larger than the window; ours
    skips it at such sizes (and stage 4 of the zoo has none at all)."""
    model = randomize_(FocalTransformer(dict(SMALL_ZOO, depths=(1, 1, 1, 1)))).train()
    table = model.layers[2].blocks[0].attn.relative_position_bias_table_to_neighbors
    for size, used in ((28, False), (29, True)):  # stage 3: 7x7, then 8x8
        model.zero_grad()
        sum(o.sum() for o in model(torch.randn(1, 3, size * 4, size * 4))).backward()
        assert (table.grad is not None and table.grad.abs().sum() > 0) == used, size


# ---- training behaviour -----------------------------------------------------------------
def test_drop_path_rises_linearly_and_is_stochastic_in_training():
    model = FocalTransformer('tiny-useconv', drop_path_rate=0.2)
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0.
             for b in _blocks(model)]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.2)
    assert all(b - a == pytest.approx(0.2 / 11) for a, b in zip(rates, rates[1:]))
    mini = randomize_(FocalTransformer(MINI, drop_path_rate=0.5))
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    a = mini.train()(x)[-1]
    b = mini(x)[-1]
    assert not torch.allclose(a, b)
    with torch.no_grad():
        mini.eval()
        torch.testing.assert_close(mini(x)[-1], mini(x)[-1])


@pytest.mark.parametrize('frozen', [-1, 0, 2])
def test_frozen_stages(frozen):
    model = FocalTransformer(MINI, frozen_stages=frozen, drop_path_rate=0.5)
    model.train()
    frozen_mods = ([model.patch_embed] if frozen >= 0 else []) + \
        [m for i in range(frozen) for m in (model.layers[i], model.out_norms[i])]
    frozen_ids = {id(p) for m in frozen_mods for p in m.parameters()}
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) not in frozen_ids), name
    assert all(not m.training for m in frozen_mods)
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    assert all(p.grad is None for m in frozen_mods for p in m.parameters())
    assert model.layers[3].blocks[0].attn.qkv.weight.grad is not None


def test_with_cp_same_outputs_and_grads(monkeypatch):
    import backbones.layers.blocks as layers
    calls = []
    real = layers.cp.checkpoint
    monkeypatch.setattr(layers.cp, 'checkpoint',
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    ref = randomize_(FocalTransformer(MINI, drop_path_rate=0.)).train()
    cpm = FocalTransformer(MINI, drop_path_rate=0., with_cp=True).train()
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 61, 45)
    outs = [m(x) for m in (ref, cpm)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for o in outs:
        sum((t ** 2).sum() for t in o).backward()
    for (name, p), q in zip(ref.named_parameters(), cpm.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert len(calls) == 5 and all(k.get('use_reentrant') is False for k in calls)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_autocast_is_finite(dtype):
    model = randomize_(FocalTransformer(MINI)).eval()
    x = torch.randn(1, 3, 61, 45)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outs = model(x)
    for o, r in zip(outs, ref):
        assert torch.isfinite(o).all()
        assert (o.float() - r).abs().mean() < 0.1 * r.abs().mean()


# ---- pretrained weights -----------------------------------------------------------------
def release_state_dict(model, seed=0):
    """The release's ImageNet ``model`` dict for ``model``'s size, distinct random values:
    our keys minus the output norms, plus the final ``norm``, the ``head`` and the index
    buffers the release saves (``relative_position_index[_k]``, ``valid_ind_rolled``,
    ``valid_ind_unfold_k``)."""
    g = torch.Generator().manual_seed(seed)
    out = {k: torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()
           if not k.startswith('out_norms.')}
    for name, m in model.named_modules():
        if name.endswith('.attn'):
            out[f'{name}.relative_position_index'] = m.relative_position_index
            if m.expand_size:
                out[f'{name}.valid_ind_rolled'] = torch.arange(132)
            for k in range(m.focal_level - 1):
                out[f'{name}.relative_position_index_{k}'] = \
                    getattr(m, f'relative_position_index_{k}')
                if k:
                    out[f'{name}.valid_ind_unfold_{k}'] = torch.arange(9)
    C = model.dims[-1]
    out.update({'norm.weight': torch.ones(C), 'norm.bias': torch.zeros(C),
                'head.weight': torch.zeros(1000, C), 'head.bias': torch.zeros(1000)})
    return out


def test_release_checkpoint_loads_strictly(tmp_path):
    release = release_state_dict(FocalTransformer(MINI))
    path = tmp_path / 'focal-mini-useconv-is224-ws7.pth'
    torch.save({'model': release}, path)  # the release's save_checkpoint layout
    model = FocalTransformer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    own = model.state_dict()
    for key in ('patch_embed.proj.weight', 'layers.3.blocks.0.pool_layers.1.weight',
                'layers.2.blocks.1.attn.relative_position_bias_table_to_windows.1',
                'layers.3.blocks.0.attn.relative_position_bias_table_to_neighbors',
                'layers.0.downsample.norm.bias'):
        assert torch.equal(own[key], release[key]), key
    loaded = [k for k in own if not k.startswith('out_norms.')]
    assert all(torch.equal(own[k], release[k]) for k in loaded)
    assert len(loaded) == len([k for k in release if not k.startswith(('norm.', 'head.'))
                               and 'index' not in k and 'valid_ind' not in k])


def test_dense_checkpoint_with_swin_style_out_norms_loads(tmp_path):
    """A det / seg checkpoint of the layout the release says its dense code follows (Swin's:
    ``backbone.norm{i}`` per output) loads with ``prefix='backbone.'``, norms included."""
    model = FocalTransformer(MINI)
    release = release_state_dict(model)
    del release['norm.weight'], release['norm.bias'], release['head.weight'], release['head.bias']
    for i, c in enumerate(model.dims):
        release[f'norm{i}.weight'], release[f'norm{i}.bias'] = torch.rand(c), torch.rand(c)
    path = tmp_path / 'upernet_focal_mini.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in release.items()}
                | {'decode_head.conv_seg.weight': torch.zeros(150, 8, 1, 1)}}, path)
    model = FocalTransformer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                                 prefix='backbone.'))
    model.init_weights()
    assert torch.equal(model.state_dict()['out_norms.2.weight'], release['norm2.weight'])


def test_wrong_size_checkpoint_names_keys(tmp_path):
    release = release_state_dict(FocalTransformer(dict(MINI, conv_embed=False)))
    path = tmp_path / 'focal-mini-is224-ws7.pth'
    torch.save({'model': release}, path)
    with pytest.raises(CheckpointError) as err:
        FocalTransformer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path))
                         ).init_weights()
    msg = str(err.value)
    assert 'shape mismatches' in msg and 'patch_embed.proj.weight' in msg
    # a model built with a stage-4 ring (the release at 512) does not fit the zoo's either
    release = release_state_dict(FocalTransformer(dict(SMALL_ZOO, expand_sizes=(3, 3, 3, 3))))
    torch.save({'model': release}, path)
    with pytest.raises(CheckpointError, match='layers.3.blocks.0.attn.relative_position_bias_'
                                              'table_to_neighbors'):
        FocalTransformer(SMALL_ZOO, init_cfg=dict(type='Pretrained', checkpoint=str(path))
                         ).init_weights()


def test_convert_pretrained_is_idempotent():
    once = FocalTransformer.convert_pretrained(release_state_dict(FocalTransformer(MINI)))
    twice = FocalTransformer.convert_pretrained(once)
    assert list(once) == list(twice)
    assert not any(k.startswith(('head.', 'norm.')) or 'index' in k or 'valid_ind' in k
                   for k in once)


def test_convert_checkpoint_tool(tmp_path):
    """The release's file layout (``{'model': ...}``) through tools/convert_checkpoint.py."""
    model = FocalTransformer(MINI)
    release = release_state_dict(model)
    src = tmp_path / 'focal-mini-useconv-is224-ws7.pth'
    dst = tmp_path / 'out' / 'focal-mini-useconv.pth'
    torch.save({'model': release}, src)
    proc = call_tool('convert_checkpoint', src, dst,
                    '--backbone', 'FocalTransformer', '--arch', repr(MINI))
    norms = sum(p.numel() for p in model.out_norms.parameters())
    n = sum(p.numel() for p in model.parameters()) - norms  # all but the output norms
    assert f'{len(model.state_dict()) - 8} tensors, {n / 1e6:.2f}M params' in proc.stdout
    model = FocalTransformer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    key = 'layers.3.blocks.0.attn.relative_position_bias_table_to_neighbors'
    assert torch.equal(model.state_dict()[key], release[key])


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
    with torch.device('meta'):  # shapes only
        model, cfg = _build(_config(name))
    assert type(model.backbone).__name__ == 'FocalTransformer'
    assert sum(p.numel() for p in model.parameters()) == MODEL_PARAMS[name]
    assert cfg.pretrained.startswith('checkpoints/focal/focal-')
    assert cfg.pretrained.endswith('-useconv-is224-ws7.pth')


# ---- equivalence with the release's own module ------------------------------------------
@pytest.fixture(scope='module')
def release_module(tmp_path_factory):
    root = release_source(*RELEASE, tmp_path_factory.mktemp('focal_release'))
    spec = importlib.util.spec_from_file_location(
        'focal_release', osp.join(root, 'classification', 'focal_transformer.py'))
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # timm.models.layers is deprecated, torch.meshgrid
        warnings.simplefilter('ignore')
        spec.loader.exec_module(module)
    return module


def _release_model(mod, size, arch):
    """The release's classifier as its build.py makes it from a yaml (stage-4 ring as the
    release decides at ``size``), seeded random weights."""
    a = dict(FocalTransformer.focal_defaults,
             **(FocalTransformer.arch_zoo[arch] if isinstance(arch, str) else arch))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = mod.FocalTransformer(
            img_size=size, embed_dim=a['embed_dim'], depths=list(a['depths']),
            num_heads=list(a['num_heads']), window_size=7, focal_pool='fc',
            focal_levels=list(a['focal_levels']), focal_windows=[7, 5, 3, 1],
            expand_sizes=[3, 3, 3, 3], use_conv_embed=a['conv_embed'], drop_path_rate=0.)
    return randomize_(model).eval()


class _ReleaseAtStageSizes(nn.Module):
    """The release's stem and stages, each built for the size it really gets (its
    ``FocalTransformer`` assumes maps of floor(size / stride), which its 3x3/s2 convs do not
    give at other sizes); the forward is its ``forward_features`` without the final norm."""

    def __init__(self, mod, arch, img_size, sizes):
        super().__init__()
        a = dict(FocalTransformer.focal_defaults, **FocalTransformer.arch_zoo[arch])
        C = a['embed_dim']
        self.patch_embed = mod.PatchEmbed(img_size=img_size, patch_size=4, in_chans=3,
                                          embed_dim=C, use_conv_embed=True,
                                          norm_layer=nn.LayerNorm, is_stem=True)
        self.layers = nn.ModuleList([mod.BasicLayer(
            dim=C * 2 ** i, input_resolution=sizes[i], depth=a['depths'][i],
            num_heads=a['num_heads'][i], window_size=7, expand_size=3,
            drop_path=[0.] * a['depths'][i], pool_method='fc', focal_level=2,
            focal_window=a['focal_windows'][i], use_conv_embed=True,
            downsample=mod.PatchEmbed if i < 3 else None) for i in range(4)])

    def forward(self, x):
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return x


def _release_stages(model, x):
    """Every release stage's output before its downsampling (the last block's), NCHW."""
    outs = []
    hooks = [layer.blocks[-1].register_forward_hook(lambda m, i, o: outs.append(o))
             for layer in model.layers]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return [o.view(o.shape[0], *layer.input_resolution, -1).permute(0, 3, 1, 2)
            for layer, o in zip(model.layers, outs)]


def _ours_from(release, arch, allow_missing=()):
    model = FocalTransformer(arch, drop_path_rate=0.).eval()
    load_state_dict_strict(model, FocalTransformer.convert_pretrained(release.state_dict()),
                           allow_missing=('out_norms.',) + allow_missing)
    return model


def _assert_stages_equal(ref, ours, label):
    assert len(ref) == len(ours) == 4
    for i, (a, b) in enumerate(zip(ref, ours)):
        assert a.shape == b.shape, (label, i)
        err = (a - b).abs().max().item()
        print(f'{label} stage {i} {tuple(b.shape)}: max abs {err:.2e}, '
              f'rel {err / a.abs().max().item():.2e}')
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('size,arch', [((224, 224), 'tiny-useconv'),
                                       ((224, 256), 'tiny-useconv'),
                                       ((224, 256), 'tiny')])
def test_stages_equal_the_release(release_module, size, arch):
    """Sizes the release's classifier runs with the ImageNet structure (stage 4 at most 7
    high): square and non-square (its blocks pad 64 and 8 to multiples of 7)."""
    ref = _release_model(release_module, size, arch)
    ours = _ours_from(ref, arch)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        _assert_stages_equal(_release_stages(ref, x), ours.forward_stages(x), f'{arch} {size}')


@pytest.mark.slow
def test_odd_size_equals_the_release_on_the_zero_padded_image(release_module):
    """At 201x263 (odd, non-square) our padding path equals the release's stem on the image
    zero-padded to 204x264 followed by its stages built for the maps they get (51x66,
    26x33, 13x17, 7x9): the 3x3/s2 convs give those maps from odd ones by themselves."""
    H, W = 201, 263
    sizes = [(-(-H // 2 ** s), -(-W // 2 ** s)) for s in range(2, 6)]
    torch.manual_seed(0)
    ref = randomize_(_ReleaseAtStageSizes(release_module, 'tiny-useconv', (204, 264),
                                          sizes)).eval()
    ours = _ours_from(ref, 'tiny-useconv')
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        _assert_stages_equal(_release_stages(ref, F.pad(x, (0, 1, 0, 3))),
                             ours.forward_stages(x), '201x263')


@pytest.mark.slow
@pytest.mark.parametrize('size', [(256, 320), (224, 448)])
def test_stage4_ring_and_three_levels_equal_the_release_with_grads(release_module, size):
    """A dict arch with a ring in stage 4 and three focal levels (the release's crop / pad
    of the coarsest level) against the release built at that size: at 256x320 stage 4 is
    8x10 and both use the ring; at 224x448 it is 7x14, the release builds none and ours,
    which has the table, skips it. Outputs and every parameter's gradient."""
    ref = _release_model(release_module, size, MINI)
    ring4 = 'layers.3.blocks.0.attn.relative_position_bias_table_to_neighbors'
    has_ring4 = size[0] > 224
    ours = _ours_from(ref, MINI, allow_missing=() if has_ring4 else (ring4,))
    x = torch.randn(1, 3, *size)
    a, b = _release_stages(ref, x), ours.forward_stages(x)
    _assert_stages_equal([t.detach() for t in a], [t.detach() for t in b], f'mini {size}')
    for outs in (a, b):
        sum((t ** 2).mean() for t in outs).backward()
    grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        if name in grads and grads[name].grad is not None:
            torch.testing.assert_close(p.grad, grads[name].grad, atol=1e-5, rtol=1e-3,
                                       msg=name)
        else:  # output norms (unused by forward_stages) and, at 224x448, the skipped ring
            assert p.grad is None, name
    assert (ours.get_parameter(ring4).grad is not None) == has_ring4
