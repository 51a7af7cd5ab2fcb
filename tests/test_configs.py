"""Every det/seg config: loads, builds, follows the paper's recipe, and trains on toy data.

Expected values come from the recipe (the MambaOut paper, its authors' stated settings,
the VMamba release), written out here, not read back from the configs.
"""
import glob
import os.path as osp
import socket

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from conftest import REPO, run_tool, toy_options

# release/: evaluation-only configs of released checkpoints (tests/test_releases.py)
DET = sorted(p for p in glob.glob(osp.join(REPO, 'det_configs', '**', '*.py'), recursive=True)
             if not {'_base_', 'release'} & set(p.split(osp.sep)))
SEG = sorted(p for p in glob.glob(osp.join(REPO, 'seg_configs', '**', '*.py'), recursive=True)
             if not {'_base_', 'release'} & set(p.split(osp.sep)))

# backbone short name in the file name -> (type, arch, drop_path_rate (or {task: rate}),
# out channels). Sources: each row's release (comments in the config files).
BACKBONES = {
    'mambaout-femto': ('MambaOut', 'femto', 0.1, [48, 96, 192, 288]),
    'mambaout-t': ('MambaOut', 'tiny', 0.3, [96, 192, 384, 576]),
    'mambaout-s': ('MambaOut', 'small', 0.3, [96, 192, 384, 576]),
    'mambaout-b': ('MambaOut', 'base', 0.6, [128, 256, 512, 768]),
    'vmamba-t': ('VMamba', 'v0-tiny', 0.2, [96, 192, 384, 768]),
    'vmamba-s': ('VMamba', 'v0-small', 0.3, [96, 192, 384, 768]),
    'vmamba-b': ('VMamba', 'v0-base', 0.6, [128, 256, 512, 1024]),
    'vmamba-v2-t': ('VMamba', 'v2-tiny', 0.2, [96, 192, 384, 768]),
    'vmamba-v2-s': ('VMamba', 'v2-small', 0.3, [96, 192, 384, 768]),
    'vmamba-v2-b': ('VMamba', 'v2-base', 0.6, [128, 256, 512, 1024]),
    'timm-convnext-atto': ('TimmBackbone', None, 0.1, [40, 80, 160, 320]),
    'localvmamba-t': ('LocalVMamba', 'tiny', {'det': 0.2, 'seg': 0.1}, [96, 192, 384, 768]),
    'localvmamba-s': ('LocalVMamba', 'small', 0.2, [96, 192, 384, 768]),
    # the table rows with the corrected vertical scan (variants/; see test_localvmamba_scan_order)
    'localvmamba-t-vfix': ('LocalVMamba', 'tiny', {'det': 0.2, 'seg': 0.1}, [96, 192, 384, 768]),
    'localvmamba-s-vfix': ('LocalVMamba', 'small', 0.2, [96, 192, 384, 768]),
    'efficientvmamba-b': ('EfficientVMamba', 'base', 0.2, [96, 192, 384, 768]),
    'plainmamba-l1': ('PlainMamba', 'l1', 0.1, [192] * 4),
    'plainmamba-l2': ('PlainMamba', 'l2', 0.2, [384] * 4),
    'plainmamba-l3': ('PlainMamba', 'l3', 0.3, [448] * 4),
    'internimage-t': ('InternImage', 'tiny', 0.2, [64, 128, 256, 512]),
    'internimage-s': ('InternImage', 'small', 0.3, [80, 160, 320, 640]),
    'internimage-b': ('InternImage', 'base', 0.4, [112, 224, 448, 896]),
    'uniformer-s': ('UniFormer', 'small', {'det': 0.2, 'seg': 0.25}, [64, 128, 320, 512]),
    'uniformer-b': ('UniFormer', 'base', {'det': 0.3, 'seg': 0.4}, [64, 128, 320, 512]),
    # Focal Transformer (useconv): Swin's det / seg drop paths (no dense code released)
    'focal-t': ('FocalTransformer', 'tiny-useconv', {'det': 0.2, 'seg': 0.3},
                [96, 192, 384, 768]),
    'focal-s': ('FocalTransformer', 'small-useconv', {'det': 0.2, 'seg': 0.3},
                [96, 192, 384, 768]),
    'focal-b': ('FocalTransformer', 'base-useconv', 0.3, [128, 256, 512, 1024]),
    # CSWin: the release's UperNet drop paths, also for det (no det config released)
    'cswin-t': ('CSWin', 'tiny', 0.3, [64, 128, 256, 512]),
    'cswin-s': ('CSWin', 'small', 0.4, [64, 128, 256, 512]),
    'cswin-b': ('CSWin', 'base', 0.6, [96, 192, 384, 768]),
    # HorNet (GF): seg drop paths of its UperNet configs, det of its Cascade 3x configs
    'hornet-t-gf': ('HorNet', 'tiny-gf', 0.4, [64, 128, 256, 512]),
    'hornet-s-gf': ('HorNet', 'small-gf', {'det': 0.6, 'seg': 0.3}, [96, 192, 384, 768]),
    'hornet-b-gf': ('HorNet', 'base-gf', {'det': 0.7, 'seg': 0.5}, [128, 256, 512, 1024]),
    # SG-Former: the release's ImageNet drop paths (no dense code released)
    'sgformer-s': ('SGFormer', 'small', 0.1, [64, 128, 256, 512]),
    'sgformer-m': ('SGFormer', 'medium', 0.2, [64, 128, 256, 512]),
    'sgformer-b': ('SGFormer', 'base', 0.4, [96, 192, 384, 768]),
    # ViT-Adapter (DeiT-S/B): the release's det and seg configs (same drop paths)
    'vit-adapter-s': ('ViTAdapter', 'small', 0.2, [384] * 4),
    'vit-adapter-b': ('ViTAdapter', 'base', 0.3, [768] * 4),
    # TransNeXt: the drop paths its release hard-codes in transnext_tiny / small / base
    'transnext-t': ('TransNeXt', 'tiny', 0.4, [72, 144, 288, 576]),
    'transnext-s': ('TransNeXt', 'small', 0.6, [72, 144, 288, 576]),
    'transnext-b': ('TransNeXt', 'base', 0.7, [96, 192, 384, 768]),
}
# SSM backbones: their toy runs use the torch scan (no compiled kernel on CI machines)
SSM_TYPES = {'VMamba', 'LocalVMamba', 'EfficientVMamba', 'PlainMamba'}
# the FCN auxiliary head's input: stage 3 (index 2), except PlainMamba's release, which taps
# its last block group (all four of its outputs are at stride 16)
AUX_INDEX = {'PlainMamba': 3}
# The one config per family that CI trains on toy data (short name -> task), the task where
# the family has the more of its own code (det: the adapter, the padding to windows at
# keep-ratio sizes; else the cheaper seg run); every other config trains under
# `pytest -m checklist`, the release checklist. CI trains two families elsewhere: MambaOut
# (tests/test_tools.py, det and seg; tests/test_reproduce.py) and VMamba V2 (the seg run
# through dist_train.sh below).
CI_TRAINS = {'vmamba-t': 'seg', 'localvmamba-t': 'seg', 'efficientvmamba-b': 'seg',
             'plainmamba-l1': 'seg', 'cswin-t': 'seg', 'hornet-t-gf': 'seg',
             'uniformer-s': 'seg', 'focal-t': 'seg', 'internimage-t': 'seg',
             'transnext-t': 'seg', 'sgformer-s': 'det', 'vit-adapter-s': 'det',
             'convnext-t': 'seg', 'swin-t': 'seg', 'pvtv2-b2': 'det', 'focalnet-t-lrf': 'det',
             'twins-svt-s': 'seg', 'convformer-s18': 'seg', 'caformer-s18': 'seg'}
