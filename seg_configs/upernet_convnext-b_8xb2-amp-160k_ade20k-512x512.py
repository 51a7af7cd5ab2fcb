# UperNet 160k, timm convnext_base: the paper's Table 3 row ConvNeXt-B. ConvNeXt-T's config (its
# _base_: output LNs, the release's UperNet 160k recipe) with convnext_base.
_base_ = './upernet_convnext-t_8xb2-amp-160k_ade20k-512x512.py'

# ImageNet weights of the timm model (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/timm/convnext_base.fb_in1k.safetensors'
model = dict(
    backbone=dict(
        model_name='convnext_base',
        drop_path_rate=0.4,  # ConvNeXt's UperNet 160k config: 0.4
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
