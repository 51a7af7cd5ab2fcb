# UperNet 160k, ViT-Adapter-B (not a row of the paper's Table 3; the release has it).
# Release: czczup/ViT-Adapter fd64a51, segmentation/configs/ade20k/
# upernet_deit_adapter_base_512_160k_ade20k.py (cited by line below); README (same
# folder) l.24-25: 48.8 / 49.7, 134M. ViT-Adapter-S's config (its _base_: segmentation
# ViTAdapter, slide test, recipe and test pipelines, the same in both sizes' release files)
# with DeiT-B.
_base_ = './upernet_vit-adapter-s_8xb2-amp-160k_ade20k-512x512.py'

# ImageNet weights: DeiT's own file (l.7); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/deit/deit_base_patch16_224-b5f2ef4d.pth'
model = dict(
    backbone=dict(
        arch='base',  # l.12-24: DeiT-B (dim 768, depth 12, 12 heads);
        # adapter: 12 deformable heads, deform_ratio 0.5
        drop_path_rate=0.3,  # l.18
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768))
