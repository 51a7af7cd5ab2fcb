# Mask R-CNN 1x, SG-Former-B: not a row of the paper's Table 2 (SG-Former-B is in Table 3 only);
# the family's detection recipe, so every size has both tasks. SG-Former-S's config (its _base_: no
# released detection recipe, PVTv2's Mask R-CNN 1x) with the SG-Former-B backbone.
_base_ = './mask-rcnn_sgformer-s_fpn_8xb2-amp-1x_coco.py'

# ImageNet weights of the release (OliverRensu/SG-Former README l.73: a Google Drive folder;
# sgformer_b there), converted on load (EMA weights when present); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/sgformer/sgformer_b.pth'
model = dict(
    backbone=dict(
        arch='base',
        # No dense code or config was released: the release's ImageNet drop path for this
        # size (README l.60, train command of sgformer_b: --drop-path 0.4).
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
