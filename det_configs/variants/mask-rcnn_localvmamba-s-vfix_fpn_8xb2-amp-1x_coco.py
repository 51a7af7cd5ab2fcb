# Mask R-CNN 1x, LocalVMamba-S with the corrected vertical scan: the table row's config
# (release_v_reverse=True, what the published numbers were computed with) with the
# v / v_flip routes reversed back to their own column order (results/NOTES.md).
_base_ = '../mask-rcnn_localvmamba-s_fpn_8xb2-amp-1x_coco.py'

model = dict(backbone=dict(release_v_reverse=False))
