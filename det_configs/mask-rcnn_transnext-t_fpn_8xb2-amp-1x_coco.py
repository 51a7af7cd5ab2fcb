# Mask R-CNN 1x, TransNeXt-Tiny: the paper's Table 2 row TransNeXt-Tiny.
# Release: DaiShiResearch/TransNeXt c8a9974, detection/maskrcnn/configs/
# mask_rcnn_transnext_tiny_fpn_1x_coco.py (cited by line below) and transnext_native.py.
_base_ = './_base_/mask-rcnn_fpn_amp-1x_coco.py'

# ImageNet-1K weights of the release (README "ImageNet-1K 224x224 pre-trained models":
# huggingface.co/DaiShiResearch/transnext-tiny-224-1k/resolve/main/transnext_tiny_224_1k.pth);
# override with --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/transnext/transnext_tiny_224_1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='TransNeXt',
        arch='tiny',
        # l.12-13: the position bias is generated for an 800x800 input and resized to each
        # input's maps (interpolation), offsets scaled by the 224 pretraining size
        img_size=800,
        pretrain_size=224,
        is_extrapolation=False,
        drop_path_rate=0.4,  # hard-coded in the release's transnext_tiny (l.493-502)
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[72, 144, 288, 576]))  # l.16

# l.18-27: AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05 (the base's), none on the keys
# below; biases are decayed (no bias rule in the release); 2 images x 8 GPUs; mmdet 2.x
# schedule_1x (12 epochs, steps 8 / 11). Its warm-up is 500 iterations; we keep the base's
# 1000 (results/NOTES.md, TransNeXt).
optim_wrapper = dict(
    paramwise_cfg=dict(
        bias_decay_mult=1.0,
        custom_keys={'query_embedding': dict(decay_mult=0.0),
                     'relative_pos_bias_local': dict(decay_mult=0.0),
                     'cpb': dict(decay_mult=0.0),
                     'temperature': dict(decay_mult=0.0),
                     'norm': dict(decay_mult=0.0)}))
# The release trains Tiny and Small in fp32 (no fp16 line); we keep the suite's AMP.
