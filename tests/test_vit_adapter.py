"""ViT-Adapter (backbones/models/vit_adapter.py): the shared adapter, the ``ViTAdapter``
backbone over timm's DeiT, its det/seg configs, and PlainMamba's use of the same adapter.

Reference values come from outside the code under test: the official release
(github.com/czczup/ViT-Adapter @ fd64a51: ``detection/mmdet_custom/models/backbones/
{vit_adapter,adapter_modules}.py``, ``base/vit.py``, the ``segmentation/`` copies, the
det/seg configs, ``segmentation/mmcv_custom/layer_decay_optimizer_constructor.py``) for the
sizes, the window rule, the key layouts and the optimizer rules; parameter counts were
measured on the release's modules (../shared/reference/remaining_rows.md, sections 0.2, 4.3)
and the UperNet head formula is that file's (ssm_rows_and_timm_rows.md, section 3.5). The
slow tests run the release's own det and seg ``ViTAdapter`` and PlainMamba's release adapter
against ours.
"""
import importlib
import os.path as osp
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from backbones.engine.checkpoint import CheckpointError, state_dict_mismatch
from backbones.models.vit_adapter import ViTAdapter, WindowAttention, vit_layer_id
from conftest import REPO, call_tool, randomize_, release_source

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')

RELEASE = ('czczup/ViT-Adapter', 'fd64a51')
PLAINMAMBA_RELEASE = ('ChenhongyiYang/PlainMamba', '0975a1d')
# the release's ViTAdapter of the det configs, instantiated (remaining_rows.md 4.3)
BACKBONE_PARAMS = {'small': 27_503_888, 'base': 99_495_392}
S_PARTS = {'blocks': 21_302_784, 'adapter.spm': 1_307_456, 'adapter.interactions': 3_928_272,
           'adapter.up': 590_208}  # blocks with their layer scales (9,216)


def upernet_params(C):
    """mmseg UPerHead (512 channels) + FCN aux on four C-channel inputs (the formula of
    ssm_rows_and_timm_rows.md 3.5; README: ViT-Adapter-S / B UperNet 58M / 134M)."""
    head = (4 * (512 * C + 1024) + (C + 2048) * 4608 + 1024 + 3 * (512 * C + 1024)
            + 3 * (2_359_296 + 1024) + 9_438_208 + 76_950)
    return head + 2304 * C + 512 + 38_550


MODEL_PARAMS = {  # Mask R-CNN [calc] of remaining_rows.md 0.1 (README 48M / 120M)
    'mask-rcnn_vit-adapter-s_fpn_8xb2-amp-1x_coco.py': 47_802_368,
    'mask-rcnn_vit-adapter-b_fpn_8xb2-amp-1x_coco.py': 120_187_088,
    'upernet_vit-adapter-s_8xb2-amp-160k_ade20k-512x512.py': 27_503_888 + upernet_params(384),
    'upernet_vit-adapter-b_8xb2-amp-160k_ade20k-512x512.py': 99_495_392 + upernet_params(768),
}
# cheap model with the structure of the real ones: 4 interaction groups of 2 blocks
MINI = dict(embed_dim=32, depth=8, num_heads=2, deform_num_heads=2, deform_ratio=1.0)
SMALL_ADAPTER = dict(conv_inplane=8)


def mini(**kwargs):
    kwargs.setdefault('adapter', SMALL_ADAPTER)
    kwargs.setdefault('window_size', 4)
    return ViTAdapter(MINI, **kwargs)


