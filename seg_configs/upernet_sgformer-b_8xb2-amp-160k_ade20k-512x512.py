# UperNet 160k, SG-Former-B: the paper's Table 3 row SG-Former-B.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights of the release (OliverRensu/SG-Former README l.73: a Google Drive folder;
# sgformer_b there), converted on load (EMA weights when present); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/sgformer/sgformer_b.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SGFormer',
        arch='base',
        # No dense code or config was released: the release's ImageNet drop path for this
        # size (README l.60, train command of sgformer_b: --drop-path 0.4).
        drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

# No released SG-Former segmentation recipe, and PVT (whose code its author says he follows
# for dense tasks, Shunted-Transformer issue #17) has no UperNet one (Semantic FPN 40k only):
# the UperNet 160k recipe of Swin, which the attention rows of Table 3 with released
# UperNet configs use (AdamW lr 6e-5, weight decay 0.01, 1500 warm-up iterations, poly, 8x2
# images, whole-image test): the base's but for lr, and no decay on the position table
# (as the suite's detection base).
optim_wrapper = dict(
    optimizer=dict(lr=6e-5),
    paramwise_cfg=dict(custom_keys={'pos_embed': dict(decay_mult=0.0)}))
