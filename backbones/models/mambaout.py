"""MambaOut backbone for dense prediction (mmdet + mmseg).

Paper: `MambaOut: Do We Really Need Mamba for Vision?` (Yu & Wang, 2024,
https://arxiv.org/abs/2405.07992), Section 4.1, Algorithm 1 and Table 4. The network is a
4-stage stack of Gated CNN blocks (a Mamba block without the SSM) behind a two-conv stem,
with a 3x3 stride-2 conv + LayerNorm between stages. For detection / segmentation the
authors "add LN for outputs of backbone at each stage"; those norms are ``out_norms`` here.

Why this module owns its code instead of wrapping ``timm.models.mambaout``:

* What a dense backbone needs sits *between* timm's modules: per-block activation
  checkpointing with ``use_reentrant=False`` (timm's ``checkpoint_seq`` picks its own
  mode), per-stage output norms, frozen stages, early exit after the last requested stage,
  and an explicit float32 LayerNorm under autocast. Wrapping would mean patching timm
  internals that the pinned range (timm >=1.0.20,<1.1) has already changed (constructor
  signatures, ``device``/``dtype`` plumbing), so a timm upgrade could silently change
  the network under a trained checkpoint.
* The paper's network is ~150 lines of plain torch; the state-dict key names are ours to
  guarantee. We use timm's layout (``stem.*``, ``stages.S.downsample.*``,
  ``stages.S.blocks.B.*``), so timm checkpoints map 1:1 and the official release maps by
  renaming (:meth:`MambaOut.convert_pretrained`).
* Equivalence is proven, not assumed: tests/test_mambaout.py loads timm's weights and
  compares every stage output with timm's ``features_only`` model to 1e-5.

timm's ``*_rw`` variants (norm-first downsampling, LayerScale, no stem mid-norm, SiLU) are
not the paper's models and are deliberately not supported.
"""
from functools import partial

import torch
from timm.layers import DropPath
from torch import nn

from ..layers import ConvDownsample, ConvStem, LayerNorm, run_blocks, stage_drop_path_rates
from .base import DenseBackbone, check_common_args, positive_ints
from .registry import register_backbone

__all__ = ['MambaOut']


NormLayer = partial(LayerNorm, eps=1e-6)  # as the official release (and timm) use