def _randomize_bn_stats(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


# ---- sizes, structure, shapes --------------------------------------------------------------
@pytest.mark.parametrize('arch', ['small', 'base'])
def test_params_are_the_releases(arch):
    model = ViTAdapter(arch)
    assert sum(p.numel() for p in model.parameters()) == BACKBONE_PARAMS[arch]
    if arch == 'small':
        for prefix, n in S_PARTS.items():
            assert sum(p.numel() for k, p in model.named_parameters()
                       if k.startswith(prefix + '.')) == n, prefix
    heads = {'small': (6, 6, 384), 'base': (12, 12, 384)}[arch]  # B: deform_ratio 0.5
    attn = model.adapter.interactions[0].injector.attn
    assert (model.blocks[0].attn.num_heads, attn.num_heads, attn.value_proj.out_features) \
        == heads
    assert isinstance(model.out_norms[0], torch.nn.SyncBatchNorm)
    assert isinstance(model.adapter.spm.stem[1], torch.nn.SyncBatchNorm)


@pytest.mark.parametrize('arch,timm_name', [('small', 'deit_small_patch16_224'),
                                            ('base', 'deit_base_patch16_224')])
def test_vit_part_is_timms_deit(arch, timm_name):
    """The plain network is timm's DeiT with the release's layer scales: same keys and
    shapes, without the class token, final norm and classifier."""
    import timm
    deit = timm.create_model(timm_name, pretrained=False).state_dict()
    ours = {k: v for k, v in ViTAdapter(arch).state_dict().items()
            if not k.startswith(('adapter.', 'out_norms.'))}
    gammas = {k for k in ours if '.ls1.' in k or '.ls2.' in k}
    assert len(gammas) == 24 and all(torch.equal(ours[k], torch.ones_like(ours[k]))
                                     for k in gammas)
    assert {k: tuple(v.shape) for k, v in ours.items() if k not in gammas} == \
        {k: tuple(v.shape) for k, v in deit.items()
         if k not in ('cls_token', 'norm.weight', 'norm.bias', 'head.weight', 'head.bias')}


def test_window_rule_and_drop_path_are_the_releases():
    """Det configs: 14x14 windows except blocks 2, 5, 8, 11 (config l.26-29); drop path
    linear from 0 (base/vit.py: torch.linspace(0, rate, depth)); the ConvFFNs at the max."""
    model = ViTAdapter('small', drop_path_rate=0.2)
    assert [b.attn.window_size for b in model.blocks] == [14, 14, None] * 4
    rates = [getattr(b.drop_path1, 'drop_prob', 0.) for b in model.blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.2, 12).tolist())
    assert all(m.drop_prob == 0.2 for m in model.adapter.modules()
               if type(m).__name__ == 'DropPath')
    seg = ViTAdapter('small', window_size=None, vit_features='per_interaction')
    assert all(b.attn.window_size is None for b in seg.blocks)
    assert [b.attn.window_size for b in ViTAdapter(
        'small', global_blocks=(11,)).blocks] == [14] * 11 + [None]


def _window_reference(attn, x, ws):
    """Window attention written out window by window: q, k, v projected, zero-padded to
    multiples of ``ws`` (so padded tokens have q = k = v = 0), softmax over all ws*ws keys
    of the window, padded rows dropped, output projection."""
    B, H, W, C = x.shape
    qkv = F.pad(attn.qkv(x), (0, 0, 0, -W % ws, 0, -H % ws))
    out = torch.zeros(B, qkv.shape[1], qkv.shape[2], C, dtype=x.dtype)
    h, d = attn.num_heads, C // attn.num_heads
    for i in range(0, qkv.shape[1], ws):
        for j in range(0, qkv.shape[2], ws):
            win = qkv[:, i:i + ws, j:j + ws].reshape(B, ws * ws, 3, h, d)
            q, k, v = win.unbind(2)
            a = torch.einsum('bqhd,bkhd->bhqk', q, k) * d ** -0.5
            y = torch.einsum('bhqk,bkhd->bqhd', a.softmax(-1), v).reshape(B, ws, ws, C)
            out[:, i:i + ws, j:j + ws] = y
    return attn.proj(out[:, :H, :W])


@pytest.mark.parametrize('H,W,ws', [(5, 17, 4), (14, 20, 14), (3, 3, 14), (8, 8, 4)])
@pytest.mark.parametrize('fused', [True, False])
def test_window_attention_is_per_window_with_unmasked_zero_padding(H, W, ws, fused):
    torch.manual_seed(0)
    attn = randomize_(WindowAttention(16, num_heads=2, qkv_bias=True)).eval()
    attn.window_size, attn.fused_attn = ws, fused
    x = torch.randn(2, H, W, 16)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), _window_reference(attn, x, ws), atol=1e-5,
                                   rtol=1e-5)
        if H == W:  # global attention = one unpadded window covering the map
            attn.window_size = None
            torch.testing.assert_close(attn(x), _window_reference(attn, x, H), atol=1e-5,
                                       rtol=1e-5)


