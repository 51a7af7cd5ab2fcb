"""TransNeXt backbones (tiny / small / base) for dense prediction (mmdet + mmseg).

Paper: `TransNeXt: Robust Foveal Visual Perception for Vision Transformers` (Shi, CVPR 2024,
https://arxiv.org/abs/2311.17132) and its release (github.com/DaiShiResearch/TransNeXt @
c8a9974): the pure-PyTorch dense backbones ``detection/maskrcnn/transnext_native.py`` and
``segmentation/upernet/transnext_native.py`` (identical but for the registry and the seg
file's ``is_extrapolation``), the ImageNet model ``classification/transnext.py`` and the det /
seg configs. The release's ``transnext_cuda.py`` computes the same local branch with its
``swattention`` CUDA extension; nothing here needs it. Neither timm nor mmpretrain ships
TransNeXt.

* PVTv2-like pyramid: conv 7x7/s4 + LN stem, conv 3x3/s2 + LN before stages 2-4 (LN eps 1e-5,
  torch's default, as the release's ``OverlapPatchEmbed``), blocks, then a stage LayerNorm
  (eps 1e-6) that is part of the trunk: the next stage reads it, and it is the stage's output
  (``out_norms`` are Identity).
* Block: ``x + DP(attn(LN(x)))``, ``x + DP(ConvGLU(LN(x)))``; ConvGLU: ``fc1`` to two halves
  of ``int(2 * int(C * mlp_ratio) / 3)`` channels, the first through a depthwise 3x3 conv and
  GELU gating the second, then ``fc2``.
* Aggregated attention (stages with ``sr_ratio > 1``): L2-normalised queries plus a learned
  ``query_embedding``, times ``softplus(temperature)`` and ``log(number of keys the token
  sees)``, score against two key sets under **one** softmax: the 3x3 neighbourhood of the
  token (L2-normalised keys, a learned per-offset bias ``relative_pos_bias_local``; offsets
  outside the map masked to -inf) and the pooled map (1x1 conv ``sr`` + GELU, adaptive average
  pooling to ``(H // sr, W // sr)``, LN, the same ``kv`` projection; a position bias from a
  small MLP ``cpb_fc1``/``cpb_fc2``). The local weights also get ``q . learnable_tokens +
  learnable_bias`` (from the unscaled queries) before they weight the values.
* Last stage (``sr_ratio == 1``): full attention over the map, with the same normalised-query
  scaling and MLP position bias.

Position bias (the continuous relative position bias of the pooled keys). The MLP reads the
offset between a query position and a pooled key position (the mean position of its pooling
bin), per axis ``(q - k) / (pretrain_len - 1) * 8`` mapped to ``sign(t) * log2(1 + |t|) / 3``,
where ``pretrain_len`` is the stage's map size at ``pretrain_size`` (224). The release has two
ways to get it for an input of any size, chosen per config:

* interpolation (``is_extrapolation=False``): the bias is generated for the maps of a square
  ``img_size`` input (800 in its det configs, 512 in its seg SS configs, 800 in its seg "ms"
  configs) and bilinearly resized, first over the pooled keys, then over the queries, to the
  actual maps;
* extrapolation (``is_extrapolation=True``, its seg "ms_extrapolation" configs): the bias is
  generated for the actual maps.

The release keeps the interpolation tables as non-persistent buffers made at init and makes
the extrapolation tables anew in every forward. Here nothing size-dependent is stored: both
modes derive their tables from the sizes on every forward. Offsets are separable (the
row offset depends only on the query and key rows), so a stage needs the distinct row and
column offsets (a few hundred values) and two small index maps, not the release's table of
every query-key pair; the bias values are the same. No state can go stale after a size change
and checkpoints hold only parameters. The two modes give the same bias when the maps are
exactly those of ``img_size`` (e.g. 512x512 training crops with ``img_size=512``).

Any input size: no padding; the 3x3 neighbourhoods are zero-padded and masked, pooling is
adaptive. Every stage map must be at least ``sr_ratio`` in both sides (>= 1 pooled token);
smaller inputs are refused before any work.

The attention is explicit matmuls (each query has its own local keys, and the logits carry an
additive bias), so ``tools/get_flops.py`` counts them; it also counts the bias MLP and the
bilinear resizes, which the model runs in every forward.

Key layout (ours): ``stem.{proj,norm}``, ``stages.i.downsample.{proj,norm}`` (i >= 1),
``stages.i.blocks.j.{norm1, attn.*, norm2, mlp.{fc1,dwconv,fc2}}``, ``stages.i.norm``; the
attention keeps the release's names. :meth:`TransNeXt.convert_pretrained` maps the release's
ImageNet checkpoints (``patch_embed{i}``, ``block{i}.j`` with ``mlp.dwconv.dwconv``,
``norm{i}``; classifier ``head`` dropped) and the backbone of its Mask R-CNN / UperNet
checkpoints (the same keys without ``head``).

Backbone parameters (classifier excluded), checked in tests/test_transnext.py: T 27,681,960,
S 49,164,564, B 88,952,496, the release's dense module instantiated.
"""
import math
import re
from functools import partial
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from ..layers import LayerNorm, run_blocks, stage_drop_path_rates
from .base import DenseBackbone, check_common_args, positive_ints
from .registry import register_backbone

