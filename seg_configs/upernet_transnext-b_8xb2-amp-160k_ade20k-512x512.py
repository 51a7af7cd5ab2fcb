# UperNet 160k, TransNeXt-Base: the paper's Table 3 row TransNeXt-Base (SS column).
# Release: DaiShiResearch/TransNeXt c8a9974, segmentation/upernet/configs/
# upernet_transnext_base_512x512_160k_ade20k_ss.py (cited by line below), the config it trains
# and evaluates single-scale with. Its multi-scale numbers use the same weights with other
# backbone settings: release/upernet_transnext-b_8xb2-amp-160k_ade20k-512x512_ms-*.py.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet-1K weights of the release (README "ImageNet-1K 224x224 pre-trained models":
# huggingface.co/DaiShiResearch/transnext-base-224-1k/resolve/main/transnext_base_224_1k.pth);
# override with --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/transnext/transnext_base_224_1k.pth'
crop_size = (512, 512)
model = dict(
    backbone=dict(
        _delete_=True,
        type='TransNeXt',
        arch='base',
        # l.14-16: the bias generated for 512x512 inputs (the training crops) and resized to
        # other maps (interpolation)
        img_size=512,
        pretrain_size=224,
        is_extrapolation=False,
        drop_path_rate=0.7,  # hard-coded in the release's transnext_base (l.517-526)
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),  # l.19
    auxiliary_head=dict(in_channels=384),  # l.23
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))  # l.26

# l.30-43: AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.05, none on the keys below
# (biases are decayed, as the base does), warm-up 1500 iterations from 1e-6, poly (power 1),
# 160k iterations, 2 images x 8 GPUs: the base's but for lr, weight decay and the keys. The
# release trains in fp32 (no fp16 line); we keep the suite's AMP.
optim_wrapper = dict(
    optimizer=dict(lr=6e-5, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'query_embedding': dict(decay_mult=0.0),
                                    'relative_pos_bias_local': dict(decay_mult=0.0),
                                    'cpb': dict(decay_mult=0.0),
                                    'temperature': dict(decay_mult=0.0),
                                    'norm': dict(decay_mult=0.0)}))
