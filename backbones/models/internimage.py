"""InternImage backbones (T / S / B) for dense prediction (mmdet + mmseg).

Paper: `InternImage: Exploring Large-Scale Vision Foundation Models with Deformable
Convolutions` (Wang et al., CVPR 2023, https://arxiv.org/abs/2211.05778) and its release
(github.com/OpenGVLab/InternImage @ 31c962d: ``segmentation/mmseg_custom/models/backbones/
intern_image.py``, identical in ``detection/``; ``ops_dcnv3/``; the configs
``segmentation/configs/ade20k/upernet_internimage_{t,s,b}_512_160k_ade20k.py`` and
``detection/configs/coco/mask_rcnn_internimage_{t,s,b}_fpn_1x_coco.py``).

* stem: conv3x3/s2 (C/2) -> LN -> GELU -> conv3x3/s2 (C) -> LN (``layers.ConvStem``);
* four levels of blocks, each block (NHWC) with DCNv3 (:class:`backbones.ops.DCNv3`, kernel 3,
  the level's ``groups``) as token mixer and an MLP (ratio 4, GELU), layer scale (gamma1,
  gamma2; the dense configs set ``layer_scale=1.0``) and drop path. Pre-norm (T)::

      x = x + dp(gamma1 * dcn(norm1(x)));  x = x + dp(gamma2 * mlp(norm2(x)))

  or post-norm (S, B: ``post_norm=True``)::

      x = x + dp(gamma1 * norm1(dcn(x)));  x = x + dp(gamma2 * norm2(mlp(x)))

* after the blocks of a level, a LayerNorm ``levels.i.norm`` only in the pre-norm models
  (T), in the trunk: the next level's downsampling reads it too;
* between levels conv3x3/s2 (no bias) -> LN, owned by the level before (``levels.i.downsample``).

A level's output is its map before the downsampling; the release has no further output norms
(``out_norms`` are Identity). Every LN has eps 1e-6 and computes in float32; the DCNv3 core
samples in float32 under autocast. Any input size: the stride-2 convs pad by 1 (ceil), as
the release; no padding to a multiple is needed.

Parameter counts (backbone): T 28,769,520, S 48,502,560, B 94,909,920, the release's module
instantiated (../shared/reference/remaining_rows.md, section 6.3; tests/test_internimage.py).

Key layout: the release's, with named modules for its Sequential wrappers:
``stem.{conv1,norm1,conv2,norm2}`` (``patch_embed.{conv1,norm1.1,conv2,norm2.1}``),
``levels.i.blocks.j.{norm1,norm2}`` (``.{norm1,norm2}.0``), ``...dcn.{dw_conv,dw_norm}``
(``dcn.dw_conv.{0,1.1}``), ``levels.i.norm`` (``.norm.0``), ``levels.i.downsample.norm``
(``.norm.1``). :meth:`InternImage.convert_pretrained` maps the release's ImageNet checkpoints
(``model``; classifier ``conv_head`` / ``head`` dropped) and the backbone of its Mask R-CNN /
UperNet checkpoints (``state_dict``, prefix ``backbone.``).
"""
import re
from functools import partial

import torch
from timm.layers import DropPath, Mlp
from torch import nn

from ..layers import ConvStem, LayerNorm, run_blocks, stage_drop_path_rates
from ..ops import DCNv3
from .base import DenseBackbone, check_common_args, positive_ints
from .registry import register_backbone

__all__ = ['InternImage', 'InternImageBlock']

NormLayer = partial(LayerNorm, eps=1e-6)  # the release's build_norm_layer default


class InternImageBlock(nn.Module):
    """DCNv3 + MLP with layer scale, pre- or post-norm (the release's ``InternImageLayer``)."""

    def __init__(self, dim, group, mlp_ratio=4., drop_path=0., post_norm=False,
                 layer_scale=1.0, offset_scale=1.0):
        super().__init__()
        self.post_norm = post_norm
        self.norm1 = NormLayer(dim)
        self.dcn = DCNv3(dim, group, kernel_size=3, offset_scale=offset_scale)
        self.norm2 = NormLayer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.gamma1 = nn.Parameter(torch.full((dim,), float(layer_scale)))
        self.gamma2 = nn.Parameter(torch.full((dim,), float(layer_scale)))
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        if self.post_norm:
            x = x + self.drop_path(self.gamma1 * self.norm1(self.dcn(x)))
            return x + self.drop_path(self.gamma2 * self.norm2(self.mlp(x)))
        x = x + self.drop_path(self.gamma1 * self.dcn(self.norm1(x)))
        return x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x)))