TRAINED_ELSEWHERE = {'mambaout-t': 'det', 'vmamba-v2-t': 'seg'}  # dist_train.sh, below
# backbones above that sit in one table only: short name -> 'det' | 'seg' (default: both)
ONE_TASK = {}
C96, C128, C64 = [96, 192, 384, 768], [128, 256, 512, 1024], [64, 128, 320, 512]
# Table 2 / 3 rows served by timm (TimmBackbone): short name -> (family, timm model_name,
# {task: drop_path_rate} (the tasks the row has), out channels, out_norm_eps). Sources: each
# family's own det/seg configs (comments in the config files, results/NOTES.md).
TIMM = {
    'convnext-t': ('convnext', 'convnext_tiny', {'det': 0.4, 'seg': 0.4}, C96, 1e-6),
    'convnext-s': ('convnext', 'convnext_small', {'det': 0.6, 'seg': 0.3}, C96, 1e-6),
    'convnext-b': ('convnext', 'convnext_base', {'det': 0.7, 'seg': 0.4}, C128, 1e-6),
    'focalnet-t-lrf': ('focalnet', 'focalnet_tiny_lrf', {'det': 0.1}, C96, 1e-5),
    'focalnet-s-lrf': ('focalnet', 'focalnet_small_lrf', {'det': 0.2}, C96, 1e-5),
    'focalnet-b-lrf': ('focalnet', 'focalnet_base_lrf', {'det': 0.3}, C128, 1e-5),
    'swin-t': ('swin', 'swin_tiny_patch4_window7_224', {'det': 0.2, 'seg': 0.3}, C96, 1e-5),
    'swin-s': ('swin', 'swin_small_patch4_window7_224', {'det': 0.2, 'seg': 0.3}, C96, 1e-5),
    'swin-b': ('swin', 'swin_base_patch4_window7_224', {'det': 0.3, 'seg': 0.3}, C128, 1e-5),
    'pvtv2-b2': ('pvtv2', 'pvt_v2_b2', {'det': 0.1}, C64, None),
    'pvtv2-b3': ('pvtv2', 'pvt_v2_b3', {'det': 0.1}, C64, None),
    'pvtv2-b5': ('pvtv2', 'pvt_v2_b5', {'det': 0.1}, C64, None),
    'twins-svt-s': ('twins', 'twins_svt_small', {'seg': 0.2}, [64, 128, 256, 512], 1e-6),
    'twins-svt-b': ('twins', 'twins_svt_base', {'seg': 0.2}, C96, 1e-6),
    'twins-svt-l': ('twins', 'twins_svt_large', {'seg': 0.2}, C128, 1e-6),
    'convformer-s18': ('convformer', 'convformer_s18', {'seg': 0.3}, C64, 1e-6),
    'convformer-s36': ('convformer', 'convformer_s36', {'seg': 0.3}, C64, 1e-6),
    'convformer-m36': ('convformer', 'convformer_m36', {'seg': 0.6}, [96, 192, 384, 576], 1e-6),
    'caformer-s18': ('caformer', 'caformer_s18', {'seg': 0.3}, C64, 1e-6),
    'caformer-s36': ('caformer', 'caformer_s36', {'seg': 0.3}, C64, 1e-6),
    'caformer-m36': ('caformer', 'caformer_m36', {'seg': 0.6}, [96, 192, 384, 576], 1e-6),
}
# create_model arguments beyond the common ones, per family (FocalNet's det configs widen
# the focal windows and zero-pad the ImageNet kernels)
TIMM_EXTRA = {'focalnet': dict(focal_windows=[9, 9, 9, 9], pad_pretrained_kernels=True)}
# (task, family) -> (lr, weight decay) where the row's own recipe differs from the base
OPTIM = {('det', 'pvtv2'): (2e-4, 1e-4), ('seg', 'convnext'): (1e-4, 0.05),
         ('seg', 'swin'): (6e-5, 0.01), ('seg', 'twins'): (6e-5, 0.01),
         ('seg', 'InternImage'): (6e-5, 0.05),  # non-timm rows: keyed by backbone type
         ('seg', 'HorNet'): (1e-4, 0.05), ('seg', 'TransNeXt'): (6e-5, 0.05),
         ('det', 'SGFormer'): (2e-4, 1e-4)}  # PVT's Mask R-CNN 1x (no release of its own)
