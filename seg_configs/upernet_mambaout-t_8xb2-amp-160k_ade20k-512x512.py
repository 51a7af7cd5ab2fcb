# UperNet 160k, MambaOut tiny: the paper's Table 3 row MambaOut-Tiny.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/mambaout/mambaout_tiny.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='MambaOut',
        arch='tiny',
        # the MambaOut authors' segmentation setting (tiny 0.3), used for detection too
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 576]),
    auxiliary_head=dict(in_channels=384))
