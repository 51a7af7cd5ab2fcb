# Mask R-CNN 1x, timm convnext_base: the paper's Table 2 row ConvNeXt-B.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights of the timm model (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/timm/convnext_base.fb_in1k.safetensors'
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='convnext_base',
        drop_path_rate=0.7,  # ConvNeXt's only B det config (Cascade 3x): 0.7
        out_norm_eps=1e-6,  # ConvNeXt's det/seg backbone: LN (eps 1e-6) on each output
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
