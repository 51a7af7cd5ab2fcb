"""SG-Former backbones (S / M / B) for dense prediction (mmdet + mmseg).

Paper: `SG-Former: Self-guided Transformer with Evolving Token Reallocation` (Ren et al.,
ICCV 2023, https://arxiv.org/abs/2308.12216) and its release (github.com/OliverRensu/SG-Former
@ b982803: ``sgformer.py``, classification only; no det/seg code or config was released).
Neither timm nor mmpretrain ships it.

* Stem (the release's ``Head``): conv3x3/s2 -> GELU -> conv3x3 -> GELU -> conv3x3/s2, each
  conv without bias and followed by GroupNorm(1), then LN (eps 1e-5) on tokens, plus the
  position table ``pos_embed`` (56x56 at 224, trainable, initialised to 2-D sin-cos).
  Between stages (``PatchMerging``): 1x1 -> GELU -> dw 3x3/s2 -> GELU -> 1x1, each + GN(1).
* Block: ``x + DP(attn(LN(x)))``, ``x + DP(mlp(LN(x)))`` (LN eps 1e-6); the MLP is fc1 ->
  GELU(h + dwconv3x3(h)) -> fc2. Every attention adds LePE (linear, then depthwise 3x3) to
  its output before ``proj``. In stages with key pooling ``sr_ratio`` > 1 the blocks
  alternate:

  - even blocks, hybrid-scale attention: half the heads attend globally to the map pooled
    by an sr x sr / stride-sr conv (+ LN + GELU), the other half inside 7x7 windows. The
    block also returns a **significance map**: per token, the attention it receives,
    averaged over heads and queries, from both halves (the global half's map brought back
    to full size by nearest upsampling);
  - odd blocks, significance-guided attention: every head attends to a short sequence made
    by sorting the tokens by that map (ascending; row-major for half the heads, column-major
    for the other half) and pooling consecutive sorted tokens with learned linears ``f1``,
    ``f2``, ``f3``: for sr 8 and 4 the least significant quarter in groups of 196 / 49, the
    middle half in groups of 56 / 14, the top quarter in groups of 28 / 7; for sr 2 the lower
    half in pairs and the upper half token by token (``f1``, ``f2``).

  The last stage (sr 1) has plain global attention.
* Outputs: each stage ends with the release's ``norm{i}`` (LN eps 1e-6, pretrained), which
  also feeds the next stage; the outputs are those maps (``out_norms`` are Identity), NCHW,
  strides 4/8/16/32 (the stride-2 convs pad by 1: ceil(H / 2) per step).

**Any input size** (issue 21). The release only runs where every stage map is a multiple of 7
and its token groups come out whole (224, 448, 224x448; not 512x512 or 800x1344), and its
position table is fixed at 56x56. The generalisation below equals the release wherever the
release runs (tests/test_sgformer.py: 224, 448, 224x448, 112x448) and runs at every size:

1. 7x7 windows: q / k / v maps zero-padded at the bottom / right to a multiple of 7
   (Swin's side), padded keys masked out of the softmax (-inf; every window keeps at least
   one real key), padded queries cropped. Without the mask a window cut by the border would
   spread weight over tokens that do not exist; with it, it is a smaller window. The window
   significance of a key is its attention averaged over the window's real queries only.
2. Token groups: the release splits the N sorted tokens at N // 4 and 3N // 4 (sr 2: N // 2)
   and cuts each part into consecutive groups of the size its linear expects (196 / 56 / 28
   ...: the weights fix it). Here the split is the same and each part is zero-padded at its
   end (its most significant side) to a whole number of groups, i.e. a strided 1-D
   convolution over the sorted sequence with zero padding: the last group of a part may be
   partial, its missing tokens contributing nothing. Where the release runs every part is a
   whole number of groups, there is no padding, and the number of groups,
   ceil(part / group), is the release's ``token1/2/3``.
3. Global half: the sr x sr / stride-sr pooling conv floors the map (as PVT's), and the
   nearest upsampling goes from that pooled size back to H x W: the release's own code,
   which already runs at any size.
4. ``pos_embed``: the 56x56 table resized bicubically (align_corners False, the release's
   ``interpolate_pos_embed``) to the stage-1 map at every forward; at 56x56 it is used as is.

Attention is evaluated with explicit matmuls, op for op as the release, so the significance
maps are the release's bit for bit (tests/test_sgformer.py: stage outputs equal to 0.0 at
every size it runs): the guided blocks sort tokens by them, and the maps have exact and near
ties (tens of equal neighbours in a 56x56 map of a randomly initialised model), which any
other rounding may order differently. The smallest input is 29x29 (stage 1 must be at least
as large as its 8x8 pooling).

Parameters (backbone): S 22,032,981, M 38,176,316, B 77,181,293, the release's module
instantiated without its head (../shared/reference/remaining_rows.md, section 3.4).

Key layout: ``stem.{conv1,conv2,conv3}.{conv,norm}``, ``stem.norm``, ``stem.pos_embed``
(release ``patch_embed1.conv.{0,2,4}.{c,bn}``, ``patch_embed1.norm``, ``pos_embed``),
``stages.i.downsample.conv{1,2,3}.{conv,norm}`` (``patch_embed{i+1}.conv{1,2,3}.{c,bn}``),
``stages.i.blocks.j.*`` (``block{i+1}.j.*``, with ``mlp.dwconv.dwconv`` -> ``mlp.dwconv``),
``stages.i.norm`` (``norm{i+1}``). :meth:`SGFormer.convert_pretrained` maps the release's
ImageNet checkpoints (its timm training script's ``state_dict`` / ``state_dict_ema``; the
classifier ``head`` dropped).
"""
import math
import re

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from timm.layers import DropPath
from torch import nn

