# UperNet 160k, InternImage-B: the paper's Table 3 row InternImage-B. InternImage-T's config (its
# _base_: recipe, test pipeline, TTA) with the InternImage-B backbone.
_base_ = './upernet_internimage-t_8xb2-amp-160k_ade20k-512x512.py'

# The release's ImageNet-1k weights (README: "Pretrained weights"), from
#   https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_b_1k_224.pth
# Source of every value below and of those inherited: OpenGVLab/InternImage @ 31c962d,
# segmentation/configs/ade20k/upernet_internimage_b_512_160k_ade20k.py (l.10-66).
pretrained = 'checkpoints/internimage/internimage_b_1k_224.pth'
model = dict(
    backbone=dict(
        arch='base',  # channels 112, depths [4, 4, 21, 4], groups [7, 14, 28, 56], post_norm True
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[112, 224, 448, 896]),
    auxiliary_head=dict(in_channels=448))
