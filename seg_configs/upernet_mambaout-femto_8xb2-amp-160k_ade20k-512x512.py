# UperNet 160k, MambaOut femto: not in the paper's Table 3.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/mambaout/mambaout_femto.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='MambaOut',
        arch='femto',
        # not stated by the MambaOut authors (femto is not in Tables 2/3); 0.1 as for other ~7M
        # backbones
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[48, 96, 192, 288]),
    auxiliary_head=dict(in_channels=192))