@pytest.mark.parametrize('H,W', [(97, 131), (64, 96), (33, 31)])
def test_shapes_odd_sizes_pad_and_crop(H, W):
    model = mini().eval()
    x = torch.randn(2, 3, H, W)
    with torch.no_grad():
        outs = model(x)
        # zero-padded to a multiple of 32, run, cropped back: the same as padding by hand
        Hp, Wp = -(-H // 32) * 32, -(-W // 32) * 32
        padded = model(F.pad(x, (0, Wp - W, 0, Hp - H)))
    assert model.out_channels == (32,) * 4
    for o, p, s in zip(outs, padded, (4, 8, 16, 32)):
        assert o.shape == (2, 32, -(-H // s), -(-W // s)) and o.is_contiguous()
        torch.testing.assert_close(o, p[..., :o.shape[2], :o.shape[3]])


def test_out_indices():
    model = mini(out_indices=(1, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 8, 12), (1, 32, 2, 3)]
    assert model.out_channels == (32, 32)


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='tiny'), 'unknown arch'),
    (dict(arch=dict(MINI, depth=6)), 'does not split into 4'),
    (dict(arch={k: v for k, v in MINI.items() if k != 'deform_ratio'}), 'arch dict needs'),
    (dict(arch=dict(MINI, num_heads=3)), 'divisible by num_heads'),
    (dict(arch=MINI, interaction_indexes=[[0, 2], [4, 7]]), 'interaction_indexes'),
    (dict(arch=MINI, window_size=0), 'window_size'),
    (dict(arch=MINI, global_blocks=(9,)), 'global_blocks'),
    (dict(arch=MINI, vit_features='all'), 'vit_features'),
    (dict(arch=dict(MINI, deform_num_heads=3)), 'deform_num_heads'),
    (dict(arch=MINI, img_size=8), 'img_size'),
    (dict(arch=MINI, out_indices=(4,)), 'out_indices'),
    (dict(arch=MINI, drop_path_rate=1.0), 'drop_path_rate'),
    (dict(arch=MINI, with_cp=(True, False)), 'with_cp'),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ViTAdapter(**kwargs)


def test_drop_path_acts_in_train_mode_only():
    model = mini(drop_path_rate=0.3).train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    a = model(x)[0]
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x)[0])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[2], model(x)[2])


@pytest.mark.parametrize('frozen', [0, 2])
def test_frozen_stages(frozen):
    model = mini(frozen_stages=frozen).train()
    frozen_mods = [model.patch_embed, model.adapter.spm] + [
        m for i in range(frozen) for m in model.stage_modules(i)]
    ids = {id(p) for m in frozen_mods for p in m.parameters()}
    ids |= {id(model.pos_embed), id(model.adapter.level_embed)}
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) not in ids), name
    assert not model.adapter.spm.stem[1].training
    assert [n.training for n in model.out_norms] == [i >= frozen for i in range(4)]
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    assert model.blocks[-1].mlp.fc2.weight.grad is not None


def test_norm_eval_keeps_bn_statistics():
    model = mini(norm_eval=True).train()
    before = model.out_norms[0].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(model.out_norms[0].running_mean, before)
    assert model.blocks[0].training  # only BatchNorms are put in eval mode


def test_with_cp_same_outputs_and_grads(monkeypatch):
    import torch.utils.checkpoint as cp
    calls = []
    real = cp.checkpoint
    monkeypatch.setattr(cp, 'checkpoint', lambda *a, **k: calls.append(k) or real(*a, **k))
    torch.manual_seed(0)
    ref = randomize_(mini(drop_path_rate=0.2)).train()
    cpm = mini(drop_path_rate=0.2, with_cp=True).train()
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 96)
    outs = []
    for m in (ref, cpm):
        torch.manual_seed(3)
        outs.append(m(x))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for o in outs:
        sum((t ** 2).sum() for t in o).backward()
    for (name, p), q in zip(ref.named_parameters(), cpm.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    # 8 blocks + 4 injectors + 4 extractors + 2 extra extractors, non-reentrant
    assert len(calls) == 18 and all(k.get('use_reentrant') is False for k in calls)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_autocast_is_finite(dtype):
    model = _randomize_bn_stats(randomize_(mini())).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outs = model(x)
    for o, r in zip(outs, ref):
        assert torch.isfinite(o).all()
        assert (o.float() - r).abs().mean() < 0.05 * r.abs().mean()


# ---- checkpoints ---------------------------------------------------------------------------
def deit_checkpoint(model, seed=0):
    """A DeiT release checkpoint (facebookresearch/deit: ``{'model': ...}``) of ``model``'s
    ViT: class token, final norm and classifier included, no layer scales, no adapter."""
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()
          if not k.startswith(('adapter.', 'out_norms.')) and '.ls' not in k}
    C = model.dim
    sd.update({'cls_token': torch.randn(1, 1, C, generator=g), 'norm.weight': torch.ones(C),
               'norm.bias': torch.zeros(C), 'head.weight': torch.zeros(1000, C),
               'head.bias': torch.zeros(1000)})
    return {'model': sd}


