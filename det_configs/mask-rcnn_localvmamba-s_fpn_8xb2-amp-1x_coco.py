# Mask R-CNN 1x, LocalVMamba-S: the paper's Table 2 row LocalVMamba-S.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet weights: the release's local_vssm_small.ckpt (README: "Pretrained weights");
# override with --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/localvmamba/local_vssm_small.ckpt'
model = dict(
    backbone=dict(
        _delete_=True,
        type='LocalVMamba',
        arch='small',
        # LocalMamba det config: 0.2, inherited silently from mmdet's Swin-T base config
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        # The release's vertical-scan reverse, which its published numbers were made
        # with; it scrambles non-square maps (results/NOTES.md). The corrected scan:
        # variants/mask-rcnn_localvmamba-s-vfix_fpn_8xb2-amp-1x_coco.py
        release_v_reverse=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
# LocalMamba release: AdamW lr 1e-4, weight decay 0.05, 12 epochs [8, 11] (the base's).
