# PlainMamba-L3 UperNet as its release evaluates (ChenhongyiYang/PlainMamba
# downstream/mmsegmentation/configs/_base_/segformer/ade20k_repeat.py): whole image at
# (2048, 512) keeping the aspect ratio, then resized up to multiples of 32 on both sides
# (its AlignedResize; mmseg 1.x's ResizeToMultiple does the same: ceil, bilinear). The
# prediction is resized back to the label map. Everything else is the suite's config.
# Used by tools/reproduce.py release (results/releases.csv).
_base_ = '../upernet_plainmamba-l3_8xb2-amp-160k_ade20k-512x512.py'

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
