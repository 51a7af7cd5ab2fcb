# A new backbone under the suite's UperNet 160k recipe: any timm model through
# backbones.TimmBackbone. Only the backbone and the head input widths differ.
_base_ = '../_base_/upernet_amp-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(_delete_=True, type='TimmBackbone', model_name='convnext_atto',
                  drop_path_rate=0.1),
    decode_head=dict(in_channels=[40, 80, 160, 320]),
    auxiliary_head=dict(in_channels=160))
