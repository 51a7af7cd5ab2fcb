"""UniFormer dense backbones (backbones/models/uniformer.py) and their det/seg configs.

Reference values come from outside the code under test: the official release
(github.com/Sense-X/UniFormer @ 52a0415: ``semantic_segmentation/mmseg/models/backbones/
uniformer.py``, ``image_classification/models/uniformer.py``, the ``exp/`` configs) for the
sizes, the hybrid-window rule, the checkpoint key layouts; parameter counts were measured on
the release's modules with the mm default heads (../shared/reference/remaining_rows.md,
sections 0.2 and 7). The slow test runs the release's own seg backbone against ours.
"""
import importlib.util
import os.path as osp
import sys
import types

import pytest
import torch

from backbones.engine.checkpoint import CheckpointError
from backbones.models.uniformer import AttnBlock, UniFormer, parse_attn_mode
from conftest import REPO, call_tool, randomize_, release_source

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')

RELEASE = ('Sense-X/UniFormer', '52a0415')
# the release's seg UniFormer (blocks + patch embeds + norm1..4), h32 = global in params
BACKBONE_PARAMS = {'small': 21_033_280, 'base': 49_264_576}
# whole models: backbone + mmdet Mask R-CNN FPN heads / mmseg UPerHead + FCN aux (512 ch)
MODEL_PARAMS = {
    'mask-rcnn_uniformer-s_fpn_8xb2-amp-1x_coco.py': 21_033_280 + 20_167_408,
    'mask-rcnn_uniformer-b_fpn_8xb2-amp-1x_coco.py': 49_264_576 + 20_167_408,
    'upernet_uniformer-s_8xb2-amp-160k_ade20k-512x512.py': 51_521_132,
    'upernet_uniformer-b_8xb2-amp-160k_ade20k-512x512.py': 79_752_428,
}
# cheap model with the structure of the real ones: 2 conv stages, 4 stage-3 blocks (so h<N>
# has 3 windowed blocks and one global), 4 / 8 heads
MINI = dict(depths=(1, 1, 4, 1), dims=(16, 32, 64, 128), head_dim=16)
TRAIN_EVAL = dict(attn_mode='global', eval_attn_mode='h32')  # the seg configs' setting


def _stage3(model):
    return list(model.stages[2].blocks)


def _randomize_bn_stats(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


# ---- sizes, structure and shapes --------------------------------------------------------
@pytest.mark.parametrize('arch', ['small', 'base'])
def test_params_and_structure_are_the_releases(arch):
    model = UniFormer(arch)
    assert sum(p.numel() for p in model.parameters()) == BACKBONE_PARAMS[arch]
    depths = (3, 4, 8, 3) if arch == 'small' else (5, 8, 20, 7)
    assert [len(s.blocks) for s in model.stages] == list(depths)
    assert [type(b).__name__ for b in model.stages[1].blocks] == ['ConvBlock'] * depths[1]
    assert [type(b).__name__ for b in model.stages[2].blocks] == ['AttnBlock'] * depths[2]
    assert [s.blocks[0].attn.num_heads for s in model.stages[2:]] == [5, 8]  # dims / 64
    assert isinstance(model.stages[0].blocks[0].norm1, torch.nn.BatchNorm2d)
    assert model.stages[2].blocks[0].attn.qkv.bias is not None


def test_stem_and_stage_sizes_at_odd_input():
    """The release's k4/s4 and k2/s2 convs drop trailing rows / columns (no padding): at
    97x131 the stages are 24x32 / 12x16 / 6x8 / 3x4."""
    model = UniFormer('small', **TRAIN_EVAL).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 97, 131))
    assert [tuple(o.shape) for o in outs] == [
        (1, 64, 24, 32), (1, 128, 12, 16), (1, 320, 6, 8), (1, 512, 3, 4)]
    assert all(torch.isfinite(o).all() and o.is_contiguous() for o in outs)
    assert model.out_channels == (64, 128, 320, 512)


