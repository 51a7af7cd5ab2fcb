# UperNet 160k, PlainMamba-L2: the paper's Table 3 row PlainMamba-L2. As released
# (plain_mamba_seg_configs/l2_upernet.py): PlainMamba-L1's config (its _base_: no neck, the four
# stride-16 taps straight into UperNet, aux FCN on the last tap, the release's recipe) with the L2
# backbone.
_base_ = './upernet_plainmamba-l1_8xb2-amp-160k_ade20k-512x512.py'

# ImageNet weights (HF ChenhongyiYang/PlainMamba l2.pth, mmcls format: the backbone's
# convert_pretrained strips 'backbone.' and drops head / EMA keys); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/plainmamba/l2.pth'
model = dict(
    backbone=dict(
        arch='l2',
        drop_path_rate=0.2,  # PlainMamba release, l2_upernet.py: 0.2
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[384, 384, 384, 384]),
    auxiliary_head=dict(in_channels=384))
