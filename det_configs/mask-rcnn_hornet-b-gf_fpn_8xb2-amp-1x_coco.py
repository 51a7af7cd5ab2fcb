# Mask R-CNN 1x, HorNet-B (GF). The HorNet release has no Mask R-CNN 1x config (only Cascade Mask
# R-CNN 3x, object_detection/configs/hornet/cascade_mask_rcnn_hornet_base_gf_3x_coco_in1k.py):
# HorNet-T's config (its _base_: the suite's Mask R-CNN 1x recipe) with the backbone as that config
# builds it (ImageNet filter sizes 14x8 / 7x4, the arch's, and its drop path).
_base_ = './mask-rcnn_hornet-t-gf_fpn_8xb2-amp-1x_coco.py'

# ImageNet weights of hornet_base_gf (HorNet README, ImageNet-1K table); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/hornet/hornet_base_gf.pth'
model = dict(
    backbone=dict(
        arch='base-gf',
        drop_path_rate=0.7,  # the release's Cascade Mask R-CNN 3x config
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
