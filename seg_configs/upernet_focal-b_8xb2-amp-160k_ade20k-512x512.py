# UperNet 160k, Focal Transformer base (useconv): the paper's Table 3 row Focal-B. Focal-T's config
# (its _base_: Swin's UperNet recipe, no segmentation code being released) with the Focal-B
# backbone.
_base_ = './upernet_focal-t_8xb2-amp-160k_ade20k-512x512.py'

# ImageNet weights of the release (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/focal/focal-base-useconv-is224-ws7.pth'
model = dict(
    backbone=dict(
        arch='base-useconv',  # the variant whose counts Table 3 publishes (results/NOTES.md)
        # Swin's UperNet value, 0.3 for every size as Focal-T's config says (here
        # configs/swin/upernet_swin_base_patch4_window7_512x512_160k_ade20k.py l.12)
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
