# UperNet 160k, UniFormer-B: the paper's Table 3 row UniFormer-B, i.e. the release's
# UniFormer-B_h32 (Sense-X/UniFormer@52a0415 semantic_segmentation/README.md l.75: 49.5 / 50.7,
# 80M, 1106G). UniFormer-S's config (its _base_: trained with global stage-3 attention,
# exp/upernet_global_base/config.py l.16-17, tested with h32 windows, test_config_h32.py l.14-16)
# with the UniFormer-B backbone.
_base_ = './upernet_uniformer-s_8xb2-amp-160k_ade20k-512x512.py'

# ImageNet weights: the release's uniformer_base_in1k.pth (image_classification/README.md,
# Google Drive; exp/upernet_global_base/run.sh passes it as pretrained_path); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/uniformer/uniformer_base_in1k.pth'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.4,  # config.py l.13
        init_cfg=dict(checkpoint=pretrained)))

# Release (config.py l.29-38): UniFormer-S's recipe. (Its use_checkpoint on the
# first 2 stage-3 blocks only saves memory: with_cp gives the same outputs and gradients, so
# it is left to the user.)
