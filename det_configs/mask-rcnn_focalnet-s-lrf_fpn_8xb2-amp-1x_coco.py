# Mask R-CNN 1x, timm focalnet_small_lrf: the paper's Table 2 row FocalNet-S. FocalNet-T's config
# (its _base_: output LNs, focal kernels widened to 9/11/13) with focalnet_small_lrf.
_base_ = './mask-rcnn_focalnet-t-lrf_fpn_8xb2-amp-1x_coco.py'

# ImageNet weights of the timm model (README: "Pretrained weights"); override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/timm/focalnet_small_lrf.ms_in1k.safetensors'
model = dict(
    backbone=dict(
        model_name='focalnet_small_lrf',
        drop_path_rate=0.2,  # FocalNet's Mask R-CNN 1x LRF config: 0.2
        init_cfg=dict(checkpoint=pretrained)))
