# ResNet-18 UperNet on mmseg's stock bases: the foundation's integration-test model.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['backbones'], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(depth=18),
    decode_head=dict(in_channels=[64, 128, 256, 512], channels=128, num_classes=150),
    auxiliary_head=dict(in_channels=256, channels=64, num_classes=150))
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
