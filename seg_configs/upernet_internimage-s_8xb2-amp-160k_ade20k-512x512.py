# UperNet 160k, InternImage-S: the paper's Table 3 row InternImage-S. InternImage-T's config (its
# _base_: recipe, test pipeline, TTA) with the InternImage-S backbone.
_base_ = './upernet_internimage-t_8xb2-amp-160k_ade20k-512x512.py'

# The release's ImageNet-1k weights (README: "Pretrained weights"), from
#   https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_s_1k_224.pth
# Source of every value below and of those inherited: OpenGVLab/InternImage @ 31c962d,
# segmentation/configs/ade20k/upernet_internimage_s_512_160k_ade20k.py (l.10-66).
pretrained = 'checkpoints/internimage/internimage_s_1k_224.pth'
model = dict(
    backbone=dict(
        arch='small',  # channels 80, depths [4, 4, 21, 4], groups [5, 10, 20, 40], post_norm True
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[80, 160, 320, 640]),
    auxiliary_head=dict(in_channels=320))
