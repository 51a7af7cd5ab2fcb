# UperNet 160k, UniFormer-B: the paper's Table 3 row UniFormer-B, i.e. the release's
# UniFormer-B_h32 (Sense-X/UniFormer@52a0415 semantic_segmentation/README.md l.75: 49.5 / 50.7,
# 80M, 1106G). One checkpoint, trained with global attention in stage 3
# (exp/upernet_global_base/config.py l.16-17: windows=False, hybrid=False) and tested with
# hybrid windows (test_config_h32.py l.14-16: hybrid=True, window_size=32: every 4th stage-3
# block global, the others in 32x32 zero-padded windows). Here one config does both: the
# backbone's attention follows the model's mode, so validation during training is h32 too.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights: the release's uniformer_base_in1k.pth (image_classification/README.md,
# Google Drive; exp/upernet_global_base/run.sh passes it as pretrained_path); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/uniformer/uniformer_base_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='UniFormer',
        arch='base',
        attn_mode='global',  # stage-3 attention in training (config.py)
        eval_attn_mode='h32',  # ... in validation / testing (test_config_h32.py)
        drop_path_rate=0.4,  # config.py l.13
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))

# Release (config.py l.29-38): AdamW lr 6e-5, weight decay 0.01, no decay on norms, 1500
# warm-up iterations from 1e-6, poly (power 1) to 0, 2 images per GPU: the base's but the lr.
# (Its use_checkpoint on the first 2 stage-3 blocks only saves memory: with_cp gives the same
# outputs and gradients, so it is left to the user.)
optim_wrapper = dict(optimizer=dict(lr=6e-5))
