# UperNet 160k, MambaOut small: the paper's Table 3 row MambaOut-Small.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/mambaout/mambaout_small.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='MambaOut',
        arch='small',
        # the MambaOut authors' segmentation setting (small 0.3 or 0.4; 0.3 taken), used for
        # detection too
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 576]),
    auxiliary_head=dict(in_channels=384))
