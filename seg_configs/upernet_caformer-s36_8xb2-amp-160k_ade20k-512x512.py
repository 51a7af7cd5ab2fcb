# UperNet 160k, timm caformer_s36: the paper's Table 3 row CAFormer-S36.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights of the timm model (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/timm/caformer_s36.sail_in1k.safetensors'
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='caformer_s36',
        drop_path_rate=0.3,  # unpublished: as MambaOut of this size (results/NOTES.md)
        out_norm_eps=1e-6,  # as MambaOut (same authors; no dense code of theirs): LN, eps 1e-6
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