# det backbones whose release decays biases and the 'pos_embed' convs of its blocks
DET_DECAYS_BIAS_AND_POS_CONV = {'UniFormer'}
# det backbones whose release decays biases (no pos_embed convs; tests/test_transnext.py)
DET_DECAYS_BIAS = {'TransNeXt'}
# configs whose release trains fp16 with a static loss scale (the others: dynamic)
STATIC_LOSS_SCALE = {'mask-rcnn_transnext-b_fpn_8xb2-amp-1x_coco.py': 512.0}
# seg backbones whose release trains with its own stage-wise lr decay: type -> constructor
# (no weight decay on 1-D parameters, norms included; checked in tests/test_hornet.py)
SEG_LR_DECAY = {'HorNet': 'HorNetLayerDecayOptimWrapperConstructor',
                'ViTAdapter': 'ViTLayerDecayOptimWrapperConstructor'}  # tests/test_vit_adapter.py
DET_RECIPE = dict(lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05, epochs=12, warmup_iters=1000,
                  warmup_start=0.001, milestones=[8, 11], gamma=0.1, per_gpu_batch=2,
                  gpus=8, scale=(1333, 800))
SEG_RECIPE = dict(lr={'MambaOut': 1e-4, 'VMamba': 6e-5, 'TimmBackbone': 1e-4,
                      'LocalVMamba': 6e-5, 'EfficientVMamba': 6e-5, 'PlainMamba': 6e-5,
                      'UniFormer': 6e-5, 'FocalTransformer': 6e-5, 'CSWin': 6e-5,
                      'InternImage': 6e-5, 'HorNet': 1e-4, 'ViTAdapter': 6e-5,
                      'SGFormer': 6e-5, 'TransNeXt': 6e-5},
                  weight_decay=0.01, warmup_iters=1500, iters=160000, per_gpu_batch=2, gpus=8,
                  val_interval=16000, crop=(512, 512),
                  tta_ratios=[0.5, 0.75, 1.0, 1.25, 1.5, 1.75])


