"""Any timm model as an mmdet / mmseg backbone, through timm's ``features_only`` API.

This is the shortest route for a new backbone: if timm has it (``timm.list_models()``), a
config of a few lines (``type='TimmBackbone', model_name=...``) puts it under our recipes,
with what an mm backbone is expected to offer:

* ``out_indices`` (timm's feature levels; for the hierarchical models here, the 4 stages);
* NCHW outputs whatever timm returns (Swin's features are NHWC);
* ``out_norm_eps``: a LayerNorm (float32, :class:`backbones.layers.LayerNorm`) on each
  output, as the det/seg code of ConvNeXt, Swin, FocalNet, Twins-SVT and MambaOut adds one
  (``norm{i}`` there); ``None`` (default) returns timm's stage outputs as they are, which is
  right for models whose stages end in a norm of their own (PVTv2);
* ``frozen_stages`` / ``norm_eval`` with the mmdet meaning (stem, then stages 0..n-1, each
  with its output norm), ``drop_path_rate`` and any other ``timm.create_model`` argument;
* ``with_cp``: timm's own gradient checkpointing of each stage's blocks (``use_reentrant``
  False, timm's default), an error for models timm cannot checkpoint (Twins);
* any input size where the model allows: timm's ``PatchEmbed`` pads the image right/bottom
  to its patch size (as mmdet's Swin does) and Swin is built with ``strict_img_size=False,
  always_partition=True``: every odd block shifts its windows at any resolution, as in the
  Swin det/seg code (timm's default would drop the shift where a stage is no larger than
  one window, which is the case at 224x224 only);
* the families' dense forward where timm's differs (``DENSE_CLASSES``: timm's modules with
  a forward of their release's det/seg code, same parameters): Swin pads the map to the
  window grid before the cyclic shift, FocalNet pads to its stride before each downsampling
  and Twins keeps window padding out of its local attention; Twins' output norms also feed
  the next stage, as its ``norm_list`` does (``NORM_FEEDS_NEXT``);
* complexity counting: mmengine's FLOP counter (``tools/get_flops.py``) sees no MACs in
  PyTorch's fused ``scaled_dot_product_attention``, so while the model is traced timm's
  attention layers take their explicit ``q @ k`` / ``attn @ v`` path (the same math) and
  the attention matmuls are counted, as the published complexities count them;
* strict pretrained loading from a local file through ``init_cfg`` (``.pth`` / ``.bin``
  with ``weights_only``, or ``.safetensors``): timm's own ``checkpoint_filter_fn`` of the
  model family maps official releases onto timm's names, then every weight the features
  model uses must be there with its shape, and nothing unknown may be: the classifier and
  any layer the features model drops are ignored; nothing is downloaded, nothing is left at
  random init without an error.
"""
import os.path as osp
import sys

import timm
import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models import focalnet, is_model_in_modules, swin_transformer, twins
from timm.models._features import FeatureGetterNet  # not re-exported by timm.models
from torch import nn

from ..engine.checkpoint import (
    CheckpointError,
    load_checkpoint_file,
)
from ..layers import LayerNorm
from .base import DenseBackbone, check_common_args
from .registry import register_backbone

__all__ = ['TimmBackbone']

# timm module -> create_model arguments a dense backbone needs (a config may override them)
DENSE_DEFAULTS = {
    'swin_transformer': dict(strict_img_size=False, always_partition=True),
}
# timm modules whose output norm is part of the dense network: stage i+1 reads it
NORM_FEEDS_NEXT = ('twins',)


# ---- the families' dense forward, on timm's modules (same parameters) -----------------
class SwinDenseBlock(swin_transformer.SwinTransformerBlock):
    """Swin's det/seg code (official Swin-Transformer-Object-Detection / -Semantic-
    Segmentation ``SwinTransformerBlock.forward``, mmdet/mmseg ``ShiftWindowMSA``) pads the
    map to the window grid, then shifts it, with the shifted-window mask drawn on the padded
    map. timm's ``_attn`` shifts the unpadded map and pads after, which moves the padding
    into the middle of the shifted windows wherever a stage needs padding."""

    def _attn(self, x):
        _, h, w, c = x.shape
        win_h, win_w = self.window_size
        x = F.pad(x, (0, 0, 0, (-w) % win_w, 0, (-h) % win_h))
        hp, wp = x.shape[1:3]
        shift = tuple(self.shift_size)
        mask = None
        if any(shift):
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
            mask = self.get_attn_mask(x)  # timm's regions, on the padded map
        windows = swin_transformer.window_partition(x, self.window_size)
        windows = self.attn(windows.view(-1, self.window_area, c), mask=mask)
        x = swin_transformer.window_reverse(windows.view(-1, win_h, win_w, c),
                                            self.window_size, hp, wp)
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x[:, :h, :w].contiguous()