def release_key(key):
    """Our key -> the release ViTAdapter's."""
    if key.startswith('adapter.'):
        return key[8:]
    if key.startswith('out_norms.'):
        i, rest = key[10:].split('.', 1)
        return f'norm{int(i) + 1}.{rest}'
    return key.replace('.ls1.gamma', '.gamma1').replace('.ls2.gamma', '.gamma2')


def test_deit_checkpoint_loads_strictly_and_the_rest_is_new(tmp_path):
    model = mini()
    ckpt = deit_checkpoint(model)
    path = tmp_path / 'deit_mini.pth'
    torch.save(ckpt, path)
    loaded = mini(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    loaded.init_weights()
    own = loaded.state_dict()
    for k, v in ckpt['model'].items():
        if k not in ('cls_token', 'norm.weight', 'norm.bias', 'head.weight', 'head.bias'):
            assert torch.equal(own[k], v), k
    # what the checkpoint lacks is exactly the adapter, the output norms, the layer scales
    missing, unexpected, _ = state_dict_mismatch(own, ViTAdapter.convert_pretrained(
        ckpt['model']))
    assert not unexpected
    assert set(missing) == {k for k in own if k.startswith(('adapter.', 'out_norms.'))
                            or '.ls1.' in k or '.ls2.' in k}
    assert all(k.startswith(ViTAdapter.new_key_prefixes) for k in missing)
    # ... and nothing else may be missing
    del ckpt['model']['blocks.3.mlp.fc1.bias']
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r'missing keys \(1\): blocks\.3\.mlp\.fc1\.bias'):
        mini(init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


def test_release_detector_backbone_loads_strictly(tmp_path):
    """An mmdet 2.x Mask R-CNN checkpoint of the release: ``backbone.`` keys with
    ``gamma1/2``, ``spm``, ``interactions``, ``level_embed``, ``up``, ``norm1..4``."""
    src = _randomize_bn_stats(randomize_(mini()))
    sd = {'backbone.' + release_key(k): v for k, v in src.state_dict().items()}
    assert 'backbone.blocks.7.gamma2' in sd and 'backbone.norm4.running_var' in sd
    assert 'backbone.interactions.3.extra_extractors.1.ffn.dwconv.dwconv.weight' in sd
    assert 'backbone.interactions.0.injector.attn.sampling_offsets.weight' in sd
    sd['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    torch.save({'meta': {}, 'state_dict': sd}, tmp_path / 'det.pth')
    model = mini(init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'det.pth')))
    model.init_weights()
    for (k, a), b in zip(model.state_dict().items(), src.state_dict().values()):
        assert torch.equal(a, b), k


def test_wrong_size_checkpoint_names_keys(tmp_path):
    torch.save(deit_checkpoint(ViTAdapter(dict(MINI, embed_dim=48), adapter=SMALL_ADAPTER)),
               tmp_path / 'wide.pth')
    with pytest.raises(CheckpointError) as err:
        mini(init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'wide.pth'))) \
            .init_weights()
    assert 'blocks.0.attn.qkv.weight (checkpoint (144, 48) vs model (96, 32))' in str(err.value)
    torch.save(deit_checkpoint(ViTAdapter(dict(MINI, depth=12), adapter=SMALL_ADAPTER)),
               tmp_path / 'deep.pth')
    with pytest.raises(CheckpointError, match=r'unexpected keys \(\d+\): blocks\.10\.'):
        mini(init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'deep.pth'))) \
            .init_weights()


@pytest.mark.parametrize('layout', ['deit', 'release'])
def test_convert_pretrained_is_idempotent(layout):
    model = randomize_(mini())
    sd = deit_checkpoint(model)['model'] if layout == 'deit' else \
        {release_key(k): v for k, v in model.state_dict().items()}
    once = ViTAdapter.convert_pretrained(sd)
    twice = ViTAdapter.convert_pretrained(once)
    assert list(once) == list(twice)
    assert not any(k.startswith(('norm.', 'head.', 'cls_token')) for k in once)
    assert ('adapter.spm.fc1.weight' in once) == (layout == 'release')


