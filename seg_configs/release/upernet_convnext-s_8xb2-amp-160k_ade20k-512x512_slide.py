# ConvNeXt-S UperNet as its release evaluates single-scale (Table 3 "SS"): sliding-window
# inference, 512x512 crops at stride 341 (facebookresearch/ConvNeXt semantic_segmentation/
# configs/convnext/upernet_convnext_small_512_160k_ade20k_ss.py). Everything else is the
# suite's config; the release's multi-scale config (..._ms.py) is whole-image, i.e. the
# suite's config with --tta. Used by tools/reproduce.py release (results/releases.csv).
_base_ = '../upernet_convnext-s_8xb2-amp-160k_ade20k-512x512.py'

model = dict(test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
