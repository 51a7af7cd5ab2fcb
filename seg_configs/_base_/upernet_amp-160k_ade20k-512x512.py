# UperNet, 160k iterations on ADE20K at 512x512, FP16: the recipe of the MambaOut paper's
# Table 3 (the Swin UperNet setting). Built on mmseg's own bases. A model file sets only:
# the backbone (drop_path_rate, pretrained checkpoint), the head in_channels, and its
# learning rate where it differs. Batch: 8 GPUs x 2 images = 16.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['backbones'], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    decode_head=dict(channels=512, num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_index=2, channels=256, num_classes=150, norm_cfg=norm_cfg,
                        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                         loss_weight=0.4)))

train_dataloader = dict(batch_size=2, num_workers=4)

max_iters = 160000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=max_iters),
]
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
        }))
# Checkpoints are written atomically (backbones/checkpoint.py); custom_hooks make resume
# exact, stop fp32 runs at a NaN/inf loss and save on SIGTERM (backbones/hooks.py).
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=16000,
                                     max_keep_ckpts=3, backend_args=dict(backend='atomic_local')))
custom_hooks = [dict(type='RandomStateHook'), dict(type='NonFiniteLossHook'),
                dict(type='GracefulStopHook')]
