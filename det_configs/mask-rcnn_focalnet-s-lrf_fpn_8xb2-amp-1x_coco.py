# Mask R-CNN 1x, timm focalnet_small_lrf: the paper's Table 2 row FocalNet-S.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights of the timm model (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/timm/focalnet_small_lrf.ms_in1k.safetensors'
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='focalnet_small_lrf',
        drop_path_rate=0.2,  # FocalNet's Mask R-CNN 1x LRF config: 0.2
        out_norm_eps=1e-5,  # FocalNet's det backbone: LN (eps 1e-5) on each output
        # the det config widens the focal kernels (3/5/7 in ImageNet training) to
        # 9/11/13 and zero-pads the pretrained ones, as its checkpoint loader does
        focal_windows=(9, 9, 9, 9),
        pad_pretrained_kernels=True,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
