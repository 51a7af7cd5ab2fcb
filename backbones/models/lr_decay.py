"""Layer-wise learning-rate decay, as the HorNet and ViT-Adapter releases train their
segmentors: one optimizer-wrapper constructor, the layer of each parameter given by the
family (mmseg 1.x's ``LearningRateDecayOptimizerConstructor`` only knows ConvNeXt / BEiT /
MAE names).

``paramwise_cfg = {RATE_KEY: r, 'num_layers': n, **fixed}``: with L = n + 2, a parameter of
layer l (the subclass's ``layer_id(name, L)``) trains at lr * r ** (L - 1 - l); 1-D parameters
and biases get no weight decay, every other one the optimizer's; frozen parameters are left
out. No other paramwise option applies, so a config cannot ask for one that would be ignored.
"""
from .base import positive_ints

try:
    from mmengine.optim import DefaultOptimWrapperConstructor
except ModuleNotFoundError as _err:  # a bare GPU machine: models only, no training stack
    if (_err.name or '').split('.')[0] not in ('mmengine', 'rich'):
        raise
    DefaultOptimWrapperConstructor = None

__all__ = ['LayerDecayOptimWrapperConstructor']


if DefaultOptimWrapperConstructor is None:
    LayerDecayOptimWrapperConstructor = None
else:
    class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
        """Base of the families' constructors: set ``rate_key``, ``fixed`` (other paramwise
        keys and the one value each may take) and ``layer_id``."""
        rate_key = 'decay_rate'
        fixed = {}

        @staticmethod
        def layer_id(name, num_layers):
            raise NotImplementedError

        def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
            cfg = dict(paramwise_cfg or {})
            keys = {'num_layers', self.rate_key, *self.fixed}
            if set(cfg) != keys:
                raise ValueError(f'{type(self).__name__}: paramwise_cfg needs exactly the keys '
                                 f'{sorted(keys)}, got {sorted(cfg)}')
            for key, value in self.fixed.items():
                if cfg[key] != value:
                    raise ValueError(f'{type(self).__name__}: {key} must be {value!r} (the '
                                     f"release's rule), got {cfg[key]!r}")
            rate = cfg[self.rate_key]
            if not (positive_ints((cfg['num_layers'],)) and isinstance(rate, (int, float))
                    and 0 < rate <= 1):
                raise ValueError(f'{type(self).__name__}: need a positive int num_layers and '
                                 f'0 < {self.rate_key} <= 1, got {cfg}')
            super().__init__(optim_wrapper_cfg, cfg)

        def add_params(self, params, module, prefix='', **kwargs):
            num_layers = self.paramwise_cfg['num_layers'] + 2
            rate = self.paramwise_cfg[self.rate_key]
            groups = {}
            for name, param in module.named_parameters(prefix=prefix.rstrip('.')):
                if not param.requires_grad:
                    continue
                no_decay = param.ndim == 1 or name.endswith('.bias')
                layer = self.layer_id(name, num_layers)
                group = groups.setdefault((layer, no_decay), dict(
                    params=[], lr=self.base_lr * rate ** (num_layers - layer - 1),
                    weight_decay=0. if no_decay else self.base_wd))
                group['params'].append(param)
            params.extend(groups.values())
