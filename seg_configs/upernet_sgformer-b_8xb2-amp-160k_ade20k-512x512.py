# UperNet 160k, SG-Former-B: the paper's Table 3 row SG-Former-B. SG-Former-S's config (its _base_:
# no released segmentation recipe, Swin's UperNet one) with the SG-Former-B backbone.
_base_ = './upernet_sgformer-s_8xb2-amp-160k_ade20k-512x512.py'

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
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
