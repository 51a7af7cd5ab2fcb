# UperNet 160k, SG-Former-M: the paper's Table 3 row SG-Former-M. SG-Former-S's config (its _base_:
# no released segmentation recipe, Swin's UperNet one) with the SG-Former-M backbone.
_base_ = './upernet_sgformer-s_8xb2-amp-160k_ade20k-512x512.py'

# ImageNet weights of the release (OliverRensu/SG-Former README l.73: a Google Drive folder;
# sgformer_m there), converted on load (EMA weights when present); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/sgformer/sgformer_m.pth'
model = dict(
    backbone=dict(
        arch='medium',
        # No dense code or config was released: the release's ImageNet drop path for this
        # size (README l.53, train command of sgformer_m: --drop-path 0.2).
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint=pretrained)))
