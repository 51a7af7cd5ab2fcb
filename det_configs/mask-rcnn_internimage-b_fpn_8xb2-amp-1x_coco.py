# Mask R-CNN 1x, InternImage-B: not a row of the paper's Table 2 (InternImage is in Table 3
# only); the release's own Mask R-CNN 1x recipe, so the family has both tasks like the others.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# The release's ImageNet-1k weights (README: "Pretrained weights"), from
#   https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_b_1k_224.pth
# Source of every value below: OpenGVLab/InternImage @ 31c962d,
# detection/configs/coco/mask_rcnn_internimage_b_fpn_1x_coco.py (l.12-43).
pretrained = 'checkpoints/internimage/internimage_b_1k_224.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='InternImage',
        arch='base',  # channels 112, depths [4, 4, 21, 4], groups [7, 14, 28, 56], post_norm True
        layer_scale=1.0,
        offset_scale=1.0,
        drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[112, 224, 448, 896]))

# Release: AdamW lr 1e-4, weight decay 0.05 (the base's), none on 1-D parameters (norms,
# biases, the layer-scale gammas: CustomLayerDecayOptimizerConstructor, layer_decay_rate 1.0,
# i.e. no layer-wise decay), 2 images x 8 GPUs, mmdet schedule_1x (12 epochs, steps 8 / 11).
# It trains in fp32 (its fp16 line is commented out) with a 500-iteration warm-up; we keep
# the suite's AMP and 1000 (results/NOTES.md, InternImage).
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'gamma': dict(decay_mult=0.0)}))
