# UperNet 160k, timm twins_svt_small: the paper's Table 3 row Twins-S.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights of the timm model (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/timm/twins_svt_small.in1k.safetensors'
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='twins_svt_small',
        drop_path_rate=0.2,  # Twins' and mmseg's SVT UperNet 160k code: 0.2
        out_norm_eps=1e-6,  # Twins' dense SVT (extra_norm): LN (eps 1e-6) on each output
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))

# Twins release (and mmseg), UperNet 160k: AdamW lr 6e-5, weight decay 0.01.
optim_wrapper = dict(optimizer=dict(lr=6e-5))
