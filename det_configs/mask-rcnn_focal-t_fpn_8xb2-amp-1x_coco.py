# Mask R-CNN 1x, Focal Transformer tiny (useconv): no row in the paper's Table 2 (Focal-T is
# in Table 3 only); the same backbone as upernet_focal-t_8xb2-amp-160k_ade20k-512x512.py.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights of the release (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/focal/focal-tiny-useconv-is224-ws7.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='FocalTransformer',
        arch='tiny-useconv',  # the variant whose counts Table 3 publishes (results/NOTES.md)
        # No detection code was released ("we follow Swin-Transformer-Object-Detection");
        # Focal's ImageNet drop paths equal Swin's (0.2 / 0.3 / 0.5), so Swin's det values:
        # Swin's Mask R-CNN 1x config for Swin-T: 0.2
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
# Recipe: the base's (AdamW lr 1e-4, weight decay 0.05, 12 epochs [8, 11]), Swin's Mask R-CNN 1x.
