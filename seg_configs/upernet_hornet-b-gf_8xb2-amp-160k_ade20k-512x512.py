# UperNet 160k, HorNet-B (GF): the paper's Table 3 row HorNet-B.
# Release: raoyongming/HorNet ac9e210, semantic_segmentation/configs/hornet/
# upernet_hornet_base_gf_512_160k_ade20k.py (cited by line below). HorNet-T's config (its
# _base_) with the HorNet-B backbone: this file's gf_sizes (l.23-24), slide test (l.37) and
# recipe (l.40-44) are HorNet-T's; its layer-decay depth is not.
_base_ = './upernet_hornet-t-gf_8xb2-amp-160k_ade20k-512x512.py'

# ImageNet weights of hornet_base_gf (HorNet README, ImageNet-1K table; filters 14x8 / 7x4,
# resized to gf_sizes at load as the release's loader does); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/hornet/hornet_base_gf.pth'
# Crop 512 as this release file (l.13), as HorNet-T's; the release's README lists 640x640
# for this row (results/NOTES.md)
model = dict(
    backbone=dict(
        arch='base-gf',
        drop_path_rate=0.5,  # l.26
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))

# l.45: the stage-wise lr decay runs over num_layers 12 (HorNet-T's: 6).
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
