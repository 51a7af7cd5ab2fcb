# UperNet 160k, timm convnext_small: the paper's Table 3 row ConvNeXt-S.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights of the timm model (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/timm/convnext_small.fb_in1k.safetensors'
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='convnext_small',
        drop_path_rate=0.3,  # ConvNeXt's UperNet 160k config: 0.3
        out_norm_eps=1e-6,  # ConvNeXt's det/seg backbone: LN (eps 1e-6) on each output
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

# ConvNeXt release, UperNet 160k: AdamW lr 1e-4, weight decay 0.05 (its layer-wise lr
# decay 0.9 is not used: results/NOTES.md).
optim_wrapper = dict(optimizer=dict(weight_decay=0.05))