class FocalNetDenseDownsample(focalnet.Downsample):
    """FocalNet's det code (its ``PatchEmbed``, stem and between stages) pads the map
    right/bottom to a multiple of the stride before the strided conv, so a stage has
    ceil(size / stride) rows; timm's conv drops the remainder. Overlapping (conv-embed)
    downsampling is left as timm has it: its 7x7 stem conv pads by 2, the det code's by 3."""

    def forward(self, x):
        if tuple(self.proj.padding) == (0, 0) and tuple(self.proj.kernel_size) == \
                (self.stride, self.stride):
            x = F.pad(x, (0, (-x.shape[3]) % self.stride, 0, (-x.shape[2]) % self.stride))
        return super().forward(x)


class TwinsDenseLocalAttn(twins.LocallyGroupedAttn):
    """Twins' segmentation code (``GroupAttention.forward_mask`` of its ``gvt.py``, as
    mmseg's ``LSAEntity``) biases attention between real tokens and the zeros that pad
    the map to the window grid by -1000; timm attends to the zeros. The release marks the
    padding with ``mask[:, -pad_b:, :]`` and ``mask[:, :, -pad_r:]``, and a slice ``-0:``
    is the whole map: its mask only takes effect when both pads are positive."""

    def forward(self, x, size):
        b, n, c = x.shape
        h, w = size
        ws, heads = self.ws, self.num_heads
        pad_b, pad_r = (-h) % ws, (-w) % ws
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, pad_r, 0, pad_b))
        gh, gw = x.shape[1] // ws, x.shape[2] // ws
        x = x.reshape(b, gh, ws, gw, ws, c).transpose(2, 3)
        qkv = self.qkv(x).reshape(b, gh * gw, ws * ws, 3, heads, c // heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # (b, groups, heads, ws*ws, d)
        bias = None
        if pad_b and pad_r:
            bias = _padding_bias(h, w, gh, gw, ws, q)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=self.attn_drop.p if self.training else 0.)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if bias is not None:
                attn = attn + bias
            x = self.attn_drop(attn.softmax(dim=-1)) @ v
        x = x.transpose(2, 3).reshape(b, gh, gw, ws, ws, c).transpose(2, 3)
        x = x.reshape(b, gh * ws, gw * ws, c)[:, :h, :w].reshape(b, n, c)
        return self.proj_drop(self.proj(x))


def _padding_bias(h, w, gh, gw, ws, like):
    """(1, groups, 1, ws*ws, ws*ws): -1000 between a padding and a real token, else 0."""
    pad = torch.ones(gh * ws, gw * ws, device=like.device, dtype=torch.bool)
    pad[:h, :w] = False
    pad = pad.view(gh, ws, gw, ws).transpose(1, 2).reshape(gh * gw, ws * ws)
    differ = pad.unsqueeze(1) != pad.unsqueeze(2)
    bias = torch.zeros(differ.shape, device=like.device, dtype=like.dtype)
    return bias.masked_fill(differ, -1000.).unsqueeze(1).unsqueeze(0)


#: timm class -> the subclass with its release's dense forward (instances are re-classed)
DENSE_CLASSES = {
    swin_transformer.SwinTransformerBlock: SwinDenseBlock,
    focalnet.Downsample: FocalNetDenseDownsample,
    twins.LocallyGroupedAttn: TwinsDenseLocalAttn,
}


