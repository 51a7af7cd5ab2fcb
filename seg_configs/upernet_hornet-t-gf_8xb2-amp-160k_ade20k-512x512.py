# UperNet 160k, HorNet-T (GF): the paper's Table 3 row HorNet-T.
# Release: raoyongming/HorNet ac9e210, semantic_segmentation/configs/hornet/
# upernet_hornet_tiny_gf_512_160k_ade20k.py (cited by line below).
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights of hornet_tiny_gf (HorNet README, ImageNet-1K table; filters 14x8 / 7x4,
# resized to gf_sizes at load as the release's loader does); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/hornet/hornet_tiny_gf.pth'
crop_size = (512, 512)
model = dict(
    backbone=dict(
        _delete_=True,
        type='HorNet',
        arch='tiny-gf',
        gf_sizes=(None, None, (24, 13), (12, 7)),  # l.24-25
        drop_path_rate=0.4,  # l.28
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))  # l.38

# l.41-45, 53: AdamW lr 1e-4, weight decay 0.05, stage-wise lr decay 0.9 over num_layers 6 (the
# release's LearningRateDecayOptimizerConstructorHorNet, ported on our key names), gradient
# clipping at max-norm 1. The release trains in fp32 (fp16 = None); the suite's AMP is kept:
# the global filter computes in fp32 (backbones/models/hornet.py).
optim_wrapper = dict(
    optimizer=dict(weight_decay=0.05),
    constructor='HorNetLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(_delete_=True, decay_rate=0.9, decay_type='stage_wise', num_layers=6),
    clip_grad=dict(max_norm=1.0, norm_type=2))
