# Mask R-CNN 1x, ViT-Adapter-S: the paper's Table 2 row ViT-Adapter-S.
# Release: czczup/ViT-Adapter fd64a51, detection/configs/mask_rcnn/
# mask_rcnn_deit_adapter_small_fpn_1x_coco.py (cited by line below); README (same folder)
# l.22-23: 44.7 / 39.9, 48M, no checkpoint released.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights: DeiT's own file (l.8; dl.fbaipublicfiles.com/deit/, a {'model': ...}
# dict). Its class token, final norm and classifier are dropped; the adapter, the layer
# scales and the output norms start from their init. Override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/deit/deit_small_patch16_224-cd65a155.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='ViTAdapter',
        arch='small',  # l.13-25: DeiT-S (dim 384, depth 12, 6 heads);
        # adapter: 6 deformable heads, deform_ratio 1.0
        drop_path_rate=0.2,  # l.19
        window_size=14,  # l.26-29: 14x14 windows, blocks 2, 5, 8, 11 global (the default)
        vit_features='last',  # the detector adds the last ViT tokens to every level
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[384, 384, 384, 384]))

# l.39-47: AdamW lr 1e-4, weight decay 0.05, decay_mult 0 for names containing 'level_embed',
# 'pos_embed', 'norm' or 'bias' (the base's norm / bias / pos_embed rules, plus level_embed).
# Those are name rules: the spatial prior module's BatchNorm weights (spm.stem.1, ...) carry no
# 'norm' in their names and decay in the release, so they decay here too. The release's 500
# warm-up iterations and fp32 training (fp16 commented out, l.50) become the suite's 1000 and
# AMP, as for every row of Table 2 (the deformable attention computes in fp32 under AMP).
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'level_embed': dict(decay_mult=0.0),
    'spm.stem.1.weight': dict(decay_mult=1.0),
    'spm.stem.4.weight': dict(decay_mult=1.0),
    'spm.stem.7.weight': dict(decay_mult=1.0),
    'spm.conv2.1.weight': dict(decay_mult=1.0),
    'spm.conv3.1.weight': dict(decay_mult=1.0),
    'spm.conv4.1.weight': dict(decay_mult=1.0)}))
