# Mask R-CNN 1x, MambaOut femto: not in the paper's Table 2.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/mambaout/mambaout_femto.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='MambaOut',
        arch='femto',
        # not stated by the MambaOut authors (femto is not in Tables 2/3); 0.1 as for other ~7M
        # backbones
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[48, 96, 192, 288]))
