"""CSWin Transformer dense backbones (backbones/models/cswin.py) and their det/seg configs.

Reference values come from outside the code under test: the official release
(github.com/microsoft/CSWin-Transformer @ f111ae2: ``models/cswin.py``, the dense
``segmentation/backbone/cswin_transformer.py`` and ``segmentation/configs/cswin/*``) for the
sizes, the key layouts and the stripe padding; parameter counts were measured on the
release's modules (../shared/reference/remaining_rows.md, section 1.3). The slow test runs
the release's own modules from its pinned snapshot against ours.
"""
import importlib.util
import os.path as osp
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from backbones.engine.checkpoint import CheckpointError
from backbones.models.cswin import CSWin, LePEAttention
from conftest import REPO, call_tool, randomize_, release_source

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')

RELEASE = ('microsoft/CSWin-Transformer', 'f111ae2f771df32006e7afd7916835dd67d4cb9d')
# the release's dense CSWin (with norm1..norm4), instantiated
BACKBONE_PARAMS = {'tiny': 21_808_448, 'small': 34_131_200, 'base': 76_614_528}
# whole models: the dense backbone + mmdet 3.3 / mmseg 1.2 default heads
MODEL_PARAMS = {
    'mask-rcnn_cswin-t_fpn_8xb2-amp-1x_coco.py': 41_959_472,
    'mask-rcnn_cswin-s_fpn_8xb2-amp-1x_coco.py': 54_282_224,
    'mask-rcnn_cswin-b_fpn_8xb2-amp-1x_coco.py': 96_888_432,
    'upernet_cswin-t_8xb2-amp-160k_ade20k-512x512.py': 52_116_076,
    'upernet_cswin-s_8xb2-amp-160k_ade20k-512x512.py': 64_438_828,
    'upernet_cswin-b_8xb2-amp-160k_ade20k-512x512.py': 109_035_692,
}
# cheap model; stripes of 3 in stage 2 so that small maps get padded
MINI = dict(depths=(1, 1, 2, 1), embed_dim=16, num_heads=(2, 2, 4, 4), split_size=(1, 2, 3, 7))


def _blocks(model):
    return [b for stage in model.stages for b in stage.blocks]


# ---- sizes and shapes -------------------------------------------------------------------
@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_params_and_layout_are_the_releases(arch):
    with torch.device('meta'):
        model = CSWin(arch)
    assert sum(p.numel() for p in model.parameters()) == BACKBONE_PARAMS[arch]
    depths = {'tiny': (1, 2, 21, 1), 'small': (2, 4, 32, 2), 'base': (2, 4, 32, 2)}[arch]
    assert tuple(len(s.blocks) for s in model.stages) == depths
    # stages 1-3: two stripe branches of half the channels and heads; stage 4: one, global
    C = model.dims[0]
    b = model.stages[0].blocks[0]
    assert [(a.axis, a.stripe, a.num_heads, a.get_v.weight.shape[0]) for a in b.attns] == \
        [(0, 1, model.num_heads[0] // 2, C // 2), (1, 1, model.num_heads[0] // 2, C // 2)]
    assert [a.stripe for a in model.stages[2].blocks[0].attns] == [7, 7]
    last = model.stages[3].blocks[0].attns
    assert len(last) == 1 and last[0].axis is None and last[0].get_v.weight.shape[0] == 8 * C
    assert model.stem.proj.kernel_size == (7, 7) and model.stem.proj.stride == (4, 4)


def test_stage_sizes_at_odd_input():
    """conv 7x7/s4 p2, then conv 3x3/s2 p1: 97x131 -> 24x33, 12x17, 6x9, 3x5 (stage 2's
    17 columns and stage 3's 6x9 map are padded to their stripes)."""
    model = CSWin('tiny').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 97, 131))
    assert [tuple(o.shape) for o in outs] == [
        (1, 64, 24, 33), (1, 128, 12, 17), (1, 256, 6, 9), (1, 512, 3, 5)]
    assert all(torch.isfinite(o).all() and o.is_contiguous() for o in outs)
    assert model.out_channels == (64, 128, 256, 512)


