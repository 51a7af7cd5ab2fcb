# Mask R-CNN 1x, VMamba v2-base: the paper's Table 2 row VMambaV9-B.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/vmamba/vssm_base_0229_ckpt_epoch_237.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='VMamba',
        arch='v2-base',
        drop_path_rate=0.6,  # VMamba release, base: 0.6
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
