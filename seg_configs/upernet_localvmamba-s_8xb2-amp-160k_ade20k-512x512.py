# UperNet 160k, LocalVMamba-S: the paper's Table 3 row LocalVMamba-S. LocalVMamba-T's config (its
# _base_: the release's vertical-scan reverse, its recipe) with the LocalVMamba-S backbone.
_base_ = './upernet_localvmamba-t_8xb2-amp-160k_ade20k-512x512.py'

# ImageNet weights: the release's local_vssm_small.ckpt (README: "Pretrained weights");
# override with --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/localvmamba/local_vssm_small.ckpt'
# The corrected scan: variants/upernet_localvmamba-s-vfix_8xb2-amp-160k_ade20k-512x512.py
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.2,  # LocalMamba seg config, small: 0.2
        init_cfg=dict(checkpoint=pretrained)))

# LocalMamba release: AdamW lr 6e-5, weight decay 0.01 (LocalVMamba-T's), AMP.