__all__ = ['TransNeXt', 'AggregatedAttention', 'FullAttention', 'StageGeometry',
           'stage_geometry']

BlockNorm = partial(LayerNorm, eps=1e-6)  # the release's norm_layer of blocks and stages


# ---- size-dependent tables ---------------------------------------------------------------
class StageGeometry(NamedTuple):
    """What every block of a stage needs to know about its map (all without gradients).

    ``size``: the map (H, W); ``pool``: the pooled key map; ``table``: the maps (query H, W,
    key H, W) the position bias is generated at (the actual ones when extrapolating);
    ``coords``: the MLP's inputs, every pair (row offset, column offset), rows major, of the
    ``num_cols`` distinct column offsets;
    ``index_h`` / ``index_w``: (query, key) -> which distinct row / column offset;
    ``seq_scale``: log of the number of keys each query sees, (N, 1) or a scalar;
    ``pad_mask``: (N, window**2), True where a neighbour falls outside the map (None for
    full attention).
    """
    size: tuple
    pool: tuple
    table: tuple
    coords: torch.Tensor
    num_cols: int
    index_h: torch.Tensor
    index_w: torch.Tensor
    seq_scale: torch.Tensor
    pad_mask: Optional[torch.Tensor]


def _axis_offsets(q_len, k_len, pretrain_len, device):
    """Distinct scaled offsets between ``q_len`` query positions and the ``k_len`` pooled key
    positions along one axis (sorted), and the (q_len, k_len) map into them."""
    q = torch.arange(q_len, dtype=torch.float32, device=device)
    k = F.adaptive_avg_pool1d(q.view(1, 1, -1), k_len).view(-1)  # bin centres
    offsets = (q[:, None] - k[None, :]) / (pretrain_len - 1) * 8
    return torch.unique(offsets, return_inverse=True)


def _log_spaced(t):
    return torch.sign(t) * torch.log2(t.abs() + 1.0) / 3.0  # log2(8) = 3


def _local_window(H, W, window, device):
    """Per token: how many of its window x window neighbours lie inside the map (N, 1), and
    which do not (N, window**2), neighbours row-major."""
    offs = torch.arange(window, device=device) - window // 2
    rows = torch.arange(H, device=device)[:, None] + offs
    cols = torch.arange(W, device=device)[:, None] + offs
    rows, cols = (rows >= 0) & (rows < H), (cols >= 0) & (cols < W)
    inside = (rows[:, None, :, None] & cols[None, :, None, :]).reshape(H * W, window * window)
    return inside.sum(-1, keepdim=True).float(), ~inside