def _short_name(path):
    stem = osp.basename(path)
    return stem.split('_')[1]


def _task(path):
    return 'det' if osp.basename(path).startswith('mask-rcnn') else 'seg'


def _backbone(path):
    """(type, arch, drop_path_rate, out channels) of the config's backbone."""
    name = _short_name(path)
    if name in TIMM:
        return ('TimmBackbone', None, TIMM[name][2][_task(path)], TIMM[name][3])
    assert name in BACKBONES, f'{path}: backbone {name!r} has no expected values in this test'
    kind, arch, dpr, channels = BACKBONES[name]
    return kind, arch, dpr[_task(path)] if isinstance(dpr, dict) else dpr, channels


def _optim(path, lr, weight_decay):
    """(lr, weight decay) expected for ``path``: the base's unless its row's recipe differs."""
    name = _short_name(path)
    family = TIMM[name][0] if name in TIMM else BACKBONES[name][0]
    return OPTIM.get((_task(path), family), (lr, weight_decay))


def _pipeline_scale(pipeline, kind):
    return [tuple(s['scale']) for s in pipeline if s['type'] == kind]


def test_every_backbone_has_its_tasks():
    """MambaOut, VMamba and the timm example in both tables (unless in ONE_TASK); each timm
    row in the tables the paper lists it in."""
    det, seg = {_short_name(p) for p in DET}, {_short_name(p) for p in SEG}
    assert det - set(TIMM) == {n for n in BACKBONES if ONE_TASK.get(n, 'det') == 'det'}
    assert seg - set(TIMM) == {n for n in BACKBONES if ONE_TASK.get(n, 'seg') == 'seg'}
    assert {n for n in det if n in TIMM} == {n for n, v in TIMM.items() if 'det' in v[2]}
    assert {n for n in seg if n in TIMM} == {n for n, v in TIMM.items() if 'seg' in v[2]}


def test_one_member_of_each_timm_family_trains():
    trained = [TIMM[n][0] for n in CI_TRAINS if n in TIMM]
    assert sorted(trained) == sorted({v[0] for v in TIMM.values()})


def _check_timm_backbone(cfg, path):
    family, model_name, _, _, eps = TIMM[_short_name(path)]
    backbone = cfg.model.backbone
    assert backbone.model_name == model_name and backbone.get('out_norm_eps') == eps
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=cfg.pretrained)
    assert cfg.pretrained.startswith(f'checkpoints/timm/{model_name}.')
    extra = {k: list(v) if isinstance(v, tuple) else v
             for k, v in ((k, backbone.get(k)) for k in TIMM_EXTRA.get(family, {}))}
    assert extra == TIMM_EXTRA.get(family, {})


def _check_amp(cfg, path):
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == STATIC_LOSS_SCALE.get(osp.basename(path), 'dynamic')
    assert 'backbones' in cfg.custom_imports.imports


