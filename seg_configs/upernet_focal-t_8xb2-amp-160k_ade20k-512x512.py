# UperNet 160k, Focal Transformer tiny (useconv): the paper's Table 3 row Focal-T.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights of the release (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/focal/focal-tiny-useconv-is224-ws7.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='FocalTransformer',
        arch='tiny-useconv',  # the variant whose counts Table 3 publishes (results/NOTES.md)
        # No segmentation code was released ("we follow Swin-Transformer-Semantic-
        # Segmentation"); Focal's ImageNet drop paths equal Swin's (0.2 / 0.3 / 0.5), so
        # Swin's UperNet value for every size (Swin-Transformer-Semantic-Segmentation @ 87e6f90,
        # configs/swin/upernet_swin_tiny_patch4_window7_512x512_160k_ade20k.py l.12): 0.3
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

# Swin's UperNet recipe (same file, l.26): AdamW lr 6e-5, weight decay 0.01; whole-image
# testing (the base's; configs/_base_/models/upernet_swin.py l.49), as Swin.
optim_wrapper = dict(optimizer=dict(lr=6e-5))