from ..engine.checkpoint import load_checkpoint_file
from ..layers import LayerNorm, stage_drop_path_rates
from .base import DenseBackbone, check_common_args, positive_ints
from .registry import register_backbone

__all__ = ['SGFormer', 'HybridScaleAttention', 'SignificanceGuidedAttention',
           'GlobalAttention', 'sincos_pos_embed']

WINDOW = 7  # the local half's window (the release's q_window / window_size)
POS_GRID = 56  # the position table's side: 224 / 4
# key pooling ratio -> group size of each part of the sorted tokens (the release's f1/f2/f3
# in-features, l.65-70): the parts are quarters (1/4, 1/2, 1/4) for three groups, halves for
# two
GROUP_SIZES = {8: (196, 56, 28), 4: (49, 14, 7), 2: (2, 1)}
NEG_INF = float('-inf')


def sincos_pos_embed(dim, grid):
    """(1, grid * grid, dim) 2-D sin-cos table, row-major tokens: the first half of the
    channels encodes the column, the second the row, each as [sin, cos] of pos / 10000^(k / (dim
    / 4)) (MAE's table, which the release uses)."""
    omega = 1. / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    pos = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(pos, pos, indexing='ij')

    def encode(p):
        out = p.reshape(-1, 1) * omega
        return torch.cat([out.sin(), out.cos()], dim=1)
    return torch.cat([encode(cols), encode(rows)], dim=1).float().unsqueeze(0)


class ConvNorm(nn.Sequential):
    """conv (no bias) + GroupNorm(1) (the release's ``Conv2d_BN``, whose norm is a GN)."""

    def __init__(self, in_chs, out_chs, kernel_size=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups,
                              bias=False)
        self.norm = nn.GroupNorm(1, out_chs)


class Stem(nn.Module):
    """Three 3x3 convs (strides 2, 1, 2) with GN, then LN and the position table: NCHW image
    in, tokens (B, N, C) and the map size out."""

    def __init__(self, in_chs, dim):
        super().__init__()
        self.conv1 = ConvNorm(in_chs, dim, 3, 2, 1)
        self.conv2 = ConvNorm(dim, dim, 3, 1, 1)
        self.conv3 = ConvNorm(dim, dim, 3, 2, 1)
        self.act = nn.GELU()
        self.norm = LayerNorm(dim)  # eps 1e-5 (the release's plain nn.LayerNorm)
        self.pos_embed = nn.Parameter(torch.zeros(1, POS_GRID * POS_GRID, dim))

    def position_table(self, H, W):
        """The table for an H x W map: bicubic resize of the 56x56 one (none at 56x56)."""
        if (H, W) == (POS_GRID, POS_GRID):
            return self.pos_embed
        C = self.pos_embed.shape[-1]
        pos = self.pos_embed.reshape(1, POS_GRID, POS_GRID, C).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(H, W), mode='bicubic', align_corners=False)
        return pos.permute(0, 2, 3, 1).flatten(1, 2)

    def forward(self, x):
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        H, W = x.shape[-2:]
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x + self.position_table(H, W), (H, W)