@torch.no_grad()
def stage_geometry(size, sr_ratio, window, pretrain, trained=None, device=None):
    """The :class:`StageGeometry` of a stage map ``size``. ``pretrain``: the stage's map at
    the pretraining size; ``trained``: the map the bias is generated at and resized from
    (interpolation), or None to generate it at ``size`` (extrapolation)."""
    H, W = size
    pool = (H // sr_ratio, W // sr_ratio)
    qh, qw = trained or size
    kh, kw = qh // sr_ratio, qw // sr_ratio
    rows, index_h = _axis_offsets(qh, kh, pretrain[0], device)
    cols, index_w = _axis_offsets(qw, kw, pretrain[1], device)
    coords = torch.stack(torch.meshgrid(_log_spaced(rows), _log_spaced(cols), indexing='ij'),
                         dim=-1).view(-1, 2)
    num_pooled = pool[0] * pool[1]
    if window:
        counts, pad_mask = _local_window(H, W, window, device)
        seq_scale = torch.log(counts + num_pooled)
    else:
        seq_scale, pad_mask = torch.tensor(float(num_pooled), device=device).log(), None
    return StageGeometry(size, pool, (qh, qw, kh, kw), coords, len(cols), index_h.view(-1),
                         index_w.view(-1), seq_scale, pad_mask)


# ---- layers ------------------------------------------------------------------------------
class PatchEmbed(nn.Module):
    """Overlapping conv (kernel ``2 * stride - 1``, 'same' padding) + LN: NCHW or NHWC in,
    NHWC out."""

    def __init__(self, in_chs, dim, stride):
        super().__init__()
        k = 2 * stride - 1
        self.proj = nn.Conv2d(in_chs, dim, k, stride=stride, padding=k // 2)
        self.norm = LayerNorm(dim)  # eps 1e-5, as the release's OverlapPatchEmbed

    def forward(self, x, channels_last=False):
        if channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class ConvGLU(nn.Module):
    """fc1 -> (depthwise 3x3 conv + GELU) * value -> fc2, on NHWC maps."""

    def __init__(self, dim, hidden):
        super().__init__()
        hidden = int(2 * hidden / 3)
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        gate, value = self.fc1(x).chunk(2, dim=-1)
        gate = self.dwconv(gate.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(self.act(gate) * value)


class _ScaledCosineAttention(nn.Module):
    """What both attentions share: per-head temperature and query embedding, and the MLP
    that turns :class:`StageGeometry` offsets into the pooled keys' position bias."""

    def __init__(self, dim, num_heads):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} must be divisible by num_heads {num_heads}')
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        # softplus(temperature) starts at 1 / 0.24
        self.temperature = nn.Parameter(torch.full((num_heads, 1, 1), 1 / 0.24).expm1().log())
        self.query_embedding = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(num_heads, 1, self.head_dim), std=0.02))
        self.cpb_fc1 = nn.Linear(2, 512)
        self.cpb_act = nn.ReLU(inplace=True)
        self.cpb_fc2 = nn.Linear(512, num_heads)
        self.proj = nn.Linear(dim, dim)

    def scale_queries(self, q, geo):
        """(L2-normalised q + query embedding) * softplus(temperature) * log(#keys)."""
        return (q + self.query_embedding) * F.softplus(self.temperature) * geo.seq_scale

    def position_bias(self, geo):
        """(heads, N, pooled N): the MLP bias of every (query, pooled key) pair of the map."""
        heads = self.num_heads
        qh, qw, kh, kw = geo.table
        coords = geo.coords.to(self.cpb_fc1.weight.dtype)  # float32 tables, any model dtype
        table = self.cpb_fc2(self.cpb_act(self.cpb_fc1(coords)))
        table = table.t().reshape(heads, -1, geo.num_cols)
        # two gathers, columns then rows: no index of every query-key pair, and a backward
        # that adds whole rows
        bias = table.index_select(2, geo.index_w).view(heads, -1, qw, kw)
        bias = bias.index_select(1, geo.index_h).view(heads, qh, kh, qw, kw)
        bias = bias.permute(0, 1, 3, 2, 4).reshape(heads, qh * qw, kh, kw)
        H, W = geo.size
        ph, pw = geo.pool
        if (kh, kw) != (ph, pw):  # interpolation mode: resize over the keys, then the queries
            bias = F.interpolate(bias, (ph, pw), mode='bilinear', align_corners=False)
        bias = bias.view(heads, qh, qw, ph * pw)
        if (qh, qw) != (H, W):
            # the keys as the channels of a channels-last map: resized over the queries
            # without a transposed copy
            bias = F.interpolate(bias.permute(0, 3, 1, 2), (H, W), mode='bilinear',
                                 align_corners=False).permute(0, 2, 3, 1)
        return bias.reshape(heads, H * W, ph * pw)

