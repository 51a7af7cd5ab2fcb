# Mask R-CNN 1x, timm swin_base_patch4_window7_224: the paper's Table 2 row Swin-B.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights of the timm model (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/timm/swin_base_patch4_window7_224.ms_in1k.safetensors'
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='swin_base_patch4_window7_224',
        drop_path_rate=0.3,  # Swin's only B det config (Cascade 3x): 0.3
        out_norm_eps=1e-5,  # Swin's (and mmdet/mmseg's) backbone: LN (eps 1e-5) on each output
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