class Downsample(nn.Module):
    """1x1 -> GELU -> dw 3x3/s2 -> GELU -> 1x1, each + GN (the release's ``PatchMerging``);
    tokens in and out."""

    def __init__(self, in_dim, dim):
        super().__init__()
        self.conv1 = ConvNorm(in_dim, dim)
        self.conv2 = ConvNorm(dim, dim, 3, 2, 1, groups=dim)
        self.conv3 = ConvNorm(dim, dim)
        self.act = nn.GELU()

    def forward(self, x, hw):
        B, _, C = x.shape
        x = x.reshape(B, *hw, C).permute(0, 3, 1, 2).contiguous()
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2), tuple(x.shape[-2:])


class ConvMlp(nn.Module):
    """fc1 -> GELU(h + dwconv3x3(h)) -> fc2 on tokens."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, hw):
        x = self.fc1(x)
        B, N, C = x.shape
        conv = self.dwconv(x.transpose(1, 2).view(B, C, *hw)).flatten(2).transpose(1, 2)
        return self.fc2(self.act(x + conv))


class _Attention(nn.Module):
    """What every SG-Former attention has: LePE (linear + dw 3x3 on the block input, added
    before ``proj``) and the output projection."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.lepe_linear = nn.Linear(dim, dim)
        self.lepe_conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def lepe(self, x, hw):
        B, N, C = x.shape
        y = self.lepe_conv(self.lepe_linear(x).transpose(1, 2).view(B, C, *hw))
        return y.view(B, C, -1).transpose(-1, -2)

    def heads(self, t, num_heads):
        """(B, L, num_heads * d) -> (B, num_heads, L, d)."""
        B, L, _ = t.shape
        return t.reshape(B, L, num_heads, -1).permute(0, 2, 1, 3)

    def key_values(self, layer, t, num_heads):
        """``layer(t)`` split into keys and values, (B, num_heads, L, d) each."""
        B, L, _ = t.shape
        kv = layer(t).reshape(B, L, 2, num_heads, -1).permute(2, 0, 3, 1, 4)
        return kv[0], kv[1]

    def attend(self, q, k, v):
        """softmax(q k^T * scale) v and the attention weights."""
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return attn @ v, attn


