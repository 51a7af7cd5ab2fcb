# Mask R-CNN 1x, MambaOut small: the paper's Table 2 row MambaOut-Small.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/mambaout/mambaout_small.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='MambaOut',
        arch='small',
        # the MambaOut authors' segmentation setting (small 0.3 or 0.4; 0.3 taken), used for
        # detection too
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 576]))
