# UperNet 160k, PlainMamba-L1 (not a row of the paper's Table 3; the release has it). As released
# (plain_mamba_seg_configs/l1_upernet.py): no neck; the four stride-16 taps go straight into
# UperNet (in_channels [C]*4), so its MACs are about a third of a pyramid backbone's.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights (HF ChenhongyiYang/PlainMamba l1.pth, mmcls format: the backbone's
# convert_pretrained strips 'backbone.' and drops head / EMA keys); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/plainmamba/l1.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='PlainMamba',
        arch='l1',
        drop_path_rate=0.1,  # PlainMamba release, l1_upernet.py: 0.1
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[192, 192, 192, 192]),
    auxiliary_head=dict(in_channels=192, in_index=3))  # release: aux FCN on the last tap

# PlainMamba release: AdamW lr 6e-5, weight decay 0.01, no decay for norms, pos_embed,
# A_log, D and direction_Bs.
optim_wrapper = dict(
    optimizer=dict(lr=6e-5),
    paramwise_cfg=dict(custom_keys={
        'pos_embed': dict(decay_mult=0.0),
        '.A_log': dict(decay_mult=0.0),
        '.D': dict(decay_mult=0.0),
        '.direction_Bs': dict(decay_mult=0.0)}))
