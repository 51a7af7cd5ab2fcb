# UperNet 160k, InternImage-T: the paper's Table 3 row InternImage-T.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512_resize-to-32.py'

# The release's ImageNet-1k weights (README: "Pretrained weights"), from
#   https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_t_1k_224.pth
# Source of every value below: OpenGVLab/InternImage @ 31c962d,
# segmentation/configs/ade20k/upernet_internimage_t_512_160k_ade20k.py (l.10-66).
pretrained = 'checkpoints/internimage/internimage_t_1k_224.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='InternImage',
        arch='tiny',  # channels 64, depths [4, 4, 18, 4], groups [4, 8, 16, 32], post_norm False
        layer_scale=1.0,
        offset_scale=1.0,
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))

# Release: AdamW lr 6e-5, weight decay 0.05, none on 1-D parameters (norms, biases, the
# layer-scale gammas: CustomLayerDecayOptimizerConstructor, layer_decay_rate 1.0, i.e. no
# layer-wise decay); warm-up 1500 (1e-6), poly, 160k, 2 x 8, eval every 16k, whole-image
# test: the base's. It trains in fp32 (fp16 line commented out); we keep the suite's AMP.
optim_wrapper = dict(optimizer=dict(lr=6e-5, weight_decay=0.05),
                     paramwise_cfg=dict(bias_decay_mult=0.0,
                                        custom_keys={'gamma': dict(decay_mult=0.0)}))

# Release test pipeline: ResizeToMultiple(32) after the 2048x512 resize (l.43): the base.