def test_convert_checkpoint_tool(tmp_path):
    """A DeiT-layout file through tools/convert_checkpoint.py, then loaded by init_cfg."""
    arch = dict(MINI, model_name='deit_small_patch16_224')
    ckpt = deit_checkpoint(ViTAdapter(arch))
    src, dst = tmp_path / 'deit.pth', tmp_path / 'out' / 'own.pth'
    torch.save(ckpt, src)
    proc = call_tool('convert_checkpoint', src, dst,
                    '--backbone', 'ViTAdapter', '--arch', repr(arch))
    assert 'ViTAdapter' in proc.stdout
    model = ViTAdapter(arch, init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    assert torch.equal(model.state_dict()['blocks.5.attn.proj.weight'],
                       ckpt['model']['blocks.5.attn.proj.weight'])


# ---- det / seg configs ---------------------------------------------------------------------
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
    assert type(backbone).__name__ == 'ViTAdapter'
    assert sum(p.numel() for p in model.parameters()) == MODEL_PARAMS[name]
    assert cfg.pretrained == {  # the release configs' DeiT files (l.8)
        'small': 'checkpoints/deit/deit_small_patch16_224-cd65a155.pth',
        'base': 'checkpoints/deit/deit_base_patch16_224-b5f2ef4d.pth'}[cfg.model.backbone.arch]
    if name.startswith('upernet'):  # segmentation/mmseg_custom: global blocks, x per group
        assert all(b.attn.window_size is None for b in backbone.blocks)
        assert backbone.adapter.vit_features == 'per_interaction'
        assert cfg.model.test_cfg == dict(mode='slide', crop_size=(512, 512), stride=(341, 341))
    else:
        assert [b.attn.window_size for b in backbone.blocks] == [14, 14, None] * 4
        assert backbone.adapter.vit_features == 'last'


def _param_groups(name):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    model, cfg = _build(name)
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs CUDA; the groups are the same
    cfg.optim_wrapper.pop('loss_scale')
    with DefaultScope.overwrite_default_scope(cfg.default_scope):  # as the Runner builds it
        groups = build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
    return model, cfg, groups


def test_det_config_decays_as_the_release():
    """Release det config l.39-47: AdamW lr 1e-4, wd 0.05, decay_mult 0 for names with
    'level_embed', 'pos_embed', 'norm' or 'bias' (mmcv 1.x custom_keys: substrings of the
    full name); everything else decays, the spatial prior module's BatchNorm weights too."""
    model, _, groups = _param_groups('mask-rcnn_vit-adapter-s_fpn_8xb2-amp-1x_coco.py')
    decay = {id(p): g['weight_decay'] for g in groups for p in g['params']}
    rel_names = {id(p): 'backbone.' + release_key(n[9:]) if n.startswith('backbone.') else n
                 for n, p in model.named_parameters()}
    checked = 0
    for name, p in model.named_parameters():
        rel = rel_names[id(p)]
        want = 0.0 if any(k in rel for k in ('level_embed', 'pos_embed', 'norm', 'bias')) \
            else 0.05
        if name.startswith('backbone.'):
            assert decay[id(p)] == want, (name, rel)
            checked += 1
    assert checked == len(list(model.backbone.parameters()))
    assert decay[id(model.backbone.adapter.spm.stem[1].weight)] == 0.05
    assert decay[id(model.backbone.adapter.spm.stem[1].bias)] == 0.0


def test_seg_config_layer_decay_is_the_releases():
    """Release seg config l.49-51 + its LayerDecayOptimizerConstructor: lr 6e-5 * 0.95 **
    (13 - layer), layer 0 = pos_embed / patch_embed, i + 1 = blocks.i, 13 = the rest; no
    weight decay for 1-D parameters and biases; pos_embed and level_embed decay (0.01)."""
    model, cfg, groups = _param_groups('upernet_vit-adapter-s_8xb2-amp-160k_ade20k-512x512.py')
    assert cfg.optim_wrapper.constructor == 'ViTLayerDecayOptimWrapperConstructor'
    seen = {}
    for g in groups:
        for p in g['params']:
            seen[id(p)] = (g['lr'], g['weight_decay'])
    for name, p in model.named_parameters():
        if name.startswith(('backbone.pos_embed', 'backbone.patch_embed.')):
            layer = 0
        elif name.startswith('backbone.blocks.'):
            layer = int(name.split('.')[2]) + 1
        else:
            layer = 13
        no_decay = p.ndim == 1 or name.endswith('.bias')
        assert seen[id(p)] == (pytest.approx(6e-5 * 0.95 ** (13 - layer)),
                               0. if no_decay else 0.01), name
    assert vit_layer_id('backbone.blocks.11.ls2.gamma', 14) == 12
    assert seen[id(model.backbone.pos_embed)][1] == 0.01
    assert seen[id(model.backbone.adapter.level_embed)][1] == 0.01


def test_layer_decay_constructor_refuses_bad_paramwise_cfg():
    from backbones.models.vit_adapter import ViTLayerDecayOptimWrapperConstructor as C
    optim = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4))
    with pytest.raises(ValueError, match='needs exactly the keys'):
        C(optim, dict(num_layers=12, decay_rate=0.9))
    with pytest.raises(ValueError, match='layer_decay_rate'):
        C(optim, dict(num_layers=12, layer_decay_rate=1.5))


