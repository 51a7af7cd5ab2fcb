# Mask R-CNN 1x, PlainMamba-L1: the paper's Table 2 row PlainMamba-L1. As released
# (plain_mamba_det_configs/maskrcnn/l1_maskrcnn_1x.py): the PlainMamba-Adapter (ViT-Adapter,
# mmcv multi-scale deformable attention) makes strides 4-32 from the stride-16 network,
# then an FPN with SyncBN and a Shared4Conv1FC bbox head with SyncBN.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights (HF ChenhongyiYang/PlainMamba l1.pth, mmcls format: 'backbone.' is
# stripped, head / EMA / ln1 keys dropped); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/plainmamba/l1.pth'
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        _delete_=True,
        type='PlainMamba',
        arch='l1',
        drop_path_rate=0.1,  # PlainMamba release, l1_maskrcnn_1x.py: 0.1
        # the release's PlainMambaAdapter: a ViT-Adapter (strides 4-32, SyncBN outputs)
        adapter=dict(conv_inplane=64, deform_num_heads=6, n_points=4, cffn_ratio=0.25,
                     deform_ratio=1.0),
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 192, 192, 192], norm_cfg=norm_cfg),  # release: SyncBN FPN
    roi_head=dict(bbox_head=dict(  # release: Shared4Conv1FCBBoxHead with SyncBN
        type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg)))

# PlainMamba release: AdamW lr 1e-4, weight decay 0.05 (the base's), also no decay for
# level_embed, A_log, D and direction_Bs.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'level_embed': dict(decay_mult=0.0),
    '.A_log': dict(decay_mult=0.0),
    '.D': dict(decay_mult=0.0),
    '.direction_Bs': dict(decay_mult=0.0)}))
