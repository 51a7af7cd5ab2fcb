# UperNet 160k, EfficientVMamba base: the paper's Table 3 row EfficientVMamba-B.
# The release has no segmentation code or config. Chosen: the Swin / VMamba UperNet 160k
# recipe the release's detection code derives from (VMamba's UperNet-T: AdamW lr 6e-5,
# weight decay 0.01, drop path 0.2); 0.2 is also the release's detection value for B.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/efficientvmamba/efficient_vmamba_base.ckpt'
model = dict(
    backbone=dict(
        _delete_=True,
        type='EfficientVMamba',
        arch='base',
        drop_path_rate=0.2,  # no release value; VMamba-T's UperNet and the release's det: 0.2
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

# Swin / VMamba UperNet 160k: AdamW lr 6e-5, weight decay 0.01 (no release value).
optim_wrapper = dict(optimizer=dict(lr=6e-5))
