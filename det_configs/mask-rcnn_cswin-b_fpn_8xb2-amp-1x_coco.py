# Mask R-CNN 1x, CSWin Transformer base: the paper's Table 2 row CSWin-B. CSWin-T's config (its
# _base_: no released CSWin detection recipe, the suite's Mask R-CNN 1x) with the CSWin-B backbone.
_base_ = './mask-rcnn_cswin-t_fpn_8xb2-amp-1x_coco.py'

# ImageNet weights of the release (microsoft/CSWin-Transformer, README "Main Results on
# ImageNet": releases/download/v0.1.0/cswin_base_224.pth); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/cswin/cswin_base_224.pth'
model = dict(
    backbone=dict(
        arch='base',
        # no released detection value (see CSWin-T's config): the release's UperNet one
        # (segmentation/configs/cswin/upernet_cswin_base.py, l.12), the same backbone
        drop_path_rate=0.6,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