def _neighbours(x, window, dim):
    """(B, H, W, C) -> every token's window x window neighbourhood (zeros outside the map),
    neighbours row-major on a new axis at ``dim`` of (B, H, W, C, *)."""
    H, W = x.shape[1:3]
    r = window // 2
    x = F.pad(x, (0, 0, r, r, r, r))
    return torch.stack([x[:, i:i + H, j:j + W] for i in range(window) for j in range(window)],
                       dim=dim)


class AggregatedAttention(_ScaledCosineAttention):
    """Pixel-focused attention over each token's ``window`` neighbourhood and the map pooled
    by ``sr_ratio``, under one softmax (NHWC in and out)."""

    def __init__(self, dim, num_heads, sr_ratio, window=3):
        super().__init__(dim, num_heads)
        if window % 2 == 0:
            raise ValueError(f'window size must be odd, got {window}')
        self.sr_ratio, self.window = sr_ratio, window
        local = window * window
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.sr = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()
        self.norm = LayerNorm(dim)  # eps 1e-5, as the release
        self.relative_pos_bias_local = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(num_heads, local), std=0.0004))
        self.learnable_tokens = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(num_heads, self.head_dim, local), std=0.02))
        self.learnable_bias = nn.Parameter(torch.zeros(num_heads, 1, local))

    def forward(self, x, geo):
        B, H, W, C = x.shape
        h, d, n = self.num_heads, self.head_dim, H * W
        q = F.normalize(self.q(x).view(B, n, h, d).transpose(1, 2), dim=-1)
        q_scaled = self.scale_queries(q, geo)

        k, v = self.kv(x).chunk(2, dim=-1)
        k = F.normalize(k.view(B, H, W, h, d), dim=-1).view(B, H, W, C)
        k_local = _neighbours(k, self.window, -1).view(B, n, h, d, -1).transpose(1, 2)
        v_local = _neighbours(v, self.window, -2).view(B, n, -1, h, d).permute(0, 3, 1, 2, 4)
        attn_local = (q_scaled.unsqueeze(-2) @ k_local).squeeze(-2) \
            + self.relative_pos_bias_local.unsqueeze(1)
        attn_local = attn_local.masked_fill(geo.pad_mask, float('-inf'))

        pooled = self.act(self.sr(x.permute(0, 3, 1, 2)))
        pooled = self.norm(F.adaptive_avg_pool2d(pooled, geo.pool).flatten(2).transpose(1, 2))
        k_pool, v_pool = self.kv(pooled).view(B, -1, 2, h, d).permute(2, 0, 3, 1, 4)
        attn_pool = q_scaled @ F.normalize(k_pool, dim=-1).transpose(-2, -1) \
            + self.position_bias(geo)

        attn = torch.cat([attn_local, attn_pool], dim=-1).softmax(dim=-1)
        attn_local, attn_pool = attn.split([attn_local.shape[-1], attn_pool.shape[-1]], dim=-1)
        # the local weights also carry a query-dependent term from learned tokens
        attn_local = (q @ self.learnable_tokens) + self.learnable_bias + attn_local
        out = (attn_local.unsqueeze(-2) @ v_local).squeeze(-2) + attn_pool @ v_pool
        return self.proj(out.transpose(1, 2).reshape(B, H, W, C))