@pytest.mark.parametrize('path', DET, ids=osp.basename)
def test_det_recipe(path):
    cfg = Config.fromfile(path)
    kind, arch, dpr, channels = _backbone(path)
    r = DET_RECIPE
    assert cfg.default_scope == 'mmdet' and cfg.model.type == 'MaskRCNN'
    _check_amp(cfg, path)
    opt = cfg.optim_wrapper.optimizer
    lr, weight_decay = _optim(path, r['lr'], r['weight_decay'])
    assert (opt.type, opt.lr, tuple(opt.betas), opt.weight_decay) == \
        ('AdamW', lr, r['betas'], weight_decay)
    pw = cfg.optim_wrapper.paramwise_cfg
    # UniFormer's det release decays biases and its blocks' pos_embed (depthwise convs)
    decays = kind in DET_DECAYS_BIAS_AND_POS_CONV
    assert pw.norm_decay_mult == 0 and \
        pw.bias_decay_mult == (1.0 if decays or kind in DET_DECAYS_BIAS else 0)
    assert all(pw.custom_keys[k].decay_mult == 0 for k in ('pos_embed', 'absolute_pos_embed'))
    assert ('.pos_embed.' in pw.custom_keys) == decays
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop' and cfg.train_cfg.max_epochs == r['epochs']
    warmup, step = cfg.param_scheduler
    assert (warmup.type, warmup.by_epoch, warmup.end, warmup.start_factor) == \
        ('LinearLR', False, r['warmup_iters'], r['warmup_start'])
    assert (step.type, list(step.milestones), step.gamma) == \
        ('MultiStepLR', r['milestones'], r['gamma'])
    assert cfg.train_dataloader.batch_size * r['gpus'] == 16
    assert cfg.auto_scale_lr.base_batch_size == 16
    assert _pipeline_scale(cfg.train_dataloader.dataset.pipeline, 'Resize') == [r['scale']]
    assert _pipeline_scale(cfg.test_dataloader.dataset.pipeline, 'Resize') == [r['scale']]
    assert set(cfg.val_evaluator.metric) == {'bbox', 'segm'}
    assert cfg.model.backbone.type == kind and cfg.model.backbone.get('arch') == arch
    assert cfg.model.backbone.drop_path_rate == dpr
    assert list(cfg.model.neck.in_channels) == channels
    if _short_name(path) in TIMM:
        _check_timm_backbone(cfg, path)


@pytest.mark.parametrize('path', SEG, ids=osp.basename)
def test_seg_recipe(path):
    cfg = Config.fromfile(path)
    kind, arch, dpr, channels = _backbone(path)
    r = SEG_RECIPE
    assert cfg.default_scope == 'mmseg' and cfg.model.type == 'EncoderDecoder'
    _check_amp(cfg, path)
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == \
        ('AdamW', *_optim(path, r['lr'][kind], r['weight_decay']))
    if kind in SEG_LR_DECAY:
        assert cfg.optim_wrapper.constructor == SEG_LR_DECAY[kind]
    else:
        assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0
    assert cfg.train_cfg.type == 'IterBasedTrainLoop' and cfg.train_cfg.max_iters == r['iters']
    assert cfg.train_cfg.val_interval == r['val_interval']
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.end, warmup.by_epoch) == ('LinearLR', r['warmup_iters'], False)
    assert (poly.type, poly.power, poly.begin, poly.end) == \
        ('PolyLR', 1.0, r['warmup_iters'], r['iters'])
    assert cfg.train_dataloader.batch_size * r['gpus'] == 16
    assert tuple(cfg.model.data_preprocessor.size) == r['crop']
    head, aux = cfg.model.decode_head, cfg.model.auxiliary_head
    assert head.type == 'UPerHead' and head.channels == 512 and head.num_classes == 150
    assert list(head.in_channels) == channels
    aux_index = AUX_INDEX.get(kind, 2)
    assert aux.type == 'FCNHead' and aux.in_index == aux_index
    assert aux.in_channels == channels[aux_index]
    assert aux.loss_decode.loss_weight == 0.4
    assert head.norm_cfg.type == aux.norm_cfg.type == 'SyncBN'
    assert cfg.model.backbone.type == kind and cfg.model.backbone.get('arch') == arch
    assert cfg.model.backbone.drop_path_rate == dpr
    ratios = [t['scale_factor'] for t in cfg.tta_pipeline[1].transforms[0]]
    assert ratios == r['tta_ratios'] and cfg.tta_model.type == 'SegTTAModel'
    if _short_name(path) in TIMM:
        _check_timm_backbone(cfg, path)


@pytest.mark.parametrize('path', [p for p in DET + SEG if 'localvmamba' in osp.basename(p)],
                         ids=osp.basename)
