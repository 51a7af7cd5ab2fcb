# TransNeXt-Tiny UperNet with the release's other multi-scale protocol (the first of its
# two "ms+flip" values, not the paper's): the same weights with the position bias generated
# for 800x800 inputs and resized to every input's maps (interpolation), whole-image
# inference, ratios 0.5-1.75 + flip (run with --tta).
# Release: segmentation/upernet/configs/upernet_transnext_tiny_512x512_160k_ade20k_ms.py (l.12-14).
_base_ = '../upernet_transnext-t_8xb2-amp-160k_ade20k-512x512.py'

model = dict(backbone=dict(img_size=800), test_cfg=dict(_delete_=True, mode='whole'))