def test_out_indices_and_nchw():
    model = UniFormer(MINI, out_indices=(1, 3)).eval()
    assert model.out_channels == (32, 128)
    assert isinstance(model.out_norms[0], torch.nn.Identity)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 67, 45))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 5), (2, 128, 2, 1)]


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='tiny'), r"unknown arch 'tiny'; valid names: small, base"),
    (dict(arch=dict(MINI, heads=2)), r"unknown arch keys \['heads'\]"),
    (dict(arch=dict(MINI, dims=(16, 32, 60, 128))), r'multiples of head_dim 16, got \[60\]'),
    (dict(arch=dict(depths=(1, 1), dims=(16, 32))), 'more than 2 stages'),
    (dict(arch=dict(MINI, conv_stages=3)), r'conv_stages in \[0, 2\]'),
    (dict(attn_mode='h0'), "attn_mode must be 'global', 'w<N>'"),
    (dict(attn_mode='window32'), "attn_mode must be 'global'"),
    (dict(eval_attn_mode='hybrid'), "eval_attn_mode must be 'global'"),
    (dict(norm_cfg=dict(type='GN', num_groups=8)), "norm_cfg must be dict.type='BN'."),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(out_indices=(4,)), 'out_indices'),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UniFormer(**{'arch': MINI, **kwargs})


# ---- stage-3 attention: the release's modes; global in training, h32 in eval ----------
def test_attn_modes_follow_the_releases_rule():
    # hybrid: blocks with (i + 1) % 4 == 0 global (None), the others windowed
    assert parse_attn_mode('h32', 8) == (32, 32, 32, None, 32, 32, 32, None)
    assert parse_attn_mode('h14', 20)[3::4] == (None,) * 5
    assert parse_attn_mode('h14', 20).count(14) == 15
    assert parse_attn_mode('w32', 3) == (32, 32, 32)
    assert parse_attn_mode('global', 3) == (None, None, None)


def _windows_used(model, x, monkeypatch):
    """Window size each attention block ran with, per stage (None: global)."""
    seen = {}
    real = AttnBlock._attend

    def spy(block, y, window_size):
        seen[id(block)] = window_size
        return real(block, y, window_size)
    monkeypatch.setattr(AttnBlock, '_attend', spy)
    model(x)
    monkeypatch.undo()
    return [[seen[id(b)] for b in model.stages[i].blocks] for i in (2, 3)]


def test_train_mode_is_global_and_eval_mode_is_h32(monkeypatch):
    model = UniFormer(MINI, **TRAIN_EVAL)
    x = torch.randn(1, 3, 64, 64)
    assert _windows_used(model.train(), x, monkeypatch) == [[None] * 4, [None]]
    with torch.no_grad():
        assert _windows_used(model.eval(), x, monkeypatch) == [[32, 32, 32, None], [None]]
    # frozen (eval-mode) stages of a training model still use the training attention
    frozen = UniFormer(MINI, frozen_stages=4, **TRAIN_EVAL).train()
    assert _windows_used(frozen, x, monkeypatch) == [[None] * 4, [None]]