# ---- equivalence with the releases' own modules ------------------------------------------
def _stub(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def _import_release(root, backbones, package):
    """The release's ``vit_adapter.py`` (with ``adapter_modules.py``, ``base/vit.py`` and
    ``detection/ops``) imported as ``package.vit_adapter``. Stubbed: the mm 1.x/2.x glue
    (registry, BaseModule, logger, checkpoint loader) and the CUDA extension, whose
    ``MSDeformAttnFunction`` is replaced by the release's own pure-PyTorch
    ``ms_deform_attn_core_pytorch``. The math is untouched."""
    class Registry:
        @staticmethod
        def register_module(*args, **kwargs):
            return lambda cls: cls

    glue = {
        package: _stub(package, __path__=[osp.join(root, backbones)]),
        'ops': _stub('ops', __path__=[osp.join(root, 'detection', 'ops')]),
        'MultiScaleDeformableAttention': _stub('MultiScaleDeformableAttention'),
        'mmdet.models.builder': _stub('mmdet.models.builder', BACKBONES=Registry),
        'mmseg.models.builder': _stub('mmseg.models.builder', BACKBONES=Registry),
        'mmcv.runner': _stub('mmcv.runner', BaseModule=torch.nn.Module),
        'mmcv_custom': _stub('mmcv_custom', my_load_checkpoint=None),
        'mmdet.utils': _stub('mmdet.utils', get_root_logger=None),
        'mmseg.utils': _stub('mmseg.utils', get_root_logger=None),
    }
    saved = dict(sys.modules)
    sys.modules.update(glue)
    try:
        module = importlib.import_module(f'{package}.vit_adapter')
        msda = sys.modules['ops.modules.ms_deform_attn']
        core = sys.modules['ops.functions.ms_deform_attn_func'].ms_deform_attn_core_pytorch

        class PyTorchMSDA:  # the CUDA op's pure-PyTorch equivalent, shipped with the release
            @staticmethod
            def apply(value, shapes, level_start_index, locations, weights, im2col_step):
                return core(value, shapes, locations, weights)
        msda.MSDeformAttnFunction = PyTorchMSDA
    finally:
        for k in set(sys.modules) - set(saved):
            del sys.modules[k]
        sys.modules.update(saved)
    return module.ViTAdapter


@pytest.fixture(scope='module')
def release_root(tmp_path_factory):
    return release_source(*RELEASE, tmp_path_factory.mktemp('release'), paths=(
        'detection/mmdet_custom/models/backbones', 'detection/ops',
        'segmentation/mmseg_custom/models/backbones'))


def _release_args(arch, **kwargs):
    cfg = ViTAdapter.arch_zoo[arch] if isinstance(arch, str) else arch
    depth = cfg['depth']
    n = depth // 4
    return dict(patch_size=16, embed_dim=cfg['embed_dim'], depth=depth,
                num_heads=cfg['num_heads'], mlp_ratio=4, drop_path_rate=0., conv_inplane=64,
                n_points=4, deform_num_heads=cfg['deform_num_heads'], cffn_ratio=0.25,
                deform_ratio=cfg['deform_ratio'],
                interaction_indexes=[[i * n, i * n + n - 1] for i in range(4)], **kwargs)


def _compare(release, ours, x, train=False):
    release.train(train), ours.train(train)
    with torch.no_grad():
        want, got = release(x), ours(x)
    errors = []
    for w, g in zip(want, got):
        assert w.shape == g.shape
        torch.testing.assert_close(g, w, atol=5e-5, rtol=1e-4)
        errors.append(((g - w).abs().max().item(), ((g - w).abs().max() / w.abs().max()).item()))
    return errors


@pytest.mark.slow
@pytest.mark.parametrize('size', [(224, 320), (256, 416)])
def test_detector_backbone_equals_the_release(release_root, size):
    """The release's det ViTAdapter, DeiT-S (config mask_rcnn_deit_adapter_small_fpn_1x:
    14-windows but blocks 2/5/8/11), seeded random weights and BN statistics, converted
    through our converter: the four outputs equal in eval and train mode (BN batch
    statistics), and the gradients of every weight. 224x320: a 14x20 token map (one padded
    window column); 256x416: 16x26 (padded both ways)."""
    cls = _import_release(release_root, 'detection/mmdet_custom/models/backbones',
                          'vitadapter_release_det')
    windowed = [(i + 1) % 3 != 0 for i in range(12)]
    torch.manual_seed(0)
    release = cls(**_release_args('small', window_attn=windowed,
                                  window_size=[14 if w else None for w in windowed]))
    assert sum(p.numel() for p in release.parameters()) == BACKBONE_PARAMS['small']
    _randomize_bn_stats(randomize_(release))
    ours = ViTAdapter('small')
    ours.load_state_dict(ViTAdapter.convert_pretrained(release.state_dict()))
    assert {release_key(k) for k in ours.state_dict()} == set(release.state_dict())
    x = torch.randn(2, 3, *size)
    print(f'det {size} eval: max abs / rel error per level', _compare(release, ours, x))
    print(f'det {size} train: max abs / rel error per level',
          _compare(release, ours, x, train=True))
    if size == (224, 320):  # gradients, train mode
        for m in (release, ours):
            m.zero_grad()
            sum((o ** 2).mean() for o in m.train()(x)).backward()
        grads = dict(ours.named_parameters())
        worst = 0.
        for k, p in release.named_parameters():
            g = grads[next(iter(ViTAdapter.convert_pretrained({k: p})))].grad
            torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=1e-3, msg=k)
            worst = max(worst, (g - p.grad).abs().max().item())
        print(f'det {size}: max abs gradient error {worst:.2e}')


