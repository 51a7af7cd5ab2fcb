# UperNet 160k, LocalVMamba-S with the corrected vertical scan: the table row's config
# (release_v_reverse=True, what the published numbers were computed with) with the
# v / v_flip routes reversed back to their own column order (results/NOTES.md).
_base_ = '../upernet_localvmamba-s_8xb2-amp-160k_ade20k-512x512.py'

model = dict(backbone=dict(release_v_reverse=False))