class FullAttention(_ScaledCosineAttention):
    """The last stage's attention over the whole map, with the MLP position bias (NHWC)."""

    def __init__(self, dim, num_heads):
        super().__init__(dim, num_heads)
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x, geo):
        B, H, W, C = x.shape
        q, k, v = self.qkv(x).view(B, H * W, 3, self.num_heads, self.head_dim).permute(
            2, 0, 3, 1, 4)
        q = self.scale_queries(F.normalize(q, dim=-1), geo)
        attn = q @ F.normalize(k, dim=-1).transpose(-2, -1) + self.position_bias(geo)
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(B, H, W, C))


class TransNeXtBlock(nn.Module):
    """Pre-norm attention + ConvGLU with drop path (NHWC)."""

    def __init__(self, dim, num_heads, mlp_ratio, sr_ratio, window, drop_path=0.):
        super().__init__()
        self.norm1 = BlockNorm(dim)
        self.attn = FullAttention(dim, num_heads) if sr_ratio == 1 else \
            AggregatedAttention(dim, num_heads, sr_ratio, window)
        self.norm2 = BlockNorm(dim)
        self.mlp = ConvGLU(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x, geo):
        x = x + self.drop_path(self.attn(self.norm1(x), geo))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TransNeXtStage(nn.Module):
    """Optional downsampling, blocks, the stage norm (NHWC in and out). ``trained``: the map
    the position bias is generated at (interpolation) or None (extrapolation);
    ``pretrain``: the map at the pretraining size."""

    def __init__(self, in_dim, dim, depth, num_heads, mlp_ratio, sr_ratio, window,
                 drop_path_rates, downsample, pretrain, trained):
        super().__init__()
        self.sr_ratio, self.window = sr_ratio, window if sr_ratio > 1 else None
        self.pretrain, self.trained = pretrain, trained
        self.downsample = PatchEmbed(in_dim, dim, stride=2) if downsample else None
        self.blocks = nn.ModuleList([
            TransNeXtBlock(dim, num_heads, mlp_ratio, sr_ratio, window, drop_path_rates[j])
            for j in range(depth)])
        self.norm = BlockNorm(dim)

    def forward(self, x, with_cp=False):
        if self.downsample is not None:
            x = self.downsample(x, channels_last=True)
        geo = stage_geometry(x.shape[1:3], self.sr_ratio, self.window, self.pretrain,
                             self.trained, x.device)
        x = run_blocks([partial(b, geo=geo) for b in self.blocks], x, with_cp)
        return self.norm(x)


