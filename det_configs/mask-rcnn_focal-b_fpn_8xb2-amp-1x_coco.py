# Mask R-CNN 1x, Focal Transformer base (useconv): no row in the paper's Table 2 (Focal-B is in
# Table 3 only); the same backbone as upernet_focal-b_8xb2-amp-160k_ade20k-512x512.py. Focal-T's
# config (its _base_: Swin's Mask R-CNN 1x recipe) with the Focal-B backbone.
_base_ = './mask-rcnn_focal-t_fpn_8xb2-amp-1x_coco.py'

# ImageNet weights of the release (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/focal/focal-base-useconv-is224-ws7.pth'
model = dict(
    backbone=dict(
        arch='base-useconv',  # the variant whose counts Table 3 publishes (results/NOTES.md)
        # Swin's det value for this size (why: Focal-T's config), from
        # Swin's Cascade Mask R-CNN 3x config for Swin-B (no Swin-B Mask R-CNN 1x exists)
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
