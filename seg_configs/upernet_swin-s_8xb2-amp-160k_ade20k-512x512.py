# UperNet 160k, timm swin_small_patch4_window7_224: the paper's Table 3 row Swin-S.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights of the timm model (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/timm/swin_small_patch4_window7_224.ms_in1k.safetensors'
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='swin_small_patch4_window7_224',
        drop_path_rate=0.3,  # Swin's and mmseg's UperNet 160k config: 0.3
        out_norm_eps=1e-5,  # Swin's (and mmdet/mmseg's) backbone: LN (eps 1e-5) on each output
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

# Swin release (and mmseg), UperNet 160k: AdamW lr 6e-5, weight decay 0.01.
optim_wrapper = dict(optimizer=dict(lr=6e-5))
