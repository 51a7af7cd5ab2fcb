# UperNet 160k, CSWin Transformer small: the paper's Table 3 row CSWin-S. CSWin-T's config (its
# _base_) with the CSWin-S backbone: the release's recipe (upernet_cswin_small.py l.25-34) is
# CSWin-T's.
_base_ = './upernet_cswin-t_8xb2-amp-160k_ade20k-512x512.py'

# ImageNet weights of the release (microsoft/CSWin-Transformer, README "Main Results on
# ImageNet": releases/download/v0.1.0/cswin_small_224.pth); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/cswin/cswin_small_224.pth'
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.4,  # segmentation/configs/cswin/upernet_cswin_small.py, l.12
        init_cfg=dict(checkpoint=pretrained)))
