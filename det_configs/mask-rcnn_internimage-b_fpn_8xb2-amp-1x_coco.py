# Mask R-CNN 1x, InternImage-B: not a row of the paper's Table 2 (InternImage is in Table 3 only);
# the release's own Mask R-CNN 1x recipe: InternImage-T's config (its _base_) with the
# InternImage-B backbone.
_base_ = './mask-rcnn_internimage-t_fpn_8xb2-amp-1x_coco.py'

# The release's ImageNet-1k weights (README: "Pretrained weights"), from
#   https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_b_1k_224.pth
# Source of every value below and of those inherited: OpenGVLab/InternImage @ 31c962d,
# detection/configs/coco/mask_rcnn_internimage_b_fpn_1x_coco.py (l.12-43).
pretrained = 'checkpoints/internimage/internimage_b_1k_224.pth'
model = dict(
    backbone=dict(
        arch='base',  # channels 112, depths [4, 4, 21, 4], groups [7, 14, 28, 56], post_norm True
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[112, 224, 448, 896]))
