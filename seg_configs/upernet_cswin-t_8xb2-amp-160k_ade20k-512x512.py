# UperNet 160k, CSWin Transformer tiny: the paper's Table 3 row CSWin-T.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights of the release (microsoft/CSWin-Transformer, README "Main Results on
# ImageNet": releases/download/v0.1.0/cswin_tiny_224.pth); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/cswin/cswin_tiny_224.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='CSWin',
        arch='tiny',
        drop_path_rate=0.3,  # segmentation/configs/cswin/upernet_cswin_tiny.py, l.12
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))

# The release (upernet_cswin_tiny.py l.25-34): AdamW lr 6e-5, betas (0.9, 0.999), weight
# decay 0.01, poly after 1500 linear warmup iterations from 1e-6, 160k iterations, 8x2
# images, test mode 'whole': the base's but for lr. Its no-decay rule matches 'norm' by name
# (every LayerNorm but the stem's, `stage1_conv_embed.2`); the base exempts every norm layer.
# It recommends apex mixed precision (segmentation/README.md); we keep the base's AMP.
optim_wrapper = dict(optimizer=dict(lr=6e-5))
