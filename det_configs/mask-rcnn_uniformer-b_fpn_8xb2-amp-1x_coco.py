# Mask R-CNN 1x, UniFormer-B (not a row of the paper's Table 2): the release's UniFormer-B_h14
# 1x (Sense-X/UniFormer@52a0415 object_detection/README.md l.45: 47.4 / 43.1, 69M, 399G at
# 800x1280), exp/mask_rcnn_1x_hybrid_base/config.py: stage-3 hybrid windows of 14 (every 4th
# block global, the others in 14x14 zero-padded windows) in training and testing (l.15-17).
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights: the release's uniformer_base_in1k.pth (image_classification/README.md,
# Google Drive; exp/mask_rcnn_1x_hybrid_base/run.sh passes it as pretrained_path); override
# with --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/uniformer/uniformer_base_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='UniFormer',
        arch='base',
        attn_mode='h14',  # config.py l.15-17: hybrid=True, window_size=14
        drop_path_rate=0.3,  # config.py l.13
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))

# Release (config.py l.21-26): AdamW lr 1e-4, weight decay 0.05, steps at epochs 8 and 11 of
# 12, FP16: the base's. Its only decay exemptions are norms (and position tables UniFormer
# lacks), so biases and the blocks' pos_embed (depthwise 3x3 convs, not position tables,
# which the base exempts by name) are decayed as in the release.
optim_wrapper = dict(paramwise_cfg=dict(
    bias_decay_mult=1.0, custom_keys={'.pos_embed.': dict(decay_mult=1.0)}))
