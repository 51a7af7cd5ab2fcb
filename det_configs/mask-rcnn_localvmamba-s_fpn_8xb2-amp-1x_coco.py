# Mask R-CNN 1x, LocalVMamba-S: the paper's Table 2 row LocalVMamba-S. LocalVMamba-T's config (its
# _base_: the release's vertical-scan reverse; drop path 0.2, which the release's det configs of
# both sizes inherit silently from mmdet's Swin-T base config) with the LocalVMamba-S backbone.
_base_ = './mask-rcnn_localvmamba-t_fpn_8xb2-amp-1x_coco.py'

# ImageNet weights: the release's local_vssm_small.ckpt (README: "Pretrained weights");
# override with --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
pretrained = 'checkpoints/localvmamba/local_vssm_small.ckpt'
# The corrected scan: variants/mask-rcnn_localvmamba-s-vfix_fpn_8xb2-amp-1x_coco.py
model = dict(backbone=dict(arch='small', init_cfg=dict(checkpoint=pretrained)))
# LocalMamba release: AdamW lr 1e-4, weight decay 0.05, 12 epochs [8, 11] (LocalVMamba-T's).