class GatedCNNBlock(nn.Module):
    """Gated CNN block (Algorithm 1), NHWC.

    fc1 expands to 2 x hidden channels, split into gate / identity / conv parts; only the
    conv part (``conv_ratio`` x dim channels, partial channels for speed as in
    InceptionNeXt) goes through the depthwise conv; out = fc2(GELU(gate) * [identity, conv]).
    """

    def __init__(self, dim, expansion_ratio=8 / 3, kernel_size=7, conv_ratio=1.0,
                 drop_path=0.):
        super().__init__()
        hidden = int(expansion_ratio * dim)
        conv_chs = int(conv_ratio * dim)
        self.split_sizes = (hidden, hidden - conv_chs, conv_chs)
        self.norm = NormLayer(dim)
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.act = nn.GELU()
        self.conv = nn.Conv2d(conv_chs, conv_chs, kernel_size, padding=kernel_size // 2,
                              groups=conv_chs)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        gate, ident, c = torch.split(self.fc1(self.norm(x)), self.split_sizes, dim=-1)
        c = self.conv(c.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.drop_path(self.fc2(self.act(gate) * torch.cat((ident, c), dim=-1)))


class MambaOutStage(nn.Module):
    """Optional downsampling, then Gated CNN blocks (NHWC in and out)."""

    def __init__(self, in_chs, out_chs, depth, drop_path_rates, downsample=True, **block_args):
        super().__init__()
        self.downsample = ConvDownsample(in_chs, out_chs, NormLayer) if downsample \
            else nn.Identity()
        self.blocks = nn.Sequential(*[
            GatedCNNBlock(out_chs, drop_path=drop_path_rates[j], **block_args)
            for j in range(depth)])

    def forward(self, x, with_cp=False):
        return run_blocks(self.blocks, self.downsample(x), with_cp)


@register_backbone
class MambaOut(DenseBackbone):
    """MambaOut backbone returning NCHW features at strides 4/8/16/32.

    Args:
        arch (str | dict): a size name from :attr:`arch_zoo` (femto, kobe, tiny, small,
            base) or ``dict(depths=(...), dims=(...))``.
        in_channels (int): input image channels.
        out_indices (Sequence[int]): stages whose outputs are returned.
        expansion_ratio (float): MLP ratio of the Gated CNN block (paper: 8/3).
        kernel_size (int): depthwise conv kernel of the token mixer (paper: 7).
        conv_ratio (float): fraction of channels that go through the depthwise conv.
        drop_path_rate (float): stochastic depth of the last block; it rises linearly
            from 0 over all blocks of the network.
        frozen_stages (int): freeze the stem and stages ``< frozen_stages`` (-1: none).
        norm_eval (bool): accepted for config compatibility; MambaOut has no BatchNorm
            and LayerNorm keeps no running statistics, so it changes nothing.
        with_cp (bool | Sequence[bool]): activation checkpointing of every block, for all
            stages or per stage; outputs and gradients are unchanged.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH_OR_URL)``
            loads an ImageNet checkpoint (official release or timm format) strictly.
    """

    #: Sizes by name (Table 4 of the paper; kobe is the official 24-block release).
    arch_dict_help = 'dict(depths=..., dims=...)'
    arch_zoo = {
        'femto': dict(depths=(3, 3, 9, 3), dims=(48, 96, 192, 288)),
        'kobe': dict(depths=(3, 3, 15, 3), dims=(48, 96, 192, 288)),
        'tiny': dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 576)),
        'small': dict(depths=(3, 4, 27, 3), dims=(96, 192, 384, 576)),
        'base': dict(depths=(3, 4, 27, 3), dims=(128, 256, 512, 768)),
    }

    def __init__(self, arch='tiny', in_channels=3, out_indices=(0, 1, 2, 3),
                 expansion_ratio=8 / 3, kernel_size=7, conv_ratio=1.0, drop_path_rate=0.,
                 frozen_stages=-1, norm_eval=False, with_cp=False, init_cfg=None):
        depths, dims = self._parse_arch(arch)
        num_stages = len(depths)
        _check_args(dims, in_channels, expansion_ratio, kernel_size, conv_ratio,
                    drop_path_rate)
        super().__init__(num_stages, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        self.depths, self.dims = depths, dims

        self.stem = ConvStem(in_channels, dims[0], NormLayer)
        dpr = stage_drop_path_rates(drop_path_rate, depths)
        self.stages = nn.ModuleList()
        for i in range(num_stages):
            self.stages.append(MambaOutStage(
                dims[i - 1] if i else dims[0], dims[i], depths[i],
                drop_path_rates=dpr[i], downsample=i > 0,
                expansion_ratio=expansion_ratio, kernel_size=kernel_size,
                conv_ratio=conv_ratio))
        self._build_out_norms(dims, NormLayer)

        self.apply(self._init_weights)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch):
        arch = cls.lookup_arch(arch)
        if set(arch) != {'depths', 'dims'}:
            raise ValueError(f'MambaOut: arch must be one of {", ".join(cls.arch_zoo)} or a '
                             f"dict with exactly the keys 'depths' and 'dims', got {arch!r}")
        depths, dims = tuple(arch['depths']), tuple(arch['dims'])
        if len(depths) != len(dims) or not positive_ints(depths + dims):
            raise ValueError(f'MambaOut: arch depths and dims must be equally long sequences '
                             f'of positive ints, got depths={depths}, dims={dims}')
        return depths, dims

    @staticmethod
    def _init_weights(m):
        # as the official release: truncated normal for conv / linear, zero bias
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---- DenseBackbone hooks --------------------------------------------------------
    def stage_modules(self, i):
        return [self.stages[i], self.out_norms[i]]

    @classmethod
    def convert_pretrained(cls, state_dict):
        """Map an ImageNet checkpoint onto this module's keys, dropping the classifier.

        Official release: ``downsample_layers.0.*`` (stem), ``downsample_layers.N.*``
        (downsampling before stage N), ``stages.S.B.*``, ``norm.*`` + ``head.*``
        (classifier). timm: ``stem.*``, ``stages.S.downsample.*``, ``stages.S.blocks.B.*``,
        ``head.*`` (its final norm is ``head.norm``). A dict in our own layout (timm's plus
        ``out_norms.*``) comes back unchanged, so converting twice is harmless. Keys of
        neither layout are passed through for the strict loader to name.
        """
        official = any(k.startswith('downsample_layers.') for k in state_dict)
        out = {}
        for key, value in state_dict.items():
            if key.startswith('head.') or (official and key.startswith('norm.')):
                continue  # classifier: pooled-feature norm and MLP head
            if official:
                key = _official_to_own(key)
            out[key] = value
        return out

    # ---- forward --------------------------------------------------------------------
    def _run_stages(self, x):
        x = self.stem(x)
        for i, stage in enumerate(self.stages[:self.out_indices[-1] + 1]):  # skip unused
            x = stage(x, with_cp=self.with_cp[i])
            if i in self.out_indices:
                yield i, x


# ---- helpers ---------------------------------------------------------------------------
def _official_to_own(key):
    parts = key.split('.')
    if parts[0] == 'downsample_layers':  # downsample_layers.0 = stem, .N precedes stage N
        n = int(parts[1])
        return '.'.join((['stem'] if n == 0 else ['stages', str(n), 'downsample']) + parts[2:])
    if parts[0] == 'stages' and len(parts) > 2 and parts[2].isdigit():  # stages.S.B.x
        return '.'.join(parts[:2] + ['blocks'] + parts[2:])
    return key


def _check_args(dims, in_channels, expansion_ratio, kernel_size, conv_ratio, drop_path_rate):
    check_common_args('MambaOut', in_channels, drop_path_rate)
    if not (isinstance(kernel_size, int) and kernel_size > 0 and kernel_size % 2 == 1):
        raise ValueError(f'MambaOut: kernel_size must be a positive odd int (same-size '
                         f'depthwise conv), got {kernel_size!r}')
    for dim in dims:
        hidden, conv_chs = int(expansion_ratio * dim), int(conv_ratio * dim)
        if not 0 < conv_chs <= hidden:
            raise ValueError(
                f'MambaOut: need 0 < int(conv_ratio * dim) <= int(expansion_ratio * dim) for '
                f'every stage dim, got conv_ratio={conv_ratio}, expansion_ratio='
                f'{expansion_ratio}, dim={dim}')
