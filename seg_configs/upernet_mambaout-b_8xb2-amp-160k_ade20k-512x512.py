# UperNet 160k, MambaOut base: the paper's Table 3 row MambaOut-Base.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/mambaout/mambaout_base.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='MambaOut',
        arch='base',
        # the MambaOut authors' segmentation setting (base 0.6), used for detection too
        drop_path_rate=0.6,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 768]),
    auxiliary_head=dict(in_channels=512))