@register_backbone
class TransNeXt(DenseBackbone):
    """TransNeXt backbone returning NCHW features at strides 4/8/16/32.

    Args:
        arch (str | dict): 'tiny' | 'small' | 'base', or a dict with ``dims``, ``depths``,
            ``num_heads``, ``mlp_ratios`` (one per stage) and optionally ``sr_ratios``
            (default 8, 4, 2, 1; 1 = full attention) and ``window_size`` (default 3).
        img_size (int | tuple): the input size the position bias is generated at and resized
            from (interpolation mode): the release's det configs use 800, its seg SS configs
            512. Ignored with ``is_extrapolation``.
        pretrain_size (int | tuple): the ImageNet input size (224), which scales the offsets.
        is_extrapolation (bool): generate the bias for every input's own maps (the release's
            seg ``ms_extrapolation`` configs) instead of resizing it from ``img_size``.
        in_channels (int): input image channels.
        out_indices (Sequence[int]): stages whose outputs (after their stage norm) are
            returned.
        drop_path_rate (float): stochastic depth of the last block, rising linearly from 0
            (the release hard-codes T 0.4, S 0.6, B 0.7 in its registered classes).
        frozen_stages (int): freeze the stem and stages ``< frozen_stages``; -1: none.
        norm_eval (bool): accepted for config compatibility (no BatchNorm).
        with_cp (bool | Sequence[bool]): activation checkpointing per block, all stages or
            per stage; outputs and gradients are unchanged.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads
            the release's ImageNet checkpoint (or, with ``prefix='backbone.'``, the backbone
            of its Mask R-CNN / UperNet checkpoint) strictly.
    """

    arch_dict_help = 'a dict with dims, depths, num_heads and mlp_ratios'
    # release: transnext_native.py l.493-526 (registered transnext_tiny / small / base)
    arch_zoo = {
        'tiny': dict(dims=(72, 144, 288, 576), depths=(2, 2, 15, 2), num_heads=(3, 6, 12, 24),
                     mlp_ratios=(8, 8, 4, 4)),
        'small': dict(dims=(72, 144, 288, 576), depths=(5, 5, 22, 5), num_heads=(3, 6, 12, 24),
                      mlp_ratios=(8, 8, 4, 4)),
        'base': dict(dims=(96, 192, 384, 768), depths=(5, 5, 23, 5), num_heads=(4, 8, 16, 32),
                     mlp_ratios=(8, 8, 4, 4)),
    }
    ARCH_KEYS = ('dims', 'depths', 'num_heads', 'mlp_ratios', 'sr_ratios', 'window_size')
    new_key_prefixes = ()  # the stage norms are pretrained; nothing is dense-only

    def __init__(self, arch='tiny', img_size=224, pretrain_size=224, is_extrapolation=False,
                 in_channels=3, out_indices=(0, 1, 2, 3), drop_path_rate=0.1,
                 frozen_stages=-1, norm_eval=False, with_cp=False, init_cfg=None):
        dims, depths, heads, mlp_ratios, sr_ratios, window = self._parse_arch(arch)
        check_common_args('TransNeXt', in_channels, drop_path_rate)
        num_stages = len(depths)
        super().__init__(num_stages, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        self.dims, self.depths, self.num_heads, self.sr_ratios = dims, depths, heads, sr_ratios
        self.is_extrapolation = bool(is_extrapolation)
        # the offsets are divided by (pretraining map - 1); a map must pool to >= 1 token
        pretrain = self._stage_sizes('pretrain_size', pretrain_size, [2] * num_stages)
        trained = [None] * num_stages if self.is_extrapolation else \
            self._stage_sizes('img_size', img_size, sr_ratios)
        self.img_size = None if self.is_extrapolation else img_size
        self.pretrain_size = pretrain_size

        self.stem = PatchEmbed(in_channels, dims[0], stride=4)
        dpr = stage_drop_path_rates(drop_path_rate, depths)
        self.stages = nn.ModuleList([
            TransNeXtStage(dims[i - 1] if i else dims[0], dims[i], depths[i], heads[i],
                           mlp_ratios[i], sr_ratios[i], window, dpr[i], downsample=i > 0,
                           pretrain=pretrain[i], trained=trained[i])
            for i in range(num_stages)])
        self._build_out_norms(dims, lambda dim: nn.Identity())

        self.apply(self._init_weights)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch):
        arch = cls.lookup_arch(arch)
        unknown = sorted(set(arch) - set(cls.ARCH_KEYS))
        if unknown:
            raise ValueError(f'TransNeXt: unknown arch keys {unknown}; valid keys: '
                             f'{list(cls.ARCH_KEYS)}')
        dims, depths = tuple(arch.get('dims', ())), tuple(arch.get('depths', ()))
        heads = tuple(arch.get('num_heads', ()))
        mlp_ratios = tuple(arch.get('mlp_ratios', ()))
        sr_ratios = tuple(arch.get('sr_ratios', (8, 4, 2, 1)[:len(depths)]))
        window = arch.get('window_size', 3)
        if not (len(dims) == len(depths) == len(heads) == len(mlp_ratios) == len(sr_ratios)) \
                or not positive_ints(dims + depths + heads + sr_ratios):
            raise ValueError(f'TransNeXt: arch needs dims, depths, num_heads, mlp_ratios (and '
                             f'sr_ratios) with one positive entry per stage, got {arch!r}')
        if not all(isinstance(r, (int, float)) and r > 0 for r in mlp_ratios):
            raise ValueError(f'TransNeXt: arch mlp_ratios must be positive numbers, got '
                             f'{mlp_ratios!r}')
        if not (positive_ints((window,)) and window % 2):
            raise ValueError(f'TransNeXt: arch window_size must be an odd positive int, got '
                             f'{window!r}')
        for i, (dim, h) in enumerate(zip(dims, heads)):
            if dim % h:
                raise ValueError(f'TransNeXt: stage {i}: dims {dim} must divide into '
                                 f'num_heads {h} heads')
        return dims, depths, heads, mlp_ratios, sr_ratios, window

    @staticmethod
    def _stage_sizes(name, value, minimum):
        """Per stage, the map of a ``value`` input (int or (h, w)) as the release computes it
        (``value // 2 ** (i + 2)``), each at least ``minimum[i]`` on both sides."""
        pair = (value, value) if isinstance(value, int) else tuple(value or ())
        if len(pair) != 2 or not positive_ints(pair):
            raise ValueError(f'TransNeXt: {name} must be a positive int or (h, w), got '
                             f'{value!r}')
        sizes = [tuple(s // 2 ** (i + 2) for s in pair) for i in range(len(minimum))]
        for i, (size, least) in enumerate(zip(sizes, minimum)):
            if min(size) < least:
                raise ValueError(f'TransNeXt: {name} {value!r} gives a {size[0]}x{size[1]} map '
                                 f'at stage {i}, smaller than {least}')
        return sizes

    @staticmethod
    def _init_weights(m):
        # as the release: truncated normal linear layers, He-normal (fan out) convs, zero bias
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---- DenseBackbone hooks --------------------------------------------------------
    def stage_modules(self, i):
        return [self.stages[i]]

    @classmethod
    def convert_pretrained(cls, state_dict):
        """Map the release's keys onto ours, dropping the ImageNet classifier (``head``).
        Keys already in our layout come back unchanged; keys of neither layout are passed
        through for the strict loader to name."""
        return {_release_to_own(k): v for k, v in state_dict.items()
                if not k.startswith('head.')}

    # ---- forward --------------------------------------------------------------------
    def _check_input(self, H, W):
        """Refuse inputs whose maps are too small to pool, before any work."""
        h, w = (H - 1) // 4 + 1, (W - 1) // 4 + 1  # the stem: conv 7x7/s4, padding 3
        for i in range(self.out_indices[-1] + 1):
            if i:
                h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
            if min(h, w) < self.sr_ratios[i]:
                raise ValueError(
                    f'TransNeXt: a {H}x{W} input gives a {h}x{w} map at stage {i}, smaller '
                    f'than its pooling ratio {self.sr_ratios[i]}; use a larger input')

    def _run_stages(self, x):
        self._check_input(*x.shape[2:])
        x = self.stem(x)
        for i, stage in enumerate(self.stages[:self.out_indices[-1] + 1]):  # skip unused
            x = stage(x, with_cp=self.with_cp[i])
            if i in self.out_indices:
                yield i, x


_RELEASE_RULES = (
    (re.compile(r'patch_embed1\.'), lambda m: 'stem.'),
    (re.compile(r'patch_embed(\d)\.'), lambda m: f'stages.{int(m[1]) - 1}.downsample.'),
    (re.compile(r'block(\d)\.(\d+)\.'), lambda m: f'stages.{int(m[1]) - 1}.blocks.{m[2]}.'),
    (re.compile(r'norm(\d)\.'), lambda m: f'stages.{int(m[1]) - 1}.norm.'),
)


def _release_to_own(key):
    for pattern, repl in _RELEASE_RULES:
        m = pattern.match(key)
        if m:
            return (repl(m) + key[m.end():]).replace('.mlp.dwconv.dwconv.', '.mlp.dwconv.')
    return key