@pytest.mark.slow
@pytest.mark.parametrize('size', [(224, 320), (256, 416)])
def test_segmentor_backbone_equals_the_release(release_root, size):
    """The release's seg ViTAdapter (segmentation/mmseg_custom; config
    upernet_deit_adapter_small_512_160k: all blocks global, the x after group i added to
    level i) against ours with window_size=None, vit_features='per_interaction'."""
    cls = _import_release(release_root, 'segmentation/mmseg_custom/models/backbones',
                          'vitadapter_release_seg')
    torch.manual_seed(0)
    release = cls(**_release_args('small', window_attn=[False] * 12, window_size=[None] * 12))
    _randomize_bn_stats(randomize_(release, seed=2))
    ours = ViTAdapter('small', window_size=None, vit_features='per_interaction')
    ours.load_state_dict(ViTAdapter.convert_pretrained(release.state_dict()))
    x = torch.randn(1, 3, *size)
    print(f'seg {size} eval: max abs / rel error per level', _compare(release, ours, x))


@pytest.mark.slow
def test_base_params_equal_the_release(release_root):
    cls = _import_release(release_root, 'detection/mmdet_custom/models/backbones',
                          'vitadapter_release_det')
    release = cls(**_release_args('base', window_attn=[True] * 12, window_size=[14] * 12))
    assert sum(p.numel() for p in release.parameters()) == BACKBONE_PARAMS['base']
    ours = ViTAdapter('base')
    assert {release_key(k): tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in release.state_dict().items()}


# ---- PlainMamba's detector: the same adapter -----------------------------------------------
PM_MINI = dict(dim=32, depth=4, num_convs=1, dwconv_layers=(0,), taps=(0, 1, 2, 3))


