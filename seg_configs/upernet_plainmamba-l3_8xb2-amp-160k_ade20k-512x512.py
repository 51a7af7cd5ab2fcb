# UperNet 160k, PlainMamba-L3: the paper's Table 3 row PlainMamba-L3. As released
# (plain_mamba_seg_configs/l3_upernet.py): PlainMamba-L1's config (its _base_: no neck, the four
# stride-16 taps straight into UperNet, aux FCN on the last tap, the release's recipe) with the L3
# backbone.
_base_ = './upernet_plainmamba-l1_8xb2-amp-160k_ade20k-512x512.py'

# ImageNet weights (HF ChenhongyiYang/PlainMamba l3.pth, mmcls format: the backbone's
# convert_pretrained strips 'backbone.' and drops head / EMA keys); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/plainmamba/l3.pth'
model = dict(
    backbone=dict(
        arch='l3',
        drop_path_rate=0.3,  # PlainMamba release, l3_upernet.py: 0.3
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[448, 448, 448, 448]),
    auxiliary_head=dict(in_channels=448))
