# Mask R-CNN 1x, UniFormer-B (not a row of the paper's Table 2): the release's UniFormer-B_h14 1x
# (Sense-X/UniFormer@52a0415 object_detection/README.md l.45: 47.4 / 43.1, 69M, 399G at 800x1280),
# exp/mask_rcnn_1x_hybrid_base/config.py. UniFormer-S's config (its _base_: stage-3 hybrid windows
# of 14 in training and testing, here l.15-17; the recipe, here l.21-26) with the UniFormer-B
# backbone.
_base_ = './mask-rcnn_uniformer-s_fpn_8xb2-amp-1x_coco.py'

# ImageNet weights: the release's uniformer_base_in1k.pth (image_classification/README.md,
# Google Drive; exp/mask_rcnn_1x_hybrid_base/run.sh passes it as pretrained_path); override
# with --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/uniformer/uniformer_base_in1k.pth'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,  # config.py l.13
        init_cfg=dict(checkpoint=pretrained)))
