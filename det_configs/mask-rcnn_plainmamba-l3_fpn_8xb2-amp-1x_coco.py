# Mask R-CNN 1x, PlainMamba-L3 (not a row of the paper's Table 2; the release has it). As released
# (plain_mamba_det_configs/maskrcnn/l3_maskrcnn_1x.py): PlainMamba-L1's config (its _base_: the
# PlainMamba-Adapter, SyncBN FPN and Shared4Conv1FC bbox head, the release's recipe) with the L3
# backbone.
_base_ = './mask-rcnn_plainmamba-l1_fpn_8xb2-amp-1x_coco.py'

# ImageNet weights (HF ChenhongyiYang/PlainMamba l3.pth, mmcls format: 'backbone.' is
# stripped, head / EMA / ln1 keys dropped); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/plainmamba/l3.pth'
model = dict(
    backbone=dict(
        arch='l3',
        drop_path_rate=0.3,  # PlainMamba release, l3_maskrcnn_1x.py: 0.3
        adapter=dict(deform_num_heads=8),  # the release's PlainMambaAdapter for L3
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[448, 448, 448, 448]))
