# ResNet-18 Mask R-CNN on mmdet's stock bases: the foundation's integration-test model.
# No pretrained weights (nothing is downloaded); FP16 as in the suite's real recipes.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['backbones'], allow_failed_imports=False)

model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
