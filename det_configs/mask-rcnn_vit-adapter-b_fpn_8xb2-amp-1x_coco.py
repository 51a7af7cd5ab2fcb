# Mask R-CNN 1x, ViT-Adapter-B: the paper's Table 2 row ViT-Adapter-B.
# Release: czczup/ViT-Adapter fd64a51, detection/configs/mask_rcnn/
# mask_rcnn_deit_adapter_base_fpn_1x_coco.py (cited by line below); README (same folder)
# l.22-23: 47.0 / 41.8, 120M, no checkpoint released. ViT-Adapter-S's config (its _base_:
# windowed blocks, recipe and decay rules, the same in both sizes' release files) with DeiT-B.
_base_ = './mask-rcnn_vit-adapter-s_fpn_8xb2-amp-1x_coco.py'

# ImageNet weights: DeiT's own file (l.8; loaded as for ViT-Adapter-S); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/deit/deit_base_patch16_224-b5f2ef4d.pth'
model = dict(
    backbone=dict(
        arch='base',  # l.13-25: DeiT-B (dim 768, depth 12, 12 heads);
        # adapter: 12 deformable heads, deform_ratio 0.5
        drop_path_rate=0.3,  # l.19
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[768, 768, 768, 768]))