def test_localvmamba_scan_order(path):
    """The table rows compute what their published numbers were made with (the release's
    vertical-scan reverse); the corrected scan is the named variant."""
    variant = _short_name(path).endswith('-vfix')
    assert (osp.basename(osp.dirname(path)) == 'variants') == variant
    assert Config.fromfile(path).model.backbone.release_v_reverse is not variant


@pytest.mark.parametrize('path', DET + SEG, ids=osp.basename)
def test_config_builds(path):
    import mmdet.utils
    import mmseg.utils
    from mmengine.registry import MODELS
    cfg = Config.fromfile(path)
    (mmdet.utils if cfg.default_scope == 'mmdet' else mmseg.utils).register_all_modules(False)
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == _backbone(path)[0]


# ---- training on toy data through tools/train.py -----------------------------------------
def _train_opts(path, toy_data):
    kind = _backbone(path)[0]
    is_det = osp.basename(path).startswith('mask-rcnn')
    root = toy_data['coco'] if is_det else toy_data['ade']
    # 8 toy images, batch 4: two iterations, then a validation pass.
    opts = toy_options(path, root, scale=128, batch_size=4) + [
        'default_hooks.logger.interval=1', 'randomness.seed=0']
    if Config.fromfile(path).model.backbone.get('init_cfg') is not None:
        opts.append('model.backbone.init_cfg=None')  # no ImageNet weights on CI machines
    if kind in SSM_TYPES:
        opts.append('model.backbone.scan_backend=torch')
    if kind == 'TransNeXt':  # position bias made for the toy scale, not 800 / 512 px inputs:
        opts.append('model.backbone.img_size=128')  # ~30 s less per CPU iteration
    opts += ['train_cfg.max_epochs=1'] if is_det else [
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2']
    return opts


def _trained_in_ci(path):
    return CI_TRAINS.get(_short_name(path)) == _task(path)


def test_ci_trains_one_member_of_each_family():
    """Every backbone type trains in CI, once per family, in a task it has."""
    configs = {(_short_name(p), _task(p)): p for p in DET + SEG}
    assert all(item in configs for item in {**CI_TRAINS, **TRAINED_ELSEWHERE}.items())
    trained = [_backbone(configs[item])[0] for item in CI_TRAINS.items() if item[0] not in TIMM]
    assert len(trained) == len(set(trained))  # one per family
    elsewhere = {_backbone(configs[item])[0] for item in TRAINED_ELSEWHERE.items()}
    assert {_backbone(p)[0] for p in configs.values()} == \
        set(trained) | elsewhere | {'TimmBackbone'}


@pytest.mark.slow
@pytest.mark.parametrize('path', [
    p if _trained_in_ci(p) else pytest.param(p, marks=pytest.mark.checklist)
    for p in DET + SEG], ids=osp.basename)
def test_trains_two_iterations_on_toy_data(path, toy_data, tmp_path):
    out = run_tool('tools/train.py', path, '--work-dir', tmp_path,
                   '--cfg-options', *_train_opts(path, toy_data)).stdout
    is_det = osp.basename(path).startswith('mask-rcnn')
    assert ('Epoch(train) [1][2/2]' if is_det else 'Iter(train) [2/2]') in out
    assert ('coco/bbox_mAP' if is_det else 'mIoU') in out  # evaluation ran


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize('name', [f'mask-rcnn_{n}_fpn_8xb2-amp-1x_coco.py' if task == 'det' else
                                  f'upernet_{n}_8xb2-amp-160k_ade20k-512x512.py'
                                  for n, task in TRAINED_ELSEWHERE.items()])
def test_dist_train_two_cpu_processes(name, toy_data, tmp_path):
    path = next(p for p in DET + SEG if osp.basename(p) == name)
    opts = [o.replace('batch_size=4', 'batch_size=2') for o in _train_opts(path, toy_data)]
    out = run_tool('tools/dist_train.sh', path, 2, '--work-dir', tmp_path, '--cfg-options', *opts,
                   env={'PORT': _free_port(), 'OMP_NUM_THREADS': '1'}).stdout
    assert 'gloo backend' in out and 'SyncBN layers become BN' in out
    assert 'world_size: 2' in out or 'GPU number: 2' in out or "'world_size': 2" in out
    is_det = name.startswith('mask-rcnn')
    assert osp.isfile(osp.join(tmp_path, 'epoch_1.pth' if is_det else 'iter_2.pth'))
