# A new backbone under the suite's Mask R-CNN 1x recipe: any timm model through
# backbones.TimmBackbone. Only the backbone and the FPN input widths differ.
_base_ = '../_base_/mask-rcnn_fpn_amp-1x_coco.py'

model = dict(
    backbone=dict(_delete_=True, type='TimmBackbone', model_name='convnext_atto',
                  drop_path_rate=0.1),
    neck=dict(in_channels=[40, 80, 160, 320]))