def _to_windows(t, size):
    """(n, Hp, Wp, d) -> (n * windows, size * size, d), windows row-major."""
    n, Hp, Wp, d = t.shape
    t = t.view(n, Hp // size, size, Wp // size, size, d).permute(0, 1, 3, 2, 4, 5)
    return t.reshape(-1, size * size, d)


def _from_windows(t, size, n, Hp, Wp):
    """(n * windows, size * size, d) -> (n, Hp, Wp, d)."""
    t = t.view(n, Hp // size, Wp // size, size, size, -1).permute(0, 1, 3, 2, 4, 5)
    return t.reshape(n, Hp, Wp, -1)


class HybridScaleAttention(_Attention):
    """Half the heads global over sr-pooled keys, half in 7x7 windows; returns the output and
    the significance map (B, H, W) (the release's ``Attention`` with ``mask is None``)."""

    def __init__(self, dim, num_heads, sr_ratio):
        super().__init__(dim, num_heads)
        self.sr_ratio = sr_ratio
        self.q1 = nn.Linear(dim, dim // 2)
        self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
        self.norm = LayerNorm(dim)  # eps 1e-5 (the release's plain nn.LayerNorm)
        self.act = nn.GELU()
        self.kv1 = nn.Linear(dim, dim)
        self.q2 = nn.Linear(dim, dim // 2)
        self.kv2 = nn.Linear(dim, dim)

    def forward(self, x, hw):
        B, N, C = x.shape
        H, W = hw
        h = self.num_heads // 2
        lepe = self.lepe(x, hw)
        # global half: keys and values of the map pooled by the sr x sr / stride-sr conv
        pooled = self.sr(x.transpose(1, 2).reshape(B, C, H, W))
        pooled_hw = pooled.shape[-2:]
        pooled = self.act(self.norm(pooled.reshape(B, C, -1).permute(0, 2, 1)))
        k1, v1 = self.key_values(self.kv1, pooled, h)
        x1, attn1 = self.attend(self.heads(self.q1(x), h), k1, v1)
        x1 = x1.transpose(1, 2).reshape(B, N, C // 2)
        sig_global = attn1.detach().mean(1).mean(dim=1).view(B, 1, *pooled_hw)
        sig_global = F.interpolate(sig_global, (H, W), mode='nearest')[:, 0]
        # local half: 7x7 windows
        x2, sig_local = self.window_attention(self.heads(self.q2(x), h),
                                              *self.key_values(self.kv2, x, h), hw)
        x = self.proj(torch.cat([x1, x2], dim=-1) + lepe)
        return x, sig_local + sig_global

    def window_attention(self, q, k, v, hw):
        """Attention inside 7x7 windows of (B, h, N, d) maps padded to a multiple of 7 (padded
        keys masked); the output (B, N, h * d) and each key's significance (B, H, W)."""
        B, h, N, d = q.shape
        H, W = hw
        pad_h, pad_w = -H % WINDOW, -W % WINDOW
        Hp, Wp = H + pad_h, W + pad_w
        maps = [t.reshape(B * h, H, W, d) for t in (q, k, v)]
        if pad_h or pad_w:
            maps = [F.pad(t, (0, 0, 0, pad_w, 0, pad_h)) for t in maps]
        q, k, v = (_to_windows(t, WINDOW) for t in maps)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        num_win, size = (Hp // WINDOW) * (Wp // WINDOW), WINDOW * WINDOW
        valid = None
        if pad_h or pad_w:
            valid = torch.zeros(1, Hp, Wp, 1, dtype=torch.bool, device=q.device)
            valid[:, :H, :W] = True
            valid = _to_windows(valid, WINDOW).view(num_win, size)  # (windows, tokens)
            attn = attn.view(-1, num_win, size, size).masked_fill(
                ~valid[None, :, None, :], NEG_INF).view(-1, size, size)
        attn = attn.softmax(dim=-1)
        out = _from_windows(attn @ v, WINDOW, B * h, Hp, Wp)[:, :H, :W]
        out = out.reshape(B, h, H, W, d).permute(0, 2, 3, 1, 4).reshape(B, N, h * d)
        # significance of a key: its attention averaged over heads and the window's queries
        attn = attn.detach().view(B, h, num_win, size, size).mean(1)
        if valid is None:
            sig = attn.mean(dim=2)
        else:  # real queries only
            sig = (attn * valid[:, :, None]).sum(dim=2) / valid.sum(dim=1, keepdim=True)
        sig = sig.view(B, Hp // WINDOW, Wp // WINDOW, WINDOW, WINDOW).permute(0, 1, 3, 2, 4)
        return out, sig.reshape(B, Hp, Wp)[:, :H, :W]


class SignificanceGuidedAttention(_Attention):
    """Every head attends to the tokens sorted by significance and pooled in groups (``f1``,
    ``f2``, ``f3``); half the heads sort row-major, half column-major (the release's
    ``Attention`` built with ``mask=True``)."""

    def __init__(self, dim, num_heads, sr_ratio):
        super().__init__(dim, num_heads)
        self.sr_ratio = sr_ratio
        self.group_sizes = GROUP_SIZES[sr_ratio]
        self.q = nn.Linear(dim, dim)
        self.kv1 = nn.Linear(dim, dim)
        self.kv2 = nn.Linear(dim, dim)
        for i, size in enumerate(self.group_sizes):
            setattr(self, f'f{i + 1}', nn.Linear(size, 1))

    def forward(self, x, hw, significance):
        B, N, C = x.shape
        H, W = hw
        h = self.num_heads // 2
        lepe = self.lepe(x, hw)
        q = self.heads(self.q(x), self.num_heads)
        by_col = x.view(B, H, W, C).permute(0, 2, 1, 3).reshape(B, N, C)
        order_row = torch.sort(significance.reshape(B, N), dim=1)[1]
        order_col = torch.sort(significance.permute(0, 2, 1).reshape(B, N), dim=1)[1]
        k1, v1 = self.key_values(self.kv1, self.pool_groups(x, order_row), h)
        k2, v2 = self.key_values(self.kv2, self.pool_groups(by_col, order_col), h)
        x, _ = self.attend(q, torch.cat([k1, k2], dim=1), torch.cat([v1, v2], dim=1))
        return self.proj(x.transpose(1, 2).reshape(B, N, C) + lepe)

    def pool_groups(self, x, order):
        """Tokens in ``order`` (ascending significance), split into quarters (1/4, 1/2, 1/4)
        or halves, each part pooled in consecutive groups by its linear (the last group of a
        part zero-padded when the part is not a whole number of groups); (B, groups, C)."""
        B, N, C = x.shape
        x = torch.gather(x, 1, order.unsqueeze(-1).expand(-1, -1, C))
        if len(self.group_sizes) == 3:
            bounds = (0, N // 4, N // 4 * 3, N)
        else:
            bounds = (0, N // 2, N)
        pooled = []
        for i, size in enumerate(self.group_sizes):
            part = x[:, bounds[i]:bounds[i + 1]]
            pad = -part.shape[1] % size
            if pad:
                part = F.pad(part, (0, 0, 0, pad))
            fc = getattr(self, f'f{i + 1}')
            pooled.append(fc(part.permute(0, 2, 1).reshape(B, C, -1, size)).squeeze(-1))
        return torch.cat(pooled, dim=-1).permute(0, 2, 1)


class GlobalAttention(_Attention):
    """Plain multi-head attention over all tokens (the last stage, sr 1)."""

    def __init__(self, dim, num_heads):
        super().__init__(dim, num_heads)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)

    def forward(self, x, hw):
        B, N, C = x.shape
        lepe = self.lepe(x, hw)
        x, _ = self.attend(self.heads(self.q(x), self.num_heads),
                           *self.key_values(self.kv, x, self.num_heads))
        return self.proj(x.transpose(1, 2).reshape(B, N, C) + lepe)


class SGBlock(nn.Module):
    """Pre-norm attention + conv MLP on tokens; ``kind`` 'hybrid' | 'guided' | 'global'.
    ``forward(x, hw, significance)`` returns the new tokens and the significance map for the
    next block (hybrid blocks only, else None)."""

    def __init__(self, dim, num_heads, kind, sr_ratio, mlp_ratio=4., drop_path=0.):
        super().__init__()
        self.kind = kind
        self.norm1 = LayerNorm(dim, eps=1e-6)
        if kind == 'hybrid':
            self.attn = HybridScaleAttention(dim, num_heads, sr_ratio)
        elif kind == 'guided':
            self.attn = SignificanceGuidedAttention(dim, num_heads, sr_ratio)
        else:
            self.attn = GlobalAttention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = LayerNorm(dim, eps=1e-6)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))

    def forward(self, x, hw, significance=None):
        significance_out = None
        if self.kind == 'hybrid':
            y, significance_out = self.attn(self.norm1(x), hw)
        elif self.kind == 'guided':
            y = self.attn(self.norm1(x), hw, significance)
        else:
            y = self.attn(self.norm1(x), hw)
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x), hw))
        return x, significance_out


class SGStage(nn.Module):
    """Optional downsampling, the blocks (hybrid / guided alternating where sr > 1, global
    otherwise) and the stage norm (in the trunk: the next stage reads it)."""

    def __init__(self, in_dim, dim, depth, num_heads, sr_ratio, mlp_ratio, drop_path_rates,
                 downsample):
        super().__init__()
        self.downsample = Downsample(in_dim, dim) if downsample else None
        kinds = [('guided' if j % 2 else 'hybrid') if sr_ratio > 1 else 'global'
                 for j in range(depth)]
        self.blocks = nn.ModuleList([
            SGBlock(dim, num_heads, kinds[j], sr_ratio, mlp_ratio, drop_path_rates[j])
            for j in range(depth)])
        self.norm = LayerNorm(dim, eps=1e-6)

    def forward(self, x, hw, with_cp=False):
        if self.downsample is not None:
            x, hw = self.downsample(x, hw)
        significance = None  # a trailing hybrid block's map has no reader
        for block in self.blocks:
            if with_cp and torch.is_grad_enabled():
                x, significance = cp.checkpoint(block, x, hw, significance,
                                                use_reentrant=False)
            else:
                x, significance = block(x, hw, significance)
        return self.norm(x), hw


@register_backbone
class SGFormer(DenseBackbone):
    """SG-Former backbone returning NCHW features at strides 4/8/16/32.

    Args:
        arch (str | dict): 'small' | 'medium' | 'base', or a dict with ``dims``,
            ``num_heads``, ``depths`` (one per stage) and optionally ``sr_ratios`` (key
            pooling per stage, each 8, 4, 2 or 1; default (8, 4, 2, 1)) and ``mlp_ratio``.
        in_channels (int): input image channels.
        out_indices (Sequence[int]): stages whose outputs (after their stage norm) are
            returned.
        drop_path_rate (float): stochastic depth of the last block, rising linearly from 0.
        frozen_stages (int): freeze the stem (with the position table) and stages
            ``< frozen_stages``; -1: none.
        norm_eval (bool): accepted for config compatibility (no BatchNorm).
        with_cp (bool | Sequence[bool]): activation checkpointing per block, all stages or
            per stage; outputs and gradients are unchanged.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads
            the release's ImageNet checkpoint strictly (its EMA weights when it has them, as
            the release evaluates).
    """

    arch_dict_help = 'a dict with dims, num_heads, depths and optionally sr_ratios, mlp_ratio'
    arch_zoo = {  # the release's sgformer_s / _m / _b (sgformer.py l.569-597)
        'small': dict(dims=(64, 128, 256, 512), num_heads=(2, 4, 8, 16), depths=(2, 4, 16, 1)),
        'medium': dict(dims=(64, 128, 256, 512), num_heads=(2, 4, 8, 16),
                       depths=(2, 6, 28, 2)),
        'base': dict(dims=(96, 192, 384, 768), num_heads=(4, 6, 12, 24), depths=(4, 6, 24, 2)),
    }
    ARCH_KEYS = ('depths', 'dims', 'mlp_ratio', 'num_heads', 'sr_ratios')

    def __init__(self, arch='small', in_channels=3, out_indices=(0, 1, 2, 3),
                 drop_path_rate=0.1, frozen_stages=-1, norm_eval=False, with_cp=False,
                 init_cfg=None):
        dims, heads, depths, sr_ratios, mlp_ratio = self._parse_arch(arch)
        check_common_args('SGFormer', in_channels, drop_path_rate)
        num_stages = len(depths)
        super().__init__(num_stages, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        self.dims, self.num_heads, self.depths, self.sr_ratios = dims, heads, depths, sr_ratios

        self.stem = Stem(in_channels, dims[0])
        dpr = stage_drop_path_rates(drop_path_rate, depths)
        self.stages = nn.ModuleList([
            SGStage(dims[i - 1] if i else dims[0], dims[i], depths[i], heads[i], sr_ratios[i],
                    mlp_ratio, dpr[i], downsample=i > 0)
            for i in range(num_stages)])
        self._build_out_norms(dims, lambda dim: nn.Identity())  # the stage norms are in-path

        self.apply(self._init_weights)
        with torch.no_grad():
            self.stem.pos_embed.copy_(sincos_pos_embed(dims[0], POS_GRID))
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch):
        arch = cls.lookup_arch(arch)
        unknown = sorted(set(arch) - set(cls.ARCH_KEYS))
        if unknown:
            raise ValueError(f'SGFormer: unknown arch keys {unknown}; valid keys: '
                             f'{list(cls.ARCH_KEYS)}')
        dims, heads = tuple(arch.get('dims', ())), tuple(arch.get('num_heads', ()))
        depths = tuple(arch.get('depths', ()))
        sr_ratios = tuple(arch.get('sr_ratios', (8, 4, 2, 1)))
        mlp_ratio = arch.get('mlp_ratio', 4.)
        if not (len(dims) == len(heads) == len(depths) == len(sr_ratios)) or \
                not positive_ints(dims + heads + depths):
            raise ValueError(f'SGFormer: arch needs dims, num_heads and depths as positive '
                             f'ints, one per stage (and sr_ratios as long), got {arch!r}')
        if any(sr not in (1, *GROUP_SIZES) for sr in sr_ratios):
            raise ValueError(f'SGFormer: arch sr_ratios must each be 8, 4, 2 (the pooling '
                             f'ratios the release has token groups for) or 1 (global '
                             f'attention), got {sr_ratios!r}')
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) \
                or mlp_ratio <= 0:
            raise ValueError(f'SGFormer: arch mlp_ratio must be a positive number, got '
                             f'{mlp_ratio!r}')
        if dims[0] % 4:
            raise ValueError(f'SGFormer: arch dims[0] must be a multiple of 4 (the 2-D '
                             f'sin-cos position table), got {dims[0]}')
        for i, (dim, h, sr) in enumerate(zip(dims, heads, sr_ratios)):
            if dim % h or (sr > 1 and h % 2):
                raise ValueError(
                    f'SGFormer: stage {i}: dims {dim} must divide into num_heads {h} heads'
                    + (', an even number (the hybrid blocks give half to each branch)'
                       if sr > 1 else ''))
        return dims, heads, depths, sr_ratios, float(mlp_ratio)

    @staticmethod
    def _init_weights(m):
        # as the release: truncated normal for Linear (zero bias), He-normal over fan-out for
        # convs (zero bias); norms start at 1 / 0 (PyTorch's default)
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def stage_sizes(self, H, W):
        """Map size of every stage for an H x W input (each stride-2 conv: ceil)."""
        sizes = []
        for _ in range(2):
            H, W = (H + 1) // 2, (W + 1) // 2
        for i in range(self.num_stages):
            if i:
                H, W = (H + 1) // 2, (W + 1) // 2
            sizes.append((H, W))
        return sizes

    # ---- DenseBackbone hooks --------------------------------------------------------
    def stage_modules(self, i):
        return [self.stages[i], self.out_norms[i]]

    @staticmethod
    def read_checkpoint(path):
        """The release evaluates its EMA weights when the checkpoint has them (main.py l.511:
        ``load_checkpoint(model, args.eval_checkpoint, args.model_ema)``, ``--model-ema``
        on by default, l.189); its training script saves ``state_dict`` and
        ``state_dict_ema`` (checkpoint_saver.py l.99-109)."""
        ckpt = load_checkpoint_file(path)
        if isinstance(ckpt, dict) and isinstance(ckpt.get('state_dict_ema'), dict):
            return {'state_dict': ckpt['state_dict_ema']}
        return ckpt

    @classmethod
    def convert_pretrained(cls, state_dict):
        """Map the release's keys onto ours and drop its classifier (``head``). Keys already
        in our layout come back unchanged; keys of neither layout are passed through for the
        strict loader to name."""
        out = {}
        for key, value in state_dict.items():
            if key.startswith('head.'):
                continue
            for pattern, repl in _RENAMES:
                key = pattern.sub(repl, key)
            out[key] = value
        return out

    # ---- forward --------------------------------------------------------------------
    def _run_stages(self, x):
        H, W = x.shape[-2:]
        for i, ((h, w), sr) in enumerate(zip(self.stage_sizes(H, W), self.sr_ratios)):
            if min(h, w) < sr:
                raise ValueError(f'SGFormer: a {H}x{W} input gives stage {i} a {h}x{w} map, '
                                 f'smaller than its {sr}x{sr} key pooling; inputs must be at '
                                 f'least 29x29 (stage 1 at least 8x8)')
        x, hw = self.stem(x)
        for i, stage in enumerate(self.stages[:self.out_indices[-1] + 1]):  # skip unused
            x, hw = stage(x, hw, with_cp=self.with_cp[i])
            if i in self.out_indices:
                yield i, x.view(x.shape[0], *hw, -1)


def _stage(m):
    return f'stages.{int(m[1]) - 1}'


_RENAMES = [(re.compile(p), r) for p, r in (
    (r'^pos_embed$', 'stem.pos_embed'),
    (r'^patch_embed1\.conv\.0\.', 'stem.conv1.'),
    (r'^patch_embed1\.conv\.2\.', 'stem.conv2.'),
    (r'^patch_embed1\.conv\.4\.', 'stem.conv3.'),
    (r'^patch_embed1\.norm\.', 'stem.norm.'),
    (r'^patch_embed(\d)\.(conv\d)\.', lambda m: f'{_stage(m)}.downsample.{m[2]}.'),
    (r'^block(\d)\.(\d+)\.', lambda m: f'{_stage(m)}.blocks.{m[2]}.'),
    (r'^norm(\d)\.', lambda m: f'{_stage(m)}.norm.'),
    (r'\.mlp\.dwconv\.dwconv\.', '.mlp.dwconv.'),
    (r'^(stem\.conv\d|stages\.\d+\.downsample\.conv\d)\.c\.', r'\1.conv.'),
    (r'^(stem\.conv\d|stages\.\d+\.downsample\.conv\d)\.bn\.', r'\1.norm.'),
)]
