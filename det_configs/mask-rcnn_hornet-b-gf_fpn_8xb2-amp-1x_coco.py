# Mask R-CNN 1x, HorNet-B (GF). The HorNet release has no Mask R-CNN 1x config (only
# Cascade Mask R-CNN 3x, object_detection/configs/hornet/cascade_mask_rcnn_hornet_base_gf_
# 3x_coco_in1k.py): this is the suite's Mask R-CNN 1x recipe, with the backbone as that
# config builds it (ImageNet filter sizes 14x8 / 7x4, the arch's, and its drop path).
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights of hornet_base_gf (HorNet README, ImageNet-1K table); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/hornet/hornet_base_gf.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='HorNet',
        arch='base-gf',
        drop_path_rate=0.7,  # the release's Cascade Mask R-CNN 3x config
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
