# UperNet 160k, ViT-Adapter-S (not a row of the paper's Table 3; the release has it).
# Release: czczup/ViT-Adapter fd64a51, segmentation/configs/ade20k/
# upernet_deit_adapter_small_512_160k_ade20k.py (cited by line below); README (same
# folder) l.24-25: 46.2 / 47.1, 58M. Its segmentation ViTAdapter (segmentation/mmseg_custom)
# differs from the detector's: every block global, and the ViT tokens after interaction
# group i are added to level i.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512_resize-to-32.py'

# ImageNet weights: DeiT's own file (l.7); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/deit/deit_small_patch16_224-cd65a155.pth'
crop_size = (512, 512)
model = dict(
    backbone=dict(
        _delete_=True,
        type='ViTAdapter',
        arch='small',  # l.12-24: DeiT-S (dim 384, depth 12, 6 heads);
        # adapter: 6 deformable heads, deform_ratio 1.0
        drop_path_rate=0.2,  # l.18
        window_size=None,  # l.25-26: window_attn [False] * 12
        vit_features='per_interaction',
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[384, 384, 384, 384]),
    auxiliary_head=dict(in_channels=384),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))  # l.29

# l.49-56: AdamW lr 6e-5, weight decay 0.01, layer-wise lr decay 0.95 over 12 layers (the
# release's LayerDecayOptimizerConstructor: no decay on 1-D parameters and biases only),
# warm-up 1500 (1e-6), poly to 0: the base's schedule. FP16 (l.64): the suite's AMP.
optim_wrapper = dict(
    optimizer=dict(lr=6e-5),
    constructor='ViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(_delete_=True, num_layers=12, layer_decay_rate=0.95))

# Release test pipeline (l.33-48): ResizeToMultiple(32) after the 2048x512 resize: the base.