@register_backbone
class TimmBackbone(DenseBackbone):
    """Multi-scale NCHW features of ``timm.create_model(model_name, features_only=True)``.

    Args:
        model_name: a timm model name (``timm.list_models()``).
        out_indices: which feature levels to return (timm's indices).
        out_norm_eps: eps of a LayerNorm applied to each returned level (Twins: to every
            stage up to the last returned one, and the next stage reads it); None: no norm.
        frozen_stages: -1 (none), 0 (the stem) or n (stem and stages 0..n-1).
        norm_eval: keep BatchNorm layers in eval mode while training.
        with_cp: gradient checkpointing (timm's) of the blocks of every stage.
        pad_pretrained_kernels: zero-pad smaller pretrained conv kernels to this model's
            size, centred (FocalNet's detection loader does this for its wider focal
            windows); any other shape mismatch stays an error.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH, prefix=None)`` for ImageNet
            weights of the full timm model (timm or official key names).
        **kwargs: passed to ``timm.create_model`` (``drop_path_rate``, ``focal_windows``...).
    """
    new_key_prefixes = ('out_norms.',)

    def __init__(self, model_name, out_indices=(0, 1, 2, 3), out_norm_eps=None,
                 frozen_stages=-1, norm_eval=False, with_cp=False,
                 pad_pretrained_kernels=False, init_cfg=None, **kwargs):
        if not timm.is_model(model_name):
            raise ValueError(f'TimmBackbone: unknown timm model {model_name!r}; see '
                             f'timm.list_models()')
        if not isinstance(with_cp, bool):
            raise ValueError(f'TimmBackbone: with_cp must be a bool (timm checkpoints every '
                             f'stage or none), got {with_cp!r}')
        if 'drop_path_rate' in kwargs:
            check_common_args('TimmBackbone', 3, kwargs['drop_path_rate'])
        for key in ('features_only', 'pretrained', 'checkpoint_path', 'pretrained_cfg_overlay'):
            if key in kwargs:
                raise ValueError(f'TimmBackbone: {key!r} is set by the adapter; give ImageNet '
                                 f"weights as init_cfg=dict(type='Pretrained', checkpoint=...)")
        create_kwargs = {}
        for module, defaults in DENSE_DEFAULTS.items():
            if is_model_in_modules(model_name, module):
                create_kwargs.update(defaults)
        create_kwargs.update(kwargs)
        out_indices = tuple(out_indices)
        try:
            model = timm.create_model(model_name, features_only=True, pretrained=False,
                                      out_indices=out_indices, **create_kwargs)
        except IndexError:
            raise ValueError(f'TimmBackbone: out_indices {out_indices} are not feature levels '
                             f'of {model_name}') from None
        super().__init__(len(model.feature_info.info), out_indices, frozen_stages, norm_eval,
                         with_cp, init_cfg)
        if tuple(model.feature_info.out_indices) != self.out_indices:
            raise ValueError(f'TimmBackbone: out_indices must be increasing, got {out_indices}')
        self.model_name = model_name
        self.create_kwargs = create_kwargs
        self.pad_pretrained_kernels = pad_pretrained_kernels
        self.model = model
        self.channels_last = str(getattr(model, 'output_fmt', 'NCHW')) in ('NHWC', 'Format.NHWC')
        self.strides = tuple(model.feature_info.reduction())
        for m in model.modules():  # any input size: pad to the patch size, right / bottom
            if isinstance(m, PatchEmbed) and not m.strict_img_size:
                m.dynamic_img_pad = True
            if type(m) in DENSE_CLASSES:
                m.__class__ = DENSE_CLASSES[type(m)]
        self.norm_feeds_next = any(is_model_in_modules(model_name, m) for m in NORM_FEEDS_NEXT)
        all_channels = [info['num_chs'] for info in model.feature_info.info]
        if out_norm_eps is None:
            self.out_norms = nn.ModuleList(nn.Identity() for _ in all_channels)
            self.out_channels = tuple(all_channels[i] for i in self.out_indices)
        else:
            self._build_out_norms(all_channels, lambda c: LayerNorm(c, eps=out_norm_eps))
            if self.norm_feeds_next:  # a stage before the last output is normed too
                for i in range(max(self.out_indices)):
                    if isinstance(self.out_norms[i], nn.Identity):
                        self.out_norms[i] = LayerNorm(all_channels[i], eps=out_norm_eps)
        # timm attention layers that use the fused kernel (see the module docstring)
        self._fused_attn = [m for m in model.modules() if getattr(m, 'fused_attn', None) is True]
        self._stages = self._stage_groups()
        if self.with_cp[0]:
            self._enable_checkpointing()
        self._freeze_stages()

    # ---- structure ------------------------------------------------------------------
    def _stage_groups(self):
        """(stem modules, [modules of stage i]) of the features model."""
        if isinstance(self.model, FeatureGetterNet):
            # the whole timm model is kept; per-stage ModuleLists (Twins: patch_embeds,
            # pos_drops, blocks, pos_block) hold stage i at index i
            inner = self.model.model
            lists = [m for m in inner.children()
                     if isinstance(m, nn.ModuleList) and len(m) == self.num_stages]
            if not lists:
                return None
            return [], [[ml[i] for ml in lists] for i in range(self.num_stages)]
        names = list(self.model.keys())
        wanted = [info['module'] for info in self.model.feature_info.info]
        ends = []
        for module in wanted[:max(self.out_indices) + 1]:
            candidates = [n for n in (module.replace('.', '_'), module) if n in names]
            if not candidates:
                return None
            ends.append(names.index(candidates[0]))
        stem = [self.model[n] for n in names[:ends[0]]]
        groups, start = [], ends[0]
        for end in ends:
            groups.append([self.model[n] for n in names[start:end + 1]])
            start = end + 1
        return stem, groups

    def stage_modules(self, i):
        if self._stages is None:
            raise NotImplementedError(f'TimmBackbone: frozen_stages is not supported for '
                                      f'{self.model_name} (its stages could not be found)')
        groups = self._stages[1]
        return (groups[i] if i < len(groups) else []) + [self.out_norms[i]]

    def _frozen_modules(self):
        if self.frozen_stages < 0:
            return []
        if self._stages is None:
            self.stage_modules(0)  # raises
        modules = list(self._stages[0])
        for i in range(self.frozen_stages):
            modules.extend(self.stage_modules(i))
        return modules

    def _enable_checkpointing(self):
        if isinstance(self.model, FeatureGetterNet):
            try:
                self.model.model.set_grad_checkpointing(True)
            except AssertionError as err:
                raise ValueError(f'TimmBackbone: timm cannot checkpoint {self.model_name} '
                                 f'({err}); use with_cp=False') from None
            return
        found = False
        for group in (self._stages[1] if self._stages else []):
            for m in group:
                if hasattr(m, 'set_grad_checkpointing'):
                    m.set_grad_checkpointing(True)
                    found = True
                elif isinstance(getattr(m, 'grad_checkpointing', None), bool):
                    m.grad_checkpointing = True
                    found = True
        if not found:  # timm's wrapper: checkpoints whole top-level modules
            self.model.set_grad_checkpointing(True)

    # ---- forward --------------------------------------------------------------------
    def forward_stages(self, x):
        """timm's feature maps as NCHW, before the output norms."""
        if self.norm_feeds_next:
            return self._normed_chain(x, normed=False)
        feats = self.model(x)
        if self.channels_last:
            feats = [y.permute(0, 3, 1, 2) for y in feats]
        for y, c in zip(feats, self.out_channels):
            if y.shape[1] != c:
                raise RuntimeError(f'TimmBackbone: {self.model_name} returned {tuple(y.shape)}'
                                   f', expected {c} channels in dim 1')
        return tuple(y.contiguous() for y in feats)

    def forward(self, x):
        if not (self._fused_attn and torch.jit.is_tracing()):
            return self._forward(x)
        for m in self._fused_attn:
            m.fused_attn = False
        try:
            return self._forward(x)
        finally:
            for m in self._fused_attn:
                m.fused_attn = True

    def _forward(self, x):
        if self.norm_feeds_next:
            return self._normed_chain(x)
        outs = []
        for i, y in zip(self.out_indices, self.forward_stages(x)):
            norm = self.out_norms[i]
            if not isinstance(norm, nn.Identity):
                y = norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()
            outs.append(y)
        return tuple(outs)

    def _normed_chain(self, x, normed=True):
        """NCHW maps of the out indices, after (or before) the output norm, for Twins, whose dense
        code (``norm_list`` of its gvt.py, mmseg's ``norm_after_stage``) hands the normed
        tokens to the next stage; timm's ``forward_intermediates`` hands over the raw ones.
        The stage is timm's: patch embedding, blocks, the position conv after the first."""
        net, b = self.model.model, x.shape[0]
        levels = []
        for i in range(max(self.out_indices) + 1):
            x, size = net.patch_embeds[i](x)
            x = net.pos_drops[i](x)
            for j, block in enumerate(net.blocks[i]):
                x = block(x, size)
                if j == 0:
                    x = net.pos_block[i](x, size)
            raw, x = x, self.out_norms[i](x)
            x = x.reshape(b, *size, -1).permute(0, 3, 1, 2).contiguous()
            if i in self.out_indices:
                levels.append(x if normed else
                              raw.reshape(b, *size, -1).permute(0, 3, 1, 2).contiguous())
        return tuple(levels)

    # ---- pretrained weights (DenseBackbone.init_weights, with timm's file formats) -------
    @staticmethod
    def read_checkpoint(path):
        return _load_file(path)

    def convert_pretrained(self, state_dict):
        """A checkpoint of the full timm model (timm's or the official key names) as this
        module's keys (``model.<features key>``); weights the features model does not use
        (classifier, final norm, stages after the last output) are dropped. Keys of neither
        model are passed through, for the strict loader to name."""
        full = timm.create_model(self.model_name, pretrained=False, **self.create_kwargs)
        filter_fn = getattr(sys.modules[type(full).__module__], 'checkpoint_filter_fn', None)
        if filter_fn is not None:
            state_dict = filter_fn(dict(state_dict), full)
        full_sd, own_sd = full.state_dict(), self.model.state_dict()
        to_own = _features_key_map(full_sd, own_sd, isinstance(self.model, FeatureGetterNet))
        out = {}
        for key, value in state_dict.items():
            if key in full_sd and key not in to_own:
                continue  # unused by the features model
            if key in to_own:
                if self.pad_pretrained_kernels:
                    value = _pad_kernel(value, own_sd[to_own[key]].shape)
                key = 'model.' + to_own[key]
            out[key] = value
        return out


