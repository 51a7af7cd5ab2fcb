# Mask R-CNN 1x, SG-Former-M: the paper's Table 2 row SG-Former-M.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights of the release (OliverRensu/SG-Former README l.73: a Google Drive folder;
# sgformer_m there), converted on load (EMA weights when present); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/sgformer/sgformer_m.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SGFormer',
        arch='medium',
        # No dense code or config was released: the release's ImageNet drop path for this
        # size (README l.53, train command of sgformer_m: --drop-path 0.2).
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))

# No released SG-Former detection recipe. Its author, for his Shunted Transformer: "We follow
# the code of PVT for detection and segmentation" (OliverRensu/Shunted-Transformer issue
# #17), so PVTv2's Mask R-CNN 1x (whai362/PVT detection/configs/
# mask_rcnn_pvt_v2_b2_fpn_1x_coco.py: AdamW lr 2e-4, weight decay 1e-4, mmdet's 1x schedule,
# 2 images x 8 GPUs), as the suite's PVTv2 rows; the rest is the suite's base (AMP, warm-up,
# no decay on norms, biases and the position table).
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=1e-4))