class Downsample(nn.Module):
    """conv3x3/s2 without bias, then LN (NHWC in and out)."""

    def __init__(self, dim):
        super().__init__()
        self.conv = nn.Conv2d(dim, 2 * dim, 3, stride=2, padding=1, bias=False)
        self.norm = NormLayer(2 * dim)

    def forward(self, x):
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class InternImageLevel(nn.Module):
    """Blocks, the level norm (pre-norm models only), and the downsampling that follows."""

    def __init__(self, dim, depth, group, drop_path_rates, post_norm, downsample, **block_args):
        super().__init__()
        self.blocks = nn.Sequential(*[
            InternImageBlock(dim, group, drop_path=drop_path_rates[j], post_norm=post_norm,
                             **block_args) for j in range(depth)])
        self.norm = None if post_norm else NormLayer(dim)
        self.downsample = Downsample(dim) if downsample else None

    def forward(self, x, with_cp=False):
        """The level's output (before the downsampling, which the backbone applies)."""
        x = run_blocks(self.blocks, x, with_cp)
        return x if self.norm is None else self.norm(x)


@register_backbone
class InternImage(DenseBackbone):
    """InternImage backbone returning NCHW features at strides 4/8/16/32.

    Args:
        arch (str | dict): 'tiny' | 'small' | 'base', or a dict with ``channels`` (width of
            level 0, doubling per level), ``depths``, ``groups`` (DCNv3 groups per level)
            and optionally ``post_norm`` (default False).
        in_channels (int): input image channels.
        out_indices (Sequence[int]): levels whose outputs are returned.
        mlp_ratio (float): MLP hidden width / channels (4 in the release).
        layer_scale (float): initial value of gamma1 / gamma2 (the dense configs: 1.0).
        offset_scale (float): DCNv3 offset scale (1.0 in the release).
        drop_path_rate (float): stochastic depth of the last block, rising linearly from 0.
        frozen_stages (int): freeze the stem and levels ``< frozen_stages`` (each level with
            its downsampling, as the release groups them); -1: none.
        norm_eval (bool): accepted for config compatibility (no BatchNorm).
        with_cp (bool | Sequence[bool]): activation checkpointing per block.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH_OR_URL)``
            (add ``prefix='backbone.'`` for a released Mask R-CNN / UperNet checkpoint).
    """

    arch_dict_help = 'a dict with channels, depths, groups and optionally post_norm'
    arch_zoo = {  # the release's dense configs (l.16-24) = classification yamls
        'tiny': dict(channels=64, depths=(4, 4, 18, 4), groups=(4, 8, 16, 32), post_norm=False),
        'small': dict(channels=80, depths=(4, 4, 21, 4), groups=(5, 10, 20, 40), post_norm=True),
        'base': dict(channels=112, depths=(4, 4, 21, 4), groups=(7, 14, 28, 56),
                     post_norm=True),
    }

    def __init__(self, arch='tiny', in_channels=3, out_indices=(0, 1, 2, 3), mlp_ratio=4.,
                 layer_scale=1.0, offset_scale=1.0, drop_path_rate=0., frozen_stages=-1,
                 norm_eval=False, with_cp=False, init_cfg=None):
        channels, depths, groups, post_norm = self._parse_arch(arch)
        check_common_args('InternImage', in_channels, drop_path_rate)
        for name, value in (('mlp_ratio', mlp_ratio), ('layer_scale', layer_scale),
                            ('offset_scale', offset_scale)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f'InternImage: {name} must be a positive number, got '
                                 f'{value!r}')
        num_stages = len(depths)
        super().__init__(num_stages, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        dims = tuple(channels * 2 ** i for i in range(num_stages))
        self.depths, self.dims, self.groups, self.post_norm = depths, dims, groups, post_norm

        self.stem = ConvStem(in_channels, channels, NormLayer)
        dpr = stage_drop_path_rates(drop_path_rate, depths)
        self.levels = nn.ModuleList([
            InternImageLevel(dims[i], depths[i], groups[i], dpr[i], post_norm,
                             downsample=i < num_stages - 1, mlp_ratio=mlp_ratio,
                             layer_scale=layer_scale, offset_scale=offset_scale)
            for i in range(num_stages)])
        self._build_out_norms(dims, lambda dim: nn.Identity())  # the release has none

        self.apply(self._init_weights)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch):
        arch = cls.lookup_arch(arch)
        valid = ('channels', 'depths', 'groups', 'post_norm')
        unknown = sorted(set(arch) - set(valid))
        if unknown:
            raise ValueError(f'InternImage: unknown arch keys {unknown}; valid keys: '
                             f'{list(valid)}')
        channels, post_norm = arch.get('channels'), arch.get('post_norm', False)
        depths, groups = tuple(arch.get('depths', ())), tuple(arch.get('groups', ()))
        if not (positive_ints(depths) and positive_ints(groups) and positive_ints((channels,))
                and len(depths) == len(groups) and isinstance(post_norm, bool)):
            raise ValueError(f'InternImage: arch needs channels (int), depths and groups '
                             f'(equally long sequences of positive ints) and a bool post_norm, '
                             f'got {arch!r}')
        dims = [channels * 2 ** i for i in range(len(depths))]
        if channels % 2 or any(d % g for d, g in zip(dims, groups)):
            raise ValueError(f'InternImage: channels must be even (stem) and each level width '
                             f'{dims} divisible by its groups {list(groups)}, got {arch!r}')
        return channels, depths, groups, post_norm

    @staticmethod
    def _init_weights(m):
        # the release: truncated normal for Linear, zero bias; DCNv3's own init on top
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        if isinstance(m, DCNv3):
            m.reset_parameters()

    # ---- DenseBackbone hooks --------------------------------------------------------
    def stage_modules(self, i):
        return [self.levels[i], self.out_norms[i]]

    @classmethod
    def convert_pretrained(cls, state_dict):
        """Map the release's keys onto ours; drop its classifier (``conv_head``, ``head``).

        A checkpoint with no layer scale at all (the release's ImageNet InternImage-T:
        ``LAYER_SCALE`` None) gets gamma1 / gamma2 = 1 for each of its blocks: exactly the
        network it was trained as, and the value the release's dense model starts from
        (``layer_scale=1.0``, non-strict load). A checkpoint with only some gammas is left
        as it is, for the strict loader to name what is missing. Our own layout comes back
        unchanged.
        """
        out = {}
        for key, value in state_dict.items():
            if key.startswith(('conv_head.', 'head.')):
                continue
            for pattern, repl in _RENAMES:
                key = pattern.sub(repl, key)
            out[key] = value
        if not any(re.search(r'\.gamma[12]$', k) for k in out):
            for key in [k for k in out if _BLOCK_NORM1.match(k)]:
                block = key[:-len('norm1.weight')]
                for name in ('gamma1', 'gamma2'):
                    out[block + name] = torch.ones_like(out[key])
        return out

    # ---- forward --------------------------------------------------------------------
    def _run_stages(self, x):
        x = self.stem(x)
        last = self.out_indices[-1]
        for i, level in enumerate(self.levels[:last + 1]):  # skip unused levels
            x = level(x, with_cp=self.with_cp[i])
            if i in self.out_indices:
                yield i, x
            if i < last:
                x = level.downsample(x)


_RENAMES = [(re.compile(p), r) for p, r in (
    (r'^patch_embed\.(conv[12])\.', r'stem.\1.'),
    (r'^patch_embed\.(norm[12])\.1\.', r'stem.\1.'),
    (r'^(levels\.\d+\.blocks\.\d+\.norm[12])\.0\.', r'\1.'),
    (r'^(levels\.\d+\.blocks\.\d+\.dcn)\.dw_conv\.0\.', r'\1.dw_conv.'),
    (r'^(levels\.\d+\.blocks\.\d+\.dcn)\.dw_conv\.1\.1\.', r'\1.dw_norm.'),
    (r'^(levels\.\d+\.norm)\.0\.', r'\1.'),
    (r'^(levels\.\d+\.downsample\.norm)\.1\.', r'\1.'),
)]
_BLOCK_NORM1 = re.compile(r'^levels\.\d+\.blocks\.\d+\.norm1\.weight$')
