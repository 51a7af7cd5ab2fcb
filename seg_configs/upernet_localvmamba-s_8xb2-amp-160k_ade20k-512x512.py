# UperNet 160k, LocalVMamba-S: the paper's Table 3 row LocalVMamba-S.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights: the release's local_vssm_small.ckpt (README: "Pretrained weights");
# override with --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/localvmamba/local_vssm_small.ckpt'
model = dict(
    backbone=dict(
        _delete_=True,
        type='LocalVMamba',
        arch='small',
        drop_path_rate=0.2,  # LocalMamba seg config, small: 0.2
        out_indices=(0, 1, 2, 3),
        # The release's vertical-scan reverse, which its published numbers were made
        # with; it scrambles non-square maps (results/NOTES.md). The corrected scan:
        # variants/upernet_localvmamba-s-vfix_8xb2-amp-160k_ade20k-512x512.py
        release_v_reverse=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

# LocalMamba release: AdamW lr 6e-5, weight decay 0.01, AMP.
optim_wrapper = dict(optimizer=dict(lr=6e-5))