def test_eval_outputs_are_h32_and_differ_from_global_on_large_maps():
    """Same weights in three models: the seg configs' (global / h32), all-global and
    all-h32. In eval mode the first equals h32 and differs from global at 33x41 stage-3
    tokens (a 528x656 input); in training it equals global."""
    ref = _randomize_bn_stats(randomize_(UniFormer(MINI, **TRAIN_EVAL)))
    glob, h32 = UniFormer(MINI), UniFormer(MINI, attn_mode='h32')
    for m in (glob, h32):
        m.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 528, 656)
    with torch.no_grad():
        outs = [m.eval()(x) for m in (ref, glob, h32)]
        assert outs[0][2].shape[-2:] == (33, 41)
        for a, b in zip(outs[0], outs[2]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        diff = (outs[0][2] - outs[1][2]).abs().max().item()
        assert diff > 1e-2, diff
        torch.testing.assert_close(outs[0][:2], outs[1][:2], rtol=0, atol=0)  # conv stages
        a, b = ref.train()(x), glob.train()(x)
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def _window_attention_by_loops(block, x, ws):
    """SABlock_Windows' token mixing written per window: LN, zero-pad right / bottom to a
    multiple of ws, attention inside each window on its own, crop (NHWC in and out)."""
    y = block.norm1(x)
    B, H, W, C = y.shape
    Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
    padded = y.new_zeros(B, Hp, Wp, C)
    padded[:, :H, :W] = y
    out = torch.empty_like(padded)
    for r in range(0, Hp, ws):
        for c in range(0, Wp, ws):
            win = padded[:, r:r + ws, c:c + ws].reshape(B, ws * ws, C)
            out[:, r:r + ws, c:c + ws] = block.attn(win).view(B, ws, ws, C)
    return out[:, :H, :W]


@pytest.mark.parametrize('size,ws', [((9, 13), 4), ((8, 12), 4), ((5, 6), 8), ((7, 7), None)])
def test_window_attention_is_per_window_attention(size, ws):
    torch.manual_seed(0)
    block = randomize_(AttnBlock(32, 4)).eval()
    x = torch.randn(2, *size, 32)
    want = _window_attention_by_loops(block, x, ws) if ws else \
        block.attn(block.norm1(x).flatten(1, 2)).view_as(x)
    torch.testing.assert_close(block._attend(block.norm1(x), ws), want, atol=1e-5, rtol=1e-5)


# ---- BatchNorm, training behaviour --------------------------------------------------------
def _bn_stats(model):
    return [b.clone() for n, b in model.named_buffers() if 'running' in n]


@pytest.mark.parametrize('norm_eval', [False, True])
def test_norm_eval_keeps_bn_statistics(norm_eval):
    model = UniFormer(MINI, norm_eval=norm_eval).train()
    before = _bn_stats(model)
    model(torch.randn(2, 3, 64, 64))
    changed = [not torch.equal(a, b) for a, b in zip(before, _bn_stats(model))]
    assert all(changed) if not norm_eval else not any(changed)


def test_syncbn_option():
    model = UniFormer(MINI, norm_cfg=dict(type='SyncBN'), norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert len(bns) == 4 and all(not m.training for m in bns)
    assert not any(type(m) is torch.nn.BatchNorm2d for m in model.modules())


def test_drop_path_rises_linearly_and_is_stochastic_in_training():
    model = UniFormer('small', drop_path_rate=0.25)
    rates = [b.drop_path.drop_prob for s in model.stages for b in s.blocks]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.25)  # torch.linspace(0, r, 18)
    assert all(b - a == pytest.approx(0.25 / 17) for a, b in zip(rates, rates[1:]))
    mini = UniFormer(MINI, drop_path_rate=0.5, norm_eval=True)
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    mini.train()
    assert not torch.allclose(mini(x)[-1], mini(x)[-1])


@pytest.mark.parametrize('frozen', [-1, 0, 2])
def test_frozen_stages(frozen):
    model = UniFormer(MINI, frozen_stages=frozen).train()
    frozen_mods = ([model.stem] if frozen >= 0 else []) + \
        [m for i in range(frozen) for m in (model.stages[i], model.out_norms[i])]
    frozen_ids = {id(p) for m in frozen_mods for p in m.parameters()}
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) not in frozen_ids), name
    assert all(not sub.training for m in frozen_mods for sub in m.modules())
    stats = _bn_stats(model)
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    assert all(p.grad is None for m in frozen_mods for p in m.parameters())
    assert model.stages[3].blocks[0].attn.qkv.weight.grad is not None
    frozen_bn = 4 * max(0, min(frozen, 2))  # 2 BNs x 2 running buffers per conv block
    assert all(torch.equal(a, b) for a, b in zip(stats[:frozen_bn], _bn_stats(model)))