def test_out_indices_and_nchw():
    model = CSWin(MINI, out_indices=(1, 3)).eval()
    assert model.out_channels == (32, 128)
    assert isinstance(model.out_norms[0], torch.nn.Identity)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 33, 47))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 4, 6), (2, 128, 1, 2)]  # 8x12 after the stem


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='large'), r"unknown arch 'large'; valid names: tiny, small, base"),
    (dict(arch=dict(MINI, window=7)), r"unknown arch keys \['window'\]"),
    (dict(arch=dict(MINI, split_size=(1, 2, 7))), 'one per stage'),
    (dict(arch=dict(MINI, num_heads=(3, 2, 4, 4))), 'stage 0: dims 16 must divide into '
                                                    'num_heads 3'),
    (dict(arch=dict(MINI, num_heads=(1, 2, 4, 4))), 'even number of heads'),
    (dict(arch=dict(MINI, mlp_ratio=0)), 'mlp_ratio'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(out_indices=(4,)), 'out_indices'),
    (dict(in_channels=0), 'in_channels'),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CSWin(**kwargs)


# ---- the attention against the release's, written as loops -----------------------------
def release_branch_forward(m, q, k, v, split, axis):
    """segmentation/backbone/cswin_transformer.py LePEAttention.forward, one window at a
    time: pad H / W to the stripe (top / left get pad // 2), attend per head with the pads
    unmasked, add the 3x3 depthwise conv of V taken inside the window, crop."""
    q, k, v = (t.permute(0, 3, 1, 2) for t in (q, k, v))  # NCHW as the release
    B, C, H, W = q.shape
    wh, ww = {None: (H, W), 0: (H, split), 1: (split, W)}[axis]
    ph, pw = (wh - H % wh) % wh, (ww - W % ww) % ww
    pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    q, k, v = (F.pad(t, pads) for t in (q, k, v))
    heads, hd = m.num_heads, C // m.num_heads
    out = torch.zeros_like(q)
    for a in range(q.shape[2] // wh):
        for b in range(q.shape[3] // ww):
            rows, cols = slice(a * wh, (a + 1) * wh), slice(b * ww, (b + 1) * ww)
            lepe = F.conv2d(v[:, :, rows, cols], m.get_v.weight, m.get_v.bias, padding=1,
                            groups=C)
            for h in range(heads):
                ch = slice(h * hd, (h + 1) * hd)
                qh, kh, vh = (t[:, ch, rows, cols].flatten(2).transpose(1, 2)
                              for t in (q, k, v))
                attn = torch.softmax(qh * hd ** -0.5 @ kh.transpose(1, 2), dim=-1)
                out[:, ch, rows, cols] = (attn @ vh).transpose(1, 2).view(B, hd, wh, ww) + \
                    lepe[:, ch]
    out = out[:, :, pads[2]:pads[2] + H, pads[0]:pads[0] + W]
    return out.permute(0, 2, 3, 1)


@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('axis,split,size', [(0, 3, (5, 8)), (1, 3, (7, 4)), (0, 2, (6, 6)),
                                             (1, 7, (3, 10)), (None, 7, (5, 9))])
def test_branch_matches_release_forward(axis, split, size, fused, monkeypatch):
    monkeypatch.setattr(LePEAttention, 'fused_attn', fused)  # fused: SDPA; else matmuls
    torch.manual_seed(0)
    m = randomize_(LePEAttention(8, 2, split, axis))
    q, k, v = (torch.randn(2, *size, 8) for _ in range(3))
    torch.testing.assert_close(m(q, k, v), release_branch_forward(m, q, k, v, split, axis),
                               atol=1e-5, rtol=1e-5)


def test_padding_is_symmetric():
    """Counter-check of the rule above: 7 columns in stripes of 3 are padded to 9 with one
    zero column on each side, so the middle stripe is columns 2-4 and holds no pad (it equals
    the branch run on those columns alone); right-only padding would cut it elsewhere."""
    torch.manual_seed(0)
    m = randomize_(LePEAttention(4, 1, 3, 0))
    q, k, v = (torch.randn(1, 4, 7, 4) for _ in range(3))
    ours = m(q, k, v)
    torch.testing.assert_close(ours[:, :, 2:5], m(q[:, :, 2:5], k[:, :, 2:5], v[:, :, 2:5]))
    right_only = m(*(F.pad(t, (0, 0, 0, 2)) for t in (q, k, v)))[:, :, :7]
    assert not torch.allclose(ours, right_only, atol=1e-4)


# ---- training behaviour -----------------------------------------------------------------
def test_drop_path_rises_linearly_and_is_stochastic_in_training():
    with torch.device('meta'):
        model = CSWin('tiny', drop_path_rate=0.3)
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for b in _blocks(model)]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.3)
    assert all(b - a == pytest.approx(0.3 / 24) for a, b in zip(rates, rates[1:]))
    mini = randomize_(CSWin(MINI, drop_path_rate=0.5))
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
    model = CSWin(MINI, frozen_stages=frozen, drop_path_rate=0.5)
    model.train()
    frozen_mods = ([model.stem] if frozen >= 0 else []) + \
        [m for i in range(frozen) for m in (model.stages[i], model.out_norms[i])]
    frozen_ids = {id(p) for m in frozen_mods for p in m.parameters()}
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) not in frozen_ids), name
    assert all(not m.training for m in frozen_mods)
    sum(o.sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    assert all(p.grad is None for m in frozen_mods for p in m.parameters())
    assert model.stages[3].blocks[0].attns[0].get_v.weight.grad is not None


def test_with_cp_same_outputs_and_grads(monkeypatch):
    import backbones.layers.blocks as layers
    calls = []
    real = layers.cp.checkpoint
    monkeypatch.setattr(layers.cp, 'checkpoint',
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    ref = randomize_(CSWin(MINI, drop_path_rate=0.3)).train()
    cpm = CSWin(MINI, drop_path_rate=0.3, with_cp=True).train()
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 37, 29)
    outs = []
    for m in (ref, cpm):
        torch.manual_seed(1)  # same drop-path draws: checkpointing replays the RNG state
        outs.append(m(x))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for o in outs:
        sum((t ** 2).sum() for t in o).backward()
    for (name, p), q in zip(ref.named_parameters(), cpm.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert len(calls) == 5 and all(k.get('use_reentrant') is False for k in calls)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_autocast_is_finite(dtype):
    model = randomize_(CSWin(MINI)).eval()
    x = torch.randn(1, 3, 45, 35)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outs = model(x)
    for o, r in zip(outs, ref):
        assert torch.isfinite(o).all()
        assert (o.float() - r).abs().mean() < 0.1 * r.abs().mean()


# ---- pretrained weights -----------------------------------------------------------------
def _release_key(key, dense):
    """Our key in the release's layout (``None``: a key the release's model lacks)."""
    parts = key.split('.')
    if parts[0] == 'stem':
        return f"stage1_conv_embed.{'0' if parts[1] == 'proj' else '2'}." + '.'.join(parts[2:])
    if parts[0] == 'stages' and parts[2] == 'blocks':
        return f'stage{int(parts[1]) + 1}.{parts[3]}.' + '.'.join(parts[4:])
    if parts[0] == 'stages' and parts[2] == 'downsample':
        return f'merge{parts[1]}.' + '.'.join(parts[3:])
    if parts[0] == 'out_norms':
        return f'norm{int(parts[1]) + 1}.' + '.'.join(parts[2:]) if dense else None
    raise AssertionError(key)


def release_state_dict(model, dense=False, seed=0):
    """The release's layout with distinct random values, from the shapes of ``model``:
    ``models/cswin.py`` (ImageNet: final ``norm`` + ``head``, no output norms) or, with
    ``dense``, ``segmentation/backbone/cswin_transformer.py`` (``norm1..norm4``)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in model.state_dict().items():
        key = _release_key(key, dense)
        if key is not None:
            out[key] = torch.randn(value.shape, generator=g)
    if not dense:
        C = model.dims[-1]
        out.update({'norm.weight': torch.ones(C), 'norm.bias': torch.zeros(C),
                    'head.weight': torch.zeros(1000, C), 'head.bias': torch.zeros(1000)})
    return out


@pytest.mark.parametrize('wrapper', ['state_dict', 'state_dict_ema', 'model'])
def test_imagenet_checkpoint_loads_strictly(tmp_path, wrapper):
    release = release_state_dict(CSWin(MINI))
    path = tmp_path / 'cswin_mini_224.pth'
    torch.save({wrapper: release, 'epoch': torch.tensor(300)}, path)  # timm CheckpointSaver
    model = CSWin(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    own = model.state_dict()
    pairs = {'stem.proj.weight': 'stage1_conv_embed.0.weight',
             'stem.norm.bias': 'stage1_conv_embed.2.bias',
             'stages.2.blocks.1.attns.1.get_v.weight': 'stage3.1.attns.1.get_v.weight',
             'stages.3.blocks.0.qkv.bias': 'stage4.0.qkv.bias',
             'stages.1.downsample.conv.weight': 'merge1.conv.weight',
             'stages.3.downsample.norm.weight': 'merge3.norm.weight'}
    for ours, theirs in pairs.items():
        assert torch.equal(own[ours], release[theirs]), ours
    loaded = len(release) - 4  # all but the classifier (final norm, head)
    assert loaded == len([k for k in own if not k.startswith('out_norms.')])


def test_both_ema_and_weights_take_state_dict_as_the_release(tmp_path):
    """segmentation/mmcv_custom/checkpoint.py: 'state_dict' before 'state_dict_ema'."""
    plain, ema = (release_state_dict(CSWin(MINI), seed=s) for s in (0, 1))
    path = tmp_path / 'both.pth'
    torch.save({'state_dict': plain, 'state_dict_ema': ema}, path)
    model = CSWin(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert torch.equal(model.state_dict()['stem.proj.weight'],
                       plain['stage1_conv_embed.0.weight'])


def test_segmentation_checkpoint_backbone_loads_strictly(tmp_path):
    """The released UperNet checkpoints (mmseg 0.11): ``backbone.`` + the dense file's keys,
    output norms included, next to the heads."""
    release = release_state_dict(CSWin(MINI), dense=True)
    ckpt = {f'backbone.{k}': v for k, v in release.items()}
    ckpt.update({'decode_head.conv_seg.weight': torch.zeros(150, 512, 1, 1),
                 'auxiliary_head.conv_seg.bias': torch.zeros(150)})
    path = tmp_path / 'upernet_cswin_mini.pth'
    torch.save({'meta': {}, 'state_dict': ckpt}, path)
    model = CSWin(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                      prefix='backbone.'))
    model.init_weights()
    own = model.state_dict()
    assert len(own) == len(release)
    for i in range(4):
        assert torch.equal(own[f'out_norms.{i}.weight'], release[f'norm{i + 1}.weight'])
    assert torch.equal(own['stages.2.blocks.0.norm1.weight'], release['stage3.0.norm1.weight'])


def test_wrong_size_checkpoint_names_keys(tmp_path):
    release = release_state_dict(CSWin(dict(MINI, embed_dim=24)))
    path = tmp_path / 'wide.pth'
    torch.save({'state_dict_ema': release}, path)
    with pytest.raises(CheckpointError) as err:
        CSWin(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    msg = str(err.value)
    assert 'shape mismatches' in msg and 'stages.0.blocks.0.qkv.weight' in msg
    deeper = release_state_dict(CSWin(dict(MINI, depths=(1, 1, 3, 1))))
    torch.save({'state_dict_ema': deeper}, path)
    with pytest.raises(CheckpointError, match=r'unexpected keys \(\d+\): stages\.2\.blocks\.2'):
        CSWin(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


@pytest.mark.parametrize('dense', [False, True])
def test_convert_pretrained_is_idempotent(dense):
    once = CSWin.convert_pretrained(release_state_dict(CSWin(MINI), dense=dense))
    twice = CSWin.convert_pretrained(once)
    assert list(once) == list(twice)
    assert all(k.startswith(('stem.', 'stages.', 'out_norms.')) for k in once)


def test_convert_checkpoint_tool(tmp_path):
    """The released UperNet checkpoint's backbone through tools/convert_checkpoint.py."""
    release = release_state_dict(CSWin('tiny'), dense=True)
    src, dst = tmp_path / 'upernet_cswin_tiny.pth', tmp_path / 'out' / 'cswin_tiny.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in release.items()}}, src)
    proc = call_tool('convert_checkpoint', src, dst,
                    '--backbone', 'CSWin', '--arch', 'tiny', '--prefix', 'backbone.')
    assert '21.81M params' in proc.stdout
    model = CSWin('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    assert torch.equal(model.state_dict()['out_norms.3.bias'], release['norm4.bias'])
    assert torch.equal(model.state_dict()['stages.2.blocks.20.mlp.fc2.weight'],
                       release['stage3.20.mlp.fc2.weight'])


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
    with DefaultScope.overwrite_default_scope(cfg.default_scope), torch.device('meta'):
        return MODELS.build(cfg.model), cfg


@pytest.mark.parametrize('name', list(MODEL_PARAMS))
def test_model_params_equal_the_reference(name):
    model, cfg = _build(_config(name))
    assert type(model.backbone).__name__ == 'CSWin'
    assert sum(p.numel() for p in model.parameters()) == MODEL_PARAMS[name]
    assert cfg.pretrained == f"checkpoints/cswin/cswin_{cfg.model.backbone.arch}_224.pth"


# ---- equivalence with the release's own modules -----------------------------------------
class _Rearrange(torch.nn.Module):
    """einops' ``Rearrange('b c h w -> b (h w) c')``, the one pattern the release uses (its
    ImageNet stem); einops is not a dependency of the suite."""

    def __init__(self, pattern, **sizes):
        super().__init__()
        assert pattern == 'b c h w -> b (h w) c', pattern

    def forward(self, x):
        return x.flatten(2).transpose(1, 2)


def _stub(monkeypatch, name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def _import_release(src, monkeypatch):
    """The release's dense and ImageNet modules, imported from the snapshot with only their
    import glue stubbed: the mmseg 0.x registry (``..builder``), ``mmcv_custom``,
    ``get_root_logger`` and, when absent, einops' Rearrange."""
    import mmseg.utils

    class Registry:
        def register_module(self):
            return lambda cls: cls

    try:
        import einops.layers.torch  # noqa: F401
    except ImportError:
        _stub(monkeypatch, 'einops')
        _stub(monkeypatch, 'einops.layers')
        _stub(monkeypatch, 'einops.layers.torch', Rearrange=_Rearrange)
    _stub(monkeypatch, 'mmcv_custom', load_checkpoint=None)
    monkeypatch.setattr(mmseg.utils, 'get_root_logger', None, raising=False)
    pkg = _stub(monkeypatch, 'cswin_release', __path__=[osp.join(src, 'segmentation')])
    pkg.builder = _stub(monkeypatch, 'cswin_release.builder', BACKBONES=Registry())
    _stub(monkeypatch, 'cswin_release.backbone',
          __path__=[osp.join(src, 'segmentation', 'backbone')])
    modules = []
    for name, path in (('cswin_release.backbone.cswin_transformer',
                        osp.join(src, 'segmentation', 'backbone', 'cswin_transformer.py')),
                       ('cswin_release_cls', osp.join(src, 'models', 'cswin.py'))):
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        modules.append(module)
    return modules


def _max_errors(ours, theirs):
    return [((a - b).abs().max().item(), ((a - b).abs().max() / b.abs().max()).item())
            for a, b in zip(ours, theirs)]


@pytest.mark.slow
def test_equivalent_to_the_release(tmp_path_factory, monkeypatch):
    """CSWin-T: the release's dense ``CSWin`` (seeded random weights, its own state dict
    converted by ours) gives our four stage outputs at 224x224 and at 97x131 (stripe padding
    in stages 2 and 3); its ImageNet ``CSWinTransformer`` loads through the converter and
    gives our final features at 224x224."""
    src = release_source(*RELEASE, tmp_path_factory.mktemp('release'), paths=(
        'models/cswin.py', 'segmentation/backbone/cswin_transformer.py'))
    dense_mod, cls_mod = _import_release(src, monkeypatch)
    torch.manual_seed(0)
    ref = dense_mod.CSWin(embed_dim=64, depth=[1, 2, 21, 1], num_heads=[2, 4, 8, 16],
                          split_size=[1, 2, 7, 7], mlp_ratio=4., qkv_bias=True,
                          drop_path_rate=0.)
    ref.init_weights()
    randomize_(ref, seed=1).eval()
    ours = CSWin('tiny', drop_path_rate=0.).eval()
    ours.load_state_dict(CSWin.convert_pretrained(ref.state_dict()))  # strict
    report = {}
    with torch.no_grad():
        for size in ((224, 224), (97, 131)):
            x = torch.randn(2, 3, *size)
            theirs, mine = ref(x), ours(x)
            assert [t.shape for t in theirs] == [m.shape for m in mine]
            report[size] = errs = _max_errors(mine, theirs)
            assert all(rel < 1e-5 for _, rel in errs), errs

        cls = cls_mod.CSWin_64_12211_tiny_224()
        randomize_(cls, seed=2).eval()
        ours = CSWin('tiny', drop_path_rate=0.).eval()
        ours.init_cfg = None
        converted = CSWin.convert_pretrained(cls.state_dict())
        missing, unexpected = ours.load_state_dict(converted, strict=False)
        assert not unexpected and all(k.startswith('out_norms.') for k in missing)
        x = torch.randn(2, 3, 224, 224)
        last = ours.forward_stages(x)[-1].flatten(2).transpose(1, 2)
        feats = F.layer_norm(last, (512,), cls.norm.weight, cls.norm.bias).mean(1)
        report['imagenet'] = errs = _max_errors([feats], [cls.forward_features(x)])
        assert all(rel < 1e-5 for _, rel in errs), errs
    print('max abs / rel error per stage:', report)
