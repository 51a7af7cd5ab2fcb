# Mask R-CNN 1x, VMamba v0-tiny: the paper's Table 2 row VMamba-T.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/vmamba/vssmtiny_dp01_ckpt_epoch_292.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='VMamba',
        arch='v0-tiny',
        drop_path_rate=0.2,  # VMamba release, tiny: 0.2
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