# ---- helpers ---------------------------------------------------------------------------
def _load_file(path):
    path = str(path)
    if path.startswith(('http://', 'https://')):
        raise CheckpointError(f'TimmBackbone loads local files only, got {path}; download it '
                              f'first (README: "Pretrained weights")')
    if path.endswith('.safetensors'):
        if not osp.isfile(path):
            raise FileNotFoundError(f'checkpoint file not found: {path}')
        from safetensors.torch import load_file
        return load_file(path, device='cpu')
    return load_checkpoint_file(path)


def _features_key_map(full_sd, feat_sd, getter):
    """full-model key -> features-model key, for every key of the features model.

    timm's FeatureListNet flattens top-level nn.Sequential children (``stages.0`` becomes
    ``stages_0``); FeatureGetterNet keeps the whole model under ``model.``."""
    tops = sorted({k.split('.')[0] for k in full_sd}, key=len, reverse=True)
    mapping = {}
    for key in feat_sd:
        if getter:
            full_key = key[len('model.'):] if key.startswith('model.') else key
        else:
            head, _, rest = key.partition('.')
            full_key = key
            if head not in tops:
                top = next((t for t in tops if head.startswith(t + '_')), None)
                if top is not None:
                    full_key = f'{top}.{head[len(top) + 1:]}.{rest}'
        if full_key not in full_sd or full_sd[full_key].shape != feat_sd[key].shape:
            raise RuntimeError(f'TimmBackbone: cannot map features key {key!r} onto the '
                               f'full timm model (tried {full_key!r})')
        mapping[full_key] = key
    return mapping


def _pad_kernel(value, shape):
    """Centre-pad a conv kernel with zeros to ``shape`` (same channels, larger odd size)."""
    if value.dim() != 4 or len(shape) != 4 or tuple(value.shape) == tuple(shape) \
            or value.shape[:2] != shape[:2]:
        return value
    dh, dw = shape[2] - value.shape[2], shape[3] - value.shape[3]
    if dh < 0 or dw < 0 or dh % 2 or dw % 2:
        return value
    return F.pad(value, (dw // 2, dw // 2, dh // 2, dh // 2))
