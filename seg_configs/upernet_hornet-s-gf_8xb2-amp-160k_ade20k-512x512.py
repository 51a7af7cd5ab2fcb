# UperNet 160k, HorNet-S (GF): the paper's Table 3 row HorNet-S.
# Release: raoyongming/HorNet ac9e210, semantic_segmentation/configs/hornet/
# upernet_hornet_small_gf_512_160k_ade20k.py (cited by line below). HorNet-T's config (its
# _base_) with the HorNet-S backbone: this file's gf_sizes (l.24-25), slide test (l.38) and
# recipe (l.41-45) are HorNet-T's; its layer-decay depth is not.
_base_ = './upernet_hornet-t-gf_8xb2-amp-160k_ade20k-512x512.py'

# ImageNet weights of hornet_small_gf (HorNet README, ImageNet-1K table; filters 14x8 / 7x4,
# resized to gf_sizes at load as the release's loader does); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/hornet/hornet_small_gf.pth'
model = dict(
    backbone=dict(
        arch='small-gf',
        drop_path_rate=0.3,  # l.27
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

# l.46: the stage-wise lr decay runs over num_layers 12 (HorNet-T's: 6).
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
