# UperNet 160k, LocalVMamba-T: the paper's Table 3 row LocalVMamba-T.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# NO PUBLISHED CHECKPOINT: the release's seg config points at local_vssm_tiny.ckpt, which was
# never released (hunto/LocalMamba README "retraining...", issues #34/#40/#42). Train it on
# ImageNet with the release and convert it (README: "Pretrained weights"), or run with
#   --cfg-options model.backbone.init_cfg=None
pretrained = 'checkpoints/localvmamba/local_vssm_tiny.ckpt'
model = dict(
    backbone=dict(
        _delete_=True,
        type='LocalVMamba',
        arch='tiny',
        drop_path_rate=0.1,  # LocalMamba seg config, tiny: 0.1
        out_indices=(0, 1, 2, 3),
        # The release's vertical-scan reverse, which its published numbers were made
        # with; it scrambles non-square maps (results/NOTES.md). The corrected scan:
        # variants/upernet_localvmamba-t-vfix_8xb2-amp-160k_ade20k-512x512.py
        release_v_reverse=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

# LocalMamba release: AdamW lr 6e-5, weight decay 0.01 (it trains T in fp32; we keep AMP).
optim_wrapper = dict(optimizer=dict(lr=6e-5))
