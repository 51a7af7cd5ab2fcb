# Mask R-CNN 1x, VMamba v0-base: the paper's Table 2 row VMamba-B.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/vmamba/vssmbase_dp05_ckpt_epoch_260.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='VMamba',
        arch='v0-base',
        drop_path_rate=0.6,  # VMamba release, base: 0.6
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