def test_with_cp_same_outputs_grads_and_bn_statistics(monkeypatch):
    import backbones.models.uniformer as uniformer
    calls = []
    real = uniformer.cp.checkpoint
    monkeypatch.setattr(uniformer.cp, 'checkpoint',
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    ref = randomize_(UniFormer(MINI, **TRAIN_EVAL)).train()
    cpm = UniFormer(MINI, with_cp=True, **TRAIN_EVAL).train()
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 45, 61)
    outs = [m(x) for m in (ref, cpm)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for o in outs:
        sum((t ** 2).sum() for t in o).backward()
    for (name, p), q in zip(ref.named_parameters(), cpm.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    # the recomputation in backward does not update the running statistics again
    for a, b in zip(_bn_stats(ref), _bn_stats(cpm)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert len(calls) == 7 and all(k.get('use_reentrant') is False for k in calls)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_autocast_is_finite(dtype):
    model = _randomize_bn_stats(randomize_(UniFormer(MINI, **TRAIN_EVAL))).eval()
    x = torch.randn(1, 3, 75, 53)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outs = model(x)
    for o, r in zip(outs, ref):
        assert torch.isfinite(o).all()
        assert (o.float() - r).abs().mean() < 0.1 * r.abs().mean()


# ---- pretrained weights -----------------------------------------------------------------
def _release_key(key):
    """Our key -> the release's (seg/det backbone layout)."""
    parts = key.split('.')
    if parts[0] == 'stem':
        return '.'.join(['patch_embed1'] + parts[1:])
    if parts[0] == 'out_norms':
        return '.'.join([f'norm{int(parts[1]) + 1}'] + parts[2:])
    stage = int(parts[1]) + 1
    if parts[2] == 'downsample':
        return '.'.join([f'patch_embed{stage}'] + parts[3:])
    return '.'.join([f'blocks{stage}'] + parts[3:])


def release_state_dict(model, classification=True, seed=0):
    """The release's layout with distinct random values, built from ``model``'s shapes:
    ImageNet (``image_classification/models/uniformer.py``: no norm1..4, a final BatchNorm
    ``norm`` and ``head``) or the det/seg backbone (``norm1..4``)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in model.state_dict().items():
        if classification and key.startswith('out_norms.'):
            continue
        out[_release_key(key)] = torch.randn(value.shape, generator=g).to(value.dtype) \
            if value.is_floating_point() else value.clone()
    if classification:
        C = model.dims[-1]
        out.update({'norm.weight': torch.ones(C), 'norm.bias': torch.zeros(C),
                    'norm.running_mean': torch.zeros(C), 'norm.running_var': torch.ones(C),
                    'norm.num_batches_tracked': torch.tensor(0),
                    'head.weight': torch.zeros(1000, C), 'head.bias': torch.zeros(1000)})
    return out


def test_release_imagenet_checkpoint_loads_strictly(tmp_path):
    release = release_state_dict(UniFormer(MINI))
    assert 'blocks1.0.norm1.running_mean' in release and 'patch_embed4.norm.weight' in release
    path = tmp_path / 'uniformer_mini_in1k.pth'
    torch.save({'model': release}, path)  # the DeiT-style training code's wrapper
    model = UniFormer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    own = model.state_dict()
    assert torch.equal(own['stem.proj.weight'], release['patch_embed1.proj.weight'])
    assert torch.equal(own['stages.3.downsample.norm.bias'], release['patch_embed4.norm.bias'])
    assert torch.equal(own['stages.0.blocks.0.norm1.running_var'],
                       release['blocks1.0.norm1.running_var'])
    assert torch.equal(own['stages.2.blocks.3.attn.qkv.weight'],
                       release['blocks3.3.attn.qkv.weight'])
    assert len(release) - 7 == len([k for k in own if not k.startswith('out_norms.')])


def test_release_segmentor_checkpoint_backbone_loads_strictly(tmp_path):
    """An mmseg 0.13 UperNet checkpoint: backbone keys after 'backbone.', norm1..4 included."""
    backbone = release_state_dict(UniFormer(MINI), classification=False)
    ckpt = {'meta': {'mmseg_version': '0.13.0'}, 'state_dict': {
        **{f'backbone.{k}': v for k, v in backbone.items()},
        'decode_head.conv_seg.weight': torch.zeros(150, 512, 1, 1),
        'auxiliary_head.conv_seg.weight': torch.zeros(150, 256, 1, 1)}}
    path = tmp_path / 'upernet_mini.pth'
    torch.save(ckpt, path)
    model = UniFormer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                          prefix='backbone.'))
    model.init_weights()
    own = model.state_dict()
    assert len(own) == len(backbone)
    for key, value in own.items():
        assert torch.equal(value, backbone[_release_key(key)]), key
    assert torch.equal(own['out_norms.2.weight'], backbone['norm3.weight'])


def test_wrong_size_checkpoint_names_keys(tmp_path):
    release = release_state_dict(UniFormer(dict(MINI, dims=(16, 32, 96, 128))))
    path = tmp_path / 'wide.pth'
    torch.save({'model': release}, path)
    with pytest.raises(CheckpointError) as err:
        UniFormer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    msg = str(err.value)
    assert 'shape mismatches' in msg and 'stages.2.blocks.0.attn.qkv.weight' in msg
    deep = release_state_dict(UniFormer(dict(MINI, depths=(1, 2, 4, 1))))
    torch.save({'model': deep}, path)
    with pytest.raises(CheckpointError, match=r'unexpected keys .*stages\.1\.blocks\.1\.'):
        UniFormer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


def test_layer_scale_checkpoint_is_refused(tmp_path):
    """uniformer_base_ls (Table 1's 83.9) has gamma_1/2 the dense release lacks."""
    release = release_state_dict(UniFormer(MINI))
    release['blocks3.0.gamma_1'] = torch.ones(64)
    path = tmp_path / 'ls.pth'
    torch.save({'model': release}, path)
    with pytest.raises(CheckpointError, match=r'unexpected keys \(1\): stages\.2\.blocks\.0\.'
                                              r'gamma_1'):
        UniFormer(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


@pytest.mark.parametrize('classification', [True, False])
def test_convert_pretrained_is_idempotent(classification):
    once = UniFormer.convert_pretrained(release_state_dict(UniFormer(MINI), classification))
    twice = UniFormer.convert_pretrained(once)
    assert list(once) == list(twice) and not any(k.startswith(('norm', 'head')) for k in once)
    assert ('out_norms.0.weight' in once) != classification


def test_convert_checkpoint_tool(tmp_path):
    """The release's uniformer_small_in1k.pth layout through tools/convert_checkpoint.py."""
    release = release_state_dict(UniFormer('small'))
    src, dst = tmp_path / 'uniformer_small_in1k.pth', tmp_path / 'out' / 'uniformer_small.pth'
    torch.save({'model': release}, src)
    proc = call_tool('convert_checkpoint', src, dst,
                    '--backbone', 'UniFormer', '--arch', 'small')
    assert '21.03M params' in proc.stdout
    model = UniFormer('small', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    assert torch.equal(model.state_dict()['stages.1.blocks.3.mlp.fc2.weight'],
                       release['blocks2.3.mlp.fc2.weight'])


# ---- det / seg configs ------------------------------------------------------------------
def _build(name):
    import mmdet.utils
    import mmseg.utils
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    path = osp.join(REPO, 'det_configs' if name.startswith('mask-rcnn') else 'seg_configs', name)
    cfg = Config.fromfile(path)
    (mmdet.utils if cfg.default_scope == 'mmdet' else mmseg.utils).register_all_modules(False)
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model), cfg


@pytest.mark.parametrize('name', list(MODEL_PARAMS))
def test_model_params_equal_the_reference(name):
    model, cfg = _build(name)
    backbone = model.backbone
    assert type(backbone).__name__ == 'UniFormer'
    assert sum(p.numel() for p in model.parameters()) == MODEL_PARAMS[name]
    assert cfg.pretrained == f'checkpoints/uniformer/uniformer_{cfg.model.backbone.arch}_in1k.pth'
    depth = len(backbone.stages[2].blocks)
    if name.startswith('upernet'):  # trained global, tested h32 (exp/upernet_global_*)
        assert backbone.train_windows[2] == (None,) * depth
        assert backbone.eval_windows[2] == parse_attn_mode('h32', depth)
    else:  # h14 in training and testing (exp/mask_rcnn_1x_hybrid_*)
        assert backbone.train_windows == backbone.eval_windows
        assert backbone.train_windows[2] == parse_attn_mode('h14', depth)


def test_det_configs_decay_biases_and_position_convs_as_the_release():
    """The release's det optimizer exempts only names with 'norm' (and position tables) from
    weight decay; the base also exempts biases and 'pos_embed' (here depthwise convs)."""
    from mmengine.optim import build_optim_wrapper
    model, cfg = _build('mask-rcnn_uniformer-s_fpn_8xb2-amp-1x_coco.py')
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs CUDA; the groups are the same
    cfg.optim_wrapper.pop('loss_scale')
    groups = build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
    decay = {id(p): g['weight_decay'] for g in groups for p in g['params']}
    for name, p in model.named_parameters():
        want = 0.0 if ('norm' in name or '.bn.' in name) else 0.05
        assert decay[id(p)] == want, name


# ---- equivalence with the release's own module --------------------------------------------
@pytest.fixture(scope='module')
def release_uniformer(tmp_path_factory):
    """The release's seg ``uniformer.py``, its mm glue (registry, logger, checkpoint loader)
    stubbed; its layers, blocks and forward untouched."""
    rel = 'semantic_segmentation/mmseg/models/backbones/uniformer.py'
    path = osp.join(release_source(*RELEASE, tmp_path_factory.mktemp('release'), paths=(rel,)),
                    rel)
    glue = {name: types.ModuleType(name) for name in (
        'uniformer_release', 'uniformer_release.backbones', 'uniformer_release.builder',
        'mmcv_custom', 'mmseg.utils')}
    for name in ('uniformer_release', 'uniformer_release.backbones'):
        glue[name].__path__ = []
    glue['uniformer_release.builder'].BACKBONES = types.SimpleNamespace(
        register_module=lambda: (lambda cls: cls))
    glue['mmcv_custom'].load_checkpoint = glue['mmseg.utils'].get_root_logger = None
    saved = {k: sys.modules.get(k) for k in glue}
    sys.modules.update(glue)
    try:  # as mmseg/models/backbones/uniformer.py, so that '..builder' resolves to the stub
        spec = importlib.util.spec_from_file_location(
            'uniformer_release.backbones.uniformer', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module.UniFormer


def _release_model(cls, arch, **kwargs):
    return cls(layers=list(arch['depths']), embed_dim=list(arch['dims']),
               head_dim=arch['head_dim'], drop_path_rate=0., **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize('size', [(545, 673), (97, 131)])
@pytest.mark.parametrize('mode,release_kwargs', [
    ('h32', dict(hybrid=True, window_size=32)),     # test_config_h32.py: Table 3
    ('global', dict(hybrid=False)),                 # config.py: training
    ('w32', dict(windows=True, window_size=32)),    # test_config_w32.py
    ('h14', dict(hybrid=True, window_size=14)),     # the det configs
])
def test_stage_outputs_equal_the_release(release_uniformer, mode, release_kwargs, size):
    """Seeded random weights in the release's seg UniFormer, converted through our
    converter: every stage output equal in eval mode (running BN statistics), and, for the
    seg configs' training mode (global), in train mode too. 545x673: stage 3 is 34x42
    tokens (two 32-windows a side, padded); 97x131: 6x8, one padded window."""
    arch = dict(MINI, depths=(2, 2, 8, 2))
    torch.manual_seed(0)
    release = _randomize_bn_stats(randomize_(_release_model(release_uniformer, arch,
                                                            **release_kwargs)))
    ours = UniFormer(arch, attn_mode='global', eval_attn_mode=mode)
    ours.load_state_dict(UniFormer.convert_pretrained(release.state_dict()))
    # the layout the fast tests synthesise is the release's
    assert {_release_key(k) for k in ours.state_dict()} == set(release.state_dict())
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        pairs = list(zip(release.eval()(x), ours.eval()(x)))
    errors = []
    for want, got in pairs:
        assert want.shape == got.shape
        err = (got - want).abs().max().item()
        errors.append((err, err / want.abs().max().item()))
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    print(f'{mode} {size}: max abs / rel error per stage', errors)
    if mode == 'global':  # training mode: batch statistics, same graph
        for want, got in zip(release.train()(x), ours.train()(x)):
            torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.slow
def test_release_small_params_and_outputs(release_uniformer):
    """The full UniFormer-S of the release (h32) against ours at one awkward size."""
    arch = dict(UniFormer.arch_zoo['small'], head_dim=64)
    release = _release_model(release_uniformer, arch, hybrid=True, window_size=32)
    assert sum(p.numel() for p in release.parameters()) == BACKBONE_PARAMS['small']
    randomize_(release, seed=3)
    ours = UniFormer('small', **TRAIN_EVAL)
    ours.load_state_dict(UniFormer.convert_pretrained(release.state_dict()))
    x = torch.randn(1, 3, 545, 673)
    with torch.no_grad():
        pairs = list(zip(release.eval()(x), ours.eval()(x)))
    for want, got in pairs:
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    print('small h32 (545, 673): max abs / rel error per stage',
          [((g - w).abs().max().item(), ((g - w).abs().max() / w.abs().max()).item())
           for w, g in pairs])
