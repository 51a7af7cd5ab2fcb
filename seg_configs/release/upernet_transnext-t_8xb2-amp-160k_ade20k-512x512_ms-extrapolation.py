# TransNeXt-Tiny UperNet as its release evaluates multi-scale for the number in the paper's
# Table 3 MS column: the same weights with the position bias generated for every input's own
# maps (extrapolation), whole-image inference, ratios 0.5-1.75 + flip (run with --tta).
# Release: segmentation/upernet/configs/
# upernet_transnext_tiny_512x512_160k_ade20k_ms_extrapolation.py (l.12-14); the second of
# its README's two "ms+flip" values (51.5/51.7; the first is ..._ms-interpolation.py).
_base_ = '../upernet_transnext-t_8xb2-amp-160k_ade20k-512x512.py'

model = dict(backbone=dict(is_extrapolation=True), test_cfg=dict(_delete_=True, mode='whole'))
