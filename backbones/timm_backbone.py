"""Any timm model as an mmdet / mmseg backbone, through timm's ``features_only`` API.

This is the shortest route for a new backbone: if timm has it, a config of a few lines
(``type='TimmBackbone', model_name=...``) puts it under our recipes. Weights come from
``checkpoint_path`` (a local file; nothing is downloaded), loaded strictly by timm.
"""
import timm
from mmengine.model import BaseModule

from .registry import register_backbone

__all__ = ['TimmBackbone']


@register_backbone
class TimmBackbone(BaseModule):
    """Multi-scale NCHW features of ``timm.create_model(model_name, features_only=True)``.

    Args:
        model_name: a timm model name (``timm.list_models()``).
        out_indices: which feature levels to return (timm's indices).
        checkpoint_path: optional local timm checkpoint for the full model.
        **kwargs: passed to ``timm.create_model`` (e.g. ``drop_path_rate``).
    """

    def __init__(self, model_name, out_indices=(0, 1, 2, 3), checkpoint_path='',
                 init_cfg=None, **kwargs):
        super().__init__(init_cfg=init_cfg)
        if not timm.is_model(model_name):
            raise ValueError(f'unknown timm model {model_name!r}; see timm.list_models()')
        self.model = timm.create_model(model_name, features_only=True, pretrained=False,
                                       out_indices=tuple(out_indices),
                                       checkpoint_path=checkpoint_path, **kwargs)
        self.out_channels = self.model.feature_info.channels()
        self.strides = self.model.feature_info.reduction()

    def forward(self, x):
        return tuple(self.model(x))
