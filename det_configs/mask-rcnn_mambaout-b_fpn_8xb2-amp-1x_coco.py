# Mask R-CNN 1x, MambaOut base: the paper's Table 2 row MambaOut-Base.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/mambaout/mambaout_base.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='MambaOut',
        arch='base',
        # the MambaOut authors' segmentation setting (base 0.6), used for detection too
        drop_path_rate=0.6,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 768]))
