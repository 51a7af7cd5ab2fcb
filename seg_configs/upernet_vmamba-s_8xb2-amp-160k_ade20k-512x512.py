# UperNet 160k, VMamba v0-small: the paper's Table 3 row VMamba-S.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/vmamba/vssmsmall_dp03_ckpt_epoch_238.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='VMamba',
        arch='v0-small',
        drop_path_rate=0.3,  # VMamba release, small: 0.3
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

# VMamba release: AdamW lr 6e-5, weight decay 0.01.
optim_wrapper = dict(optimizer=dict(lr=6e-5))
