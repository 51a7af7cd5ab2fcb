# Mask R-CNN 1x, timm pvt_v2_b5: the paper's Table 2 row PVTv2-B5.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights of the timm model (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/timm/pvt_v2_b5.in1k.safetensors'
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='pvt_v2_b5',
        drop_path_rate=0.1,  # PVTv2's pvt_v2_b5 detection backbone: 0.1
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))

# PVTv2 release, Mask R-CNN 1x: AdamW lr 2e-4, weight decay 1e-4.
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=1e-4))
