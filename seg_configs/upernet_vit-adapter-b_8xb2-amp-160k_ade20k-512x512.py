# UperNet 160k, ViT-Adapter-B (not a row of the paper's Table 3; the release has it).
# Release: czczup/ViT-Adapter fd64a51, segmentation/configs/ade20k/
# upernet_deit_adapter_base_512_160k_ade20k.py (cited by line below); README (same
# folder) l.24-25: 48.8 / 49.7, 134M. Its segmentation ViTAdapter (segmentation/mmseg_custom)
# differs from the detector's: every block global, and the ViT tokens after interaction
# group i are added to level i.
_base_ = './_base_/upernet_amp-160k_ade20k-512x512.py'

# ImageNet weights: DeiT's own file (l.7); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/deit/deit_base_patch16_224-b5f2ef4d.pth'
crop_size = (512, 512)
model = dict(
    backbone=dict(
        _delete_=True,
        type='ViTAdapter',
        arch='base',  # l.12-24: DeiT-B (dim 768, depth 12, 12 heads);
        # adapter: 12 deformable heads, deform_ratio 0.5
        drop_path_rate=0.3,  # l.18
        window_size=None,  # l.25-26: window_attn [False] * 12
        vit_features='per_interaction',
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))  # l.29

# l.49-56: AdamW lr 6e-5, weight decay 0.01, layer-wise lr decay 0.95 over 12 layers (the
# release's LayerDecayOptimizerConstructor: no decay on 1-D parameters and biases only),
# warm-up 1500 (1e-6), poly to 0: the base's schedule. FP16 (l.64): the suite's AMP.
optim_wrapper = dict(
    optimizer=dict(lr=6e-5),
    constructor='ViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(_delete_=True, num_layers=12, layer_decay_rate=0.95))

# Release test pipeline (l.33-48): after the 2048x512 resize, ResizeToMultiple(32); the logits
# are resized back to the original image for the metric, as the base does.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True)
         for r in [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]],
        [dict(type='ResizeToMultiple', size_divisor=32)],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')],
    ]),
]
