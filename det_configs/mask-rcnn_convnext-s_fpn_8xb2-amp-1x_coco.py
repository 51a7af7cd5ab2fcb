# Mask R-CNN 1x, timm convnext_small: the paper's Table 2 row ConvNeXt-S.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights of the timm model (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/timm/convnext_small.fb_in1k.safetensors'
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='convnext_small',
        drop_path_rate=0.6,  # ConvNeXt's only S det config (Cascade 3x): 0.6
        out_norm_eps=1e-6,  # ConvNeXt's det/seg backbone: LN (eps 1e-6) on each output
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
