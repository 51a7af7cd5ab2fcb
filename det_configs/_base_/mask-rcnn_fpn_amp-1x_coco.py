# Mask R-CNN + FPN, 1x schedule on COCO, FP16: the recipe of the MambaOut paper's Table 2
# (which follows the ConvNeXt / Swin Mask R-CNN 1x setting). Built on mmdet's own bases.
# A model file sets only: the backbone (with its drop_path_rate and pretrained checkpoint)
# and the FPN in_channels. Batch: 8 GPUs x 2 images = 16 (auto_scale_lr keeps other GPU
# counts correct with `--auto-scale-lr`).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['backbones'], allow_failed_imports=False)

# Single-scale training and testing at 1333x800 (from coco_instance.py).
# Workers restart each epoch (not persistent) so that their seeded random streams restart
# too: a run resumed from an epoch checkpoint then draws the same augmentations.
train_dataloader = dict(batch_size=2, num_workers=2, persistent_workers=False)

max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1),
]
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.0),
        }))
auto_scale_lr = dict(enable=False, base_batch_size=16)
# Checkpoints are written atomically (backbones/checkpoint.py); custom_hooks make resume
# exact, stop fp32 runs at a NaN/inf loss and save on SIGTERM (backbones/hooks.py).
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3,
                                     backend_args=dict(backend='atomic_local')))
custom_hooks = [dict(type='RandomStateHook'), dict(type='NonFiniteLossHook'),
                dict(type='GracefulStopHook')]
# mmdet's CocoMetric on faster-coco-eval (same AP, several times faster; pycocotools
# when it is absent): backbones/coco_metric.py. ann_file, metric, format_only: mmdet's.
val_evaluator = dict(type='FastCocoMetric')
test_evaluator = dict(type='FastCocoMetric')
