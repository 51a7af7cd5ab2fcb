# Mask R-CNN 1x, PlainMamba-L2: the paper's Table 2 row PlainMamba-L2. As released
# (plain_mamba_det_configs/maskrcnn/l2_maskrcnn_1x.py): PlainMamba-L1's config (its _base_: the
# PlainMamba-Adapter, SyncBN FPN and Shared4Conv1FC bbox head, the release's recipe) with the L2
# backbone.
_base_ = './mask-rcnn_plainmamba-l1_fpn_8xb2-amp-1x_coco.py'

# ImageNet weights (HF ChenhongyiYang/PlainMamba l2.pth, mmcls format: 'backbone.' is
# stripped, head / EMA / ln1 keys dropped); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/plainmamba/l2.pth'
model = dict(
    backbone=dict(
        arch='l2',
        drop_path_rate=0.2,  # PlainMamba release, l2_maskrcnn_1x.py: 0.2
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[384, 384, 384, 384]))