@pytest.fixture(scope='module')
def plainmamba_release(tmp_path_factory):
    """PlainMamba's release ``PlainMambaAdapter`` (plain_mamba_adapter.py +
    adapter_modules.py) with its mm 1.x glue stubbed and mmcv's CUDA op
    ``MultiScaleDeformableAttnFunction`` swapped for mmcv's own pure-PyTorch
    ``multi_scale_deformable_attn_pytorch``. Its mmcls PlainMamba base class (mamba_ssm
    kernels) is replaced by a holder of attributes: the test puts our PlainMamba's stem and
    layers in it (their equivalence to the release: tests/test_plainmamba.py)."""
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch

    from backbones.models.plainmamba import resize_pos_embed
    rel = 'downstream/mmdetection/mmdet/models/backbones'
    root = release_source(*PLAINMAMBA_RELEASE, tmp_path_factory.mktemp('pm'), paths=(rel,))

    class PlainMambaBase(torch.nn.Module):
        def __init__(self, embed_dims, drop_path_rate):
            super().__init__()
            self.embed_dims, self.drop_path_rate = embed_dims, drop_path_rate
            self.layers = []  # filled by the test

    def release_resize(pos_embed, src_shape, dst_shape, mode, num_extra_tokens):
        assert num_extra_tokens == 0
        return resize_pos_embed(pos_embed, src_shape, dst_shape, mode)

    class PyTorchMSDA:
        @staticmethod
        def apply(value, shapes, level_start_index, locations, weights, im2col_step):
            return multi_scale_deformable_attn_pytorch(value, shapes, locations, weights)

    class Registry:
        @staticmethod
        def register_module(*args, **kwargs):
            return lambda cls: cls

    glue = {
        'pm_release': _stub('pm_release', __path__=[osp.join(root, rel)]),
        'mmdet.models.builder': _stub('mmdet.models.builder', BACKBONES=Registry),
        'mmcv.runner': _stub('mmcv.runner', force_fp32=lambda **kw: (lambda f: f)),
        'mmcls': _stub('mmcls', __path__=[]),
        'mmcls.models': _stub('mmcls.models', __path__=[]),
        'mmcls.models.utils': _stub('mmcls.models.utils', resize_pos_embed=release_resize),
        'mmcls.plain_mamba_dev': _stub('mmcls.plain_mamba_dev', __path__=[]),
        'mmcls.plain_mamba_dev.models': _stub('mmcls.plain_mamba_dev.models', __path__=[]),
        'mmcls.plain_mamba_dev.models.plain_mamba': _stub(
            'mmcls.plain_mamba_dev.models.plain_mamba', __path__=[]),
        'mmcls.plain_mamba_dev.models.plain_mamba.plain_mamba': _stub(
            'mmcls.plain_mamba_dev.models.plain_mamba.plain_mamba', PlainMamba=PlainMambaBase),
    }
    saved = dict(sys.modules)
    sys.modules.update(glue)
    try:
        module = importlib.import_module('pm_release.plain_mamba_adapter')
        sys.modules['pm_release.adapter_modules'].MultiScaleDeformableAttnFunction = \
            PyTorchMSDA
    finally:
        for k in set(sys.modules) - set(saved):
            del sys.modules[k]
        sys.modules.update(saved)
    return module.PlainMambaAdapter


@pytest.mark.slow
@pytest.mark.parametrize('size', [(64, 96), (96, 160)])
def test_plainmamba_adapter_equals_its_release(plainmamba_release, size):
    """PlainMamba's detector (its ``adapter=dict(...)`` form, built on the shared Adapter)
    against the release's PlainMambaAdapter forward and adapter modules, with the same
    PlainMamba stem / layers inside, seeded random weights: the four outputs equal."""
    from backbones.models.plainmamba import PlainMamba
    torch.manual_seed(0)
    ours = _randomize_bn_stats(randomize_(PlainMamba(PM_MINI, scan_backend='torch', adapter=dict(
        conv_inplane=16, deform_num_heads=4, n_points=4, cffn_ratio=0.25, deform_ratio=1.0))))
    release = plainmamba_release(
        conv_inplane=16, n_points=4, deform_num_heads=4, cffn_ratio=0.25, deform_ratio=1.0,
        interaction_indexes=[[i, i] for i in range(4)], embed_dims=32, drop_path_rate=0.)
    # the release's det state dict names (backbone part), filled from ours
    own = ours.state_dict()
    adapter = {k: own['adapter.' + k] for k in release.state_dict()
               if 'adapter.' + k in own}
    norms = {f'ad_norm{i + 1}.{k}': v for i in range(4)
             for k, v in ours.out_norms[i].state_dict().items()}
    release.load_state_dict({**adapter, **norms})
    H, W = size[0] // 16, size[1] // 16

    def patch_embed(img):
        x = ours.patch_embed(img)
        return x.flatten(1, 2), x.shape[1:3]

    class Layer(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def forward(self, x, res):
            return self.layer(x.view(x.shape[0], *res, -1)).flatten(1, 2)

    release.patch_embed, release.layers = patch_embed, [Layer(m) for m in ours.layers]
    release.with_pos_embed, release.pos_embed = True, ours.pos_embed
    release.patch_resolution, release.interpolate_mode = ours.pos_grid, 'bicubic'
    release.drop_after_pos = torch.nn.Identity()
    x = torch.randn(2, 3, *size)
    assert (H, W) == (x.shape[2] // 16, x.shape[3] // 16)
    print(f'plainmamba adapter {size}: max abs / rel error per level',
          _compare(release, ours, x))
