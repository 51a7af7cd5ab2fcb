"""Focal Transformer backbones (Focal-T / S / B) for dense prediction (mmdet + mmseg).

Paper: `Focal Self-attention for Local-Global Interactions in Vision Transformers` (Yang et
al., NeurIPS 2021, https://arxiv.org/abs/2107.00641) and its release
(github.com/microsoft/Focal-Transformer @ 57bb303): ``classification/focal_transformer.py``
and ``configs/focal_{tiny,small,base}[_useconv]_patch4_window7_224.yaml``, which fix every
number below. Not FocalNet (timm's ``focalnet_*``), a later model of the same authors.

No dense code was released (``segmentation/get_started.md``: "we follow
Swin-Transformer-Semantic-Segmentation ... will release the model script soon"), so this
dense form is ours, made the way Swin's dense backbone relates to Swin's classifier:

* Blocks as the release's (``x + DP(attn(LN(x)))``, ``x + DP(MLP(LN(x)))``), without its
  fixed ``input_resolution``: each block zero-pads its normalised map at the bottom / right
  to a multiple of the window (the release's own padding, after ``norm1``), attends, and
  crops back. The stem pads the image to a multiple of 4 and each downsampling its map to
  a multiple of 2, so stage maps are ceil(H / 4), ceil(H / 8), ... at any input size.
* Focal attention of one 7x7 window (``window_size``): queries = its tokens; keys = its
  tokens, the ``expand_size``-wide ring of neighbour tokens the release gathers from four
  cyclically rolled maps (132 keys; the roll wraps around the padded map, unmasked, as
  in ImageNet pre-training), and per coarser level k the ``pool_layers[k]`` summaries
  (a learned linear pool of each (7 / 2^k)^2 sub-window) of the ``focal_window``-wide
  neighbourhood of windows (zero keys with a -100 bias outside the map). Relative position
  biases per key group: the Swin table inside the window, a free (heads, 49, 132) table for
  the ring, one table per level for the pooled windows.
* Resolution rule: the release drops the ring (and its table) from a block whose map is
  no larger than the window. At the ImageNet size (224) that is stage 4 (7x7), so the
  released checkpoints have no stage-4 ring table. The zoo mirrors that with
  ``expand_sizes=(3, 3, 3, 0)``: stage 4 attends inside its windows plus its own pooled
  summary (its focal window is 1), at every input size, and the ImageNet checkpoints load
  strictly (a model built for 512 inputs by the release would add untrained stage-4 ring
  tables, +310k / +414k parameters, which the published UperNet Params do not contain:
  results/NOTES.md). At run time a block also drops its ring when the current map is no
  larger than the window, as the release would have built it at that size.
* Outputs: one LayerNorm per stage (Swin's dense ``norm{i}``, our ``out_norms.{i}``), NCHW.

Sizes: ``tiny`` / ``small`` / ``base`` use the release's 4x4 / 2x2 patch-embedding convs;
``*-useconv`` its ``USE_CONV_EMBED`` variant (7x7/s4 stem, 3x3/s2 downsampling), whose
counts are the ones Table 3 publishes. Parameters with the four output norms (checked in
tests/test_focal_transformer.py): tiny 28,112,724, small 50,374,284, base 88,792,192,
tiny-useconv 30,057,588, small-useconv 52,319,148, base-useconv 92,245,504.

Key layout: the release's (``patch_embed.{proj,norm}``, ``layers.i.blocks.j.{pool_layers.k,
norm1, attn.{qkv, proj, relative_position_bias_table, relative_position_bias_table_to_
neighbors, relative_position_bias_table_to_windows.k}, norm2, mlp.fc1, mlp.fc2}``,
``layers.i.downsample.{proj,norm}``) plus ``out_norms.i``; index buffers are recomputed.
"""
import re

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

from ..layers import LayerNorm, run_blocks, stage_drop_path_rates
from .base import DenseBackbone, check_common_args, positive_ints
from .registry import register_backbone

__all__ = ['FocalTransformer', 'FocalBlock', 'FocalAttention']

#: (kernel, stride, padding) of the stem and of the downsampling, per ``conv_embed``
EMBED_CONVS = {False: ((4, 4, 0), (2, 2, 0)), True: ((7, 4, 2), (3, 2, 1))}
#: Key / value bias added where a pooled neighbourhood leaves the map (the release's).
OUTSIDE = -100.


def relative_index(q, k):
    """(q*q, k*k) index into a (q + k - 1)^2 table: the 2-D offset between each token of a
    q x q query window and each cell of a k x k key grid, both row-major."""
    qc = torch.stack(torch.meshgrid(*[torch.arange(q, device='cpu')] * 2, indexing='ij'))
    kc = torch.stack(torch.meshgrid(*[torch.arange(k, device='cpu')] * 2, indexing='ij'))
    qc, kc = qc.flatten(1), kc.flatten(1)
    rel = qc[:, :, None] - kc[:, None, :] + (k - 1)
    return rel[0] * (q + k - 1) + rel[1]


def neighbour_offsets(window, expand):
    """(K, 2) offsets from a window's top-left token of the ring keys, in the release's
    order: the maps rolled by (-e, -e), (-e, e), (e, -e), (e, e), each cut into windows,
    tokens row-major, keeping the tokens that come from outside the window."""
    # on the CPU even under a meta-device context (the boolean indexing needs values)
    r, c = torch.meshgrid(*[torch.arange(window, device='cpu')] * 2, indexing='ij')
    out = []
    for sy, sx in ((-expand, -expand), (-expand, expand), (expand, -expand), (expand, expand)):
        dy, dx = r - sy, c - sx  # torch.roll(t, s)[i] == t[i - s]
        outside = (dy < 0) | (dy >= window) | (dx < 0) | (dx >= window)
        out.append(torch.stack((dy[outside], dx[outside]), 1))
    return torch.cat(out)


def to_windows(x, ws):
    """(B, H, W, C) -> (B * H/ws * W/ws, ws * ws, C), windows and tokens row-major."""
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C)


def from_windows(x, ws, B, H, W):
    x = x.view(B, H // ws, W // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H, W, -1)


def center_to(x, h, w):
    """Crop or zero-pad (B, H, W, C) to (B, h, w, C), the odd row / column at the bottom /
    right (the release's trim / pad before pooling the coarser levels)."""
    dh, dw = h - x.shape[1], w - x.shape[2]
    top, left = int(dh / 2), int(dw / 2)  # towards zero: the smaller half first either way
    return F.pad(x, (0, 0, left, dw - left, top, dh - top)) if dh or dw else x


class FocalAttention(nn.Module):
    """Focal self-attention of each ``window_size`` window of a padded map (NHWC)."""

    def __init__(self, dim, num_heads, window_size=7, expand_size=3, focal_level=2,
                 focal_window=7, qkv_bias=True):
        super().__init__()
        self.dim, self.num_heads, self.window_size = dim, num_heads, window_size
        self.expand_size, self.focal_level, self.focal_window = \
            expand_size, focal_level, focal_window
        self.scale = (dim // num_heads) ** -0.5
        area = window_size ** 2
        # not trained from a non-zero start in the release either: zeros, then the checkpoint
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer('relative_position_index',
                             relative_index(window_size, window_size), persistent=False)
        if expand_size > 0:
            offsets = neighbour_offsets(window_size, expand_size)
            self.register_buffer('neighbour_offsets', offsets, persistent=False)
            self.relative_position_bias_table_to_neighbors = nn.Parameter(
                torch.zeros(1, num_heads, area, len(offsets)))
            nn.init.trunc_normal_(self.relative_position_bias_table_to_neighbors, std=.02)
        self.relative_position_bias_table_to_windows = nn.ParameterList()
        for k in range(focal_level - 1):
            keys = self.pooled_keys(k)
            table = nn.Parameter(torch.zeros(num_heads, (window_size + keys - 1) ** 2))
            nn.init.trunc_normal_(table, std=.02)
            self.relative_position_bias_table_to_windows.append(table)
            self.register_buffer(f'relative_position_index_{k}',
                                 relative_index(window_size, keys), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def pooled_keys(self, k):
        """Side of the pooled-window neighbourhood a window attends to at level k + 1."""
        return self.focal_window + 2 ** k - 1

    def _neighbour_index(self, nh, nw, H, W):
        """(nh * nw * K,) flat positions of every window's ring keys (wrapping around)."""
        off, dev = self.neighbour_offsets, self.neighbour_offsets.device
        rows = (torch.arange(nh, device=dev)[:, None] * self.window_size + off[:, 0]) % H
        cols = (torch.arange(nw, device=dev)[:, None] * self.window_size + off[:, 1]) % W
        return (rows[:, None] * W + cols[None]).flatten()

    def _pooled(self, pooled, k, num_windows):
        """Keys / values (B * windows, kk, 2C), their position bias (heads, area, kk) and
        the outside-the-map bias (windows, kk) of the level-(k + 1) summaries ``pooled``."""
        B, h, w, C = pooled.shape
        step = 2 ** k
        kernel = 2 * (self.focal_window // 2) + 2 * step - 1
        kv = F.linear(pooled, self.qkv.weight[C:], None if self.qkv.bias is None
                      else self.qkv.bias[C:])
        unfold = dict(kernel_size=kernel, stride=step, padding=kernel // 2)
        kv = F.unfold(kv.permute(0, 3, 1, 2), **unfold).view(B, 2 * C, kernel * kernel, -1)
        inside = F.unfold(pooled.new_ones(1, 1, h, w), **unfold)[0].t()  # (windows, k*k)
        if kv.shape[-1] != num_windows:
            raise RuntimeError(f'focal level {k + 1}: {kv.shape[-1]} pooled neighbourhoods '
                               f'for {num_windows} windows')
        kv = kv.permute(0, 3, 2, 1).reshape(B * num_windows, kernel * kernel, 2 * C)
        if k > 0:  # the release keeps the bottom-right (kernel - step + 1)^2 cells
            keep = torch.arange(kernel * kernel, device=kv.device).view(kernel, kernel)
            keep = keep[step - 1:, step - 1:].flatten()
            kv, inside = kv[:, keep], inside[:, keep]
        table = self.relative_position_bias_table_to_windows[k]
        index = getattr(self, f'relative_position_index_{k}')
        bias = table[:, index.flatten()].view(self.num_heads, self.window_size ** 2, -1)
        return kv, bias, (1 - inside) * OUTSIDE

    def forward(self, x, pooled=(), expand=True):
        """``x``: (B, H, W, C) normalised map, H and W multiples of the window; ``pooled``:
        the coarser levels' window summaries (B, h_k, w_k, C); ``expand``: attend to the
        ring of neighbours (if this layer has one). Returns (B, H, W, C)."""
        B, H, W, C = x.shape
        ws, heads, area = self.window_size, self.num_heads, self.window_size ** 2
        nh, nw = H // ws, W // ws
        q, kv = self.qkv(x).split((C, 2 * C), dim=-1)
        q = to_windows(q, ws).view(-1, area, heads, C // heads).transpose(1, 2) * self.scale
        rel = self.relative_position_bias_table[self.relative_position_index.flatten()]
        keys, bias = [to_windows(kv, ws)], [rel.view(area, area, heads).permute(2, 0, 1)]
        if expand and self.expand_size > 0:
            ring = self._neighbour_index(nh, nw, H, W)
            keys.append(kv.reshape(B, H * W, 2 * C)[:, ring].view(B * nh * nw, -1, 2 * C))
            bias.append(self.relative_position_bias_table_to_neighbors[0])
        outside = []
        for k, p in enumerate(pooled):
            kv_k, bias_k, outside_k = self._pooled(p, k, nh * nw)
            keys.append(kv_k)
            bias.append(bias_k)
            outside.append(outside_k)
        n_fine = sum(t.shape[1] for t in keys[:len(keys) - len(outside)])
        k_all, v_all = torch.cat(keys, 1).view(B * nh * nw, -1, 2, heads, C // heads) \
            .permute(2, 0, 3, 1, 4)
        attn = q @ k_all.transpose(-2, -1) + torch.cat(bias, -1)
        if outside:
            N = attn.shape[-1]
            mask = torch.cat([attn.new_zeros(nh * nw, n_fine)] + outside, 1)
            attn = (attn.view(B, nh * nw, heads, area, N) + mask[:, None, None]).view(
                -1, heads, area, N)
        x = (attn.softmax(dim=-1) @ v_all).transpose(1, 2).reshape(-1, area, C)
        return from_windows(self.proj(x), ws, B, H, W)


class FocalBlock(nn.Module):
    """Focal Transformer block (NHWC): pad to the window, focal attention, crop, MLP."""

    def __init__(self, dim, num_heads, window_size=7, expand_size=3, focal_level=2,
                 focal_window=7, mlp_ratio=4., qkv_bias=True, drop_path=0.):
        super().__init__()
        self.window_size, self.focal_level = window_size, focal_level
        # level k + 1 summarises (window / 2^k)^2 sub-windows with one learned weight each
        self.pool_layers = nn.ModuleList([
            nn.Linear((window_size // 2 ** k) ** 2, 1) for k in range(focal_level - 1)])
        self.norm1 = LayerNorm(dim)
        self.attn = FocalAttention(dim, num_heads, window_size, expand_size, focal_level,
                                   focal_window, qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def pool(self, x, k):
        """Level-(k + 1) summaries (B, h, w, C) of the padded map: the map centred on
        ``h * s`` x ``w * s`` (s = window / 2^k, 2^k sub-windows per window side), each
        s x s sub-window pooled by ``pool_layers[k]``."""
        B, H, W, C = x.shape
        s, per = self.window_size // 2 ** k, 2 ** k
        h, w = H // self.window_size * per, W // self.window_size * per
        x = center_to(x, h * s, w * s).view(B, h, s, w, s, C).permute(0, 1, 3, 5, 2, 4)
        return self.pool_layers[k](x.reshape(B, h, w, C, s * s)).squeeze(-1)

    def forward(self, x):
        B, H, W, C = x.shape
        ws = self.window_size
        y = F.pad(self.norm1(x), (0, 0, 0, -W % ws, 0, -H % ws))
        pooled = [self.pool(y, k) for k in range(self.focal_level - 1)]
        y = self.attn(y, pooled, expand=min(H, W) > ws)[:, :H, :W]
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ConvEmbed(nn.Module):
    """Zero-pad (bottom / right) to a multiple of the stride, conv, LN: NCHW in, NHWC out
    (the release's ``PatchEmbed``, used as stem and as downsampling)."""

    def __init__(self, in_chs, out_chs, kernel_size, stride, padding):
        super().__init__()
        self.stride = stride
        self.proj = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding)
        self.norm = LayerNorm(out_chs)

    def forward(self, x):
        H, W = x.shape[-2:]
        if H % self.stride or W % self.stride:
            x = F.pad(x, (0, -W % self.stride, 0, -H % self.stride))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class FocalStage(nn.Module):
    """Focal blocks, then the downsampling into the next stage (None for the last)."""

    def __init__(self, dim, depth, num_heads, drop_path_rates, downsample=None, **block_args):
        super().__init__()
        self.blocks = nn.ModuleList([
            FocalBlock(dim, num_heads, drop_path=drop_path_rates[j], **block_args)
            for j in range(depth)])
        self.downsample = downsample


@register_backbone
class FocalTransformer(DenseBackbone):
    """Focal Transformer backbone returning NCHW features at strides 4/8/16/32.

    Args:
        arch (str | dict): a name from :attr:`arch_zoo` (tiny, small, base, and their
            ``-useconv`` variants), or a dict with ``embed_dim``, ``depths``, ``num_heads``
            and optionally any of ``conv_embed``, ``window_size``, ``focal_levels``,
            ``focal_windows``, ``expand_sizes``, ``mlp_ratio`` (defaults: the zoo's).
        in_channels (int): input image channels.
        out_indices (Sequence[int]): stages whose outputs are returned (each through a LN).
        drop_path_rate (float): stochastic depth of the last block, rising linearly from 0.
        frozen_stages (int): freeze the stem and stages ``< frozen_stages`` (each with the
            downsampling that follows it); -1: none.
        norm_eval (bool): accepted for config compatibility (no BatchNorm).
        with_cp (bool | Sequence[bool]): activation checkpointing per block, all stages or
            per stage; outputs and gradients are unchanged.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads
            the release's ImageNet checkpoint (``focal-*-is224-ws7.pth``) strictly.
    """

    arch_dict_help = 'a dict with embed_dim, depths and num_heads'
    #: the release's focal settings (all six yamls): 7x7 windows, two levels, focal windows
    #: 7 / 5 / 3 / 1, ring 3, but no stage-4 ring (what the 224 pre-training builds)
    focal_defaults = dict(conv_embed=False, window_size=7, focal_levels=(2, 2, 2, 2),
                          focal_windows=(7, 5, 3, 1), expand_sizes=(3, 3, 3, 0), mlp_ratio=4.)
    arch_zoo = {
        'tiny': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
        'small': dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
        'base': dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    }
    arch_zoo.update({f'{name}-useconv': dict(a, conv_embed=True) for name, a in arch_zoo.items()})

    def __init__(self, arch='tiny-useconv', in_channels=3, out_indices=(0, 1, 2, 3),
                 drop_path_rate=0.2, frozen_stages=-1, norm_eval=False, with_cp=False,
                 init_cfg=None):
        cfg = self._parse_arch(arch)
        check_common_args('FocalTransformer', in_channels, drop_path_rate)
        depths = cfg['depths']
        num_stages = len(depths)
        super().__init__(num_stages, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        self.arch_settings = cfg
        dims = self.dims = tuple(cfg['embed_dim'] * 2 ** i for i in range(num_stages))
        stem, down = EMBED_CONVS[cfg['conv_embed']]
        self.patch_embed = ConvEmbed(in_channels, dims[0], *stem)
        dpr = stage_drop_path_rates(drop_path_rate, depths)
        self.layers = nn.ModuleList([FocalStage(
            dims[i], depths[i], cfg['num_heads'][i], dpr[i],
            downsample=ConvEmbed(dims[i], dims[i + 1], *down) if i < num_stages - 1 else None,
            window_size=cfg['window_size'], expand_size=cfg['expand_sizes'][i],
            focal_level=cfg['focal_levels'][i], focal_window=cfg['focal_windows'][i],
            mlp_ratio=cfg['mlp_ratio']) for i in range(num_stages)])
        self._build_out_norms(dims, LayerNorm)

        self.apply(self._init_weights)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch):
        arch = cls.lookup_arch(arch)
        keys = ('embed_dim', 'depths', 'num_heads') + tuple(cls.focal_defaults)
        unknown = sorted(set(arch) - set(keys))
        if unknown:
            raise ValueError(f'FocalTransformer: unknown arch keys {unknown}; valid keys: '
                             f'{sorted(keys)}')
        missing = [k for k in keys[:3] if k not in arch]
        if missing:
            raise ValueError(f'FocalTransformer: arch needs {missing}, got {arch!r}')
        cfg = dict(cls.focal_defaults, **arch)
        depths = cfg['depths'] = tuple(cfg['depths'])
        n = len(depths)
        for key in ('num_heads', 'focal_levels', 'focal_windows', 'expand_sizes'):
            cfg[key] = tuple(cfg[key])
            if len(cfg[key]) != n:
                raise ValueError(f'FocalTransformer: arch {key} needs one value per stage '
                                 f'({n}, as depths), got {cfg[key]}')
        ws, dim = cfg['window_size'], cfg['embed_dim']
        if not positive_ints(depths + cfg['num_heads'] + cfg['focal_levels']
                             + cfg['focal_windows'] + (ws, dim)):
            raise ValueError(f'FocalTransformer: arch embed_dim, depths, num_heads, '
                             f'window_size, focal_levels and focal_windows must be positive '
                             f'ints, got {arch!r}')
        if not isinstance(cfg['conv_embed'], bool):
            raise ValueError(f"FocalTransformer: arch conv_embed must be a bool, got "
                             f"{cfg['conv_embed']!r}")
        for i in range(n):
            heads, level = cfg['num_heads'][i], cfg['focal_levels'][i]
            expand, fw = cfg['expand_sizes'][i], cfg['focal_windows'][i]
            if (dim * 2 ** i) % heads:
                raise ValueError(f'FocalTransformer: stage {i} width {dim * 2 ** i} is not '
                                 f'divisible by its num_heads {heads}')
            if not (isinstance(expand, int) and 0 <= expand < ws):
                raise ValueError(f'FocalTransformer: expand_sizes[{i}] must be an int in '
                                 f'[0, window_size={ws}), got {expand!r}')
            if fw % 2 == 0:
                raise ValueError(f'FocalTransformer: focal_windows[{i}] must be odd (a '
                                 f'centred neighbourhood of windows), got {fw}')
            if ws // 2 ** (level - 2 if level > 1 else 0) < 1:
                raise ValueError(f'FocalTransformer: focal_levels[{i}]={level} pools '
                                 f'sub-windows of window_size / 2^{level - 2} < 1 token')
        return cfg

    @staticmethod
    def _init_weights(m):
        # the release's model-level init: truncated normal for every linear layer (its
        # pool layers' mean init is overwritten by it too), zero bias; convs keep PyTorch's
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ---- DenseBackbone hooks --------------------------------------------------------
    @property
    def stem(self):
        return self.patch_embed

    def stage_modules(self, i):
        return [self.layers[i], self.out_norms[i]]

    @classmethod
    def convert_pretrained(cls, state_dict):
        """Map the release's ImageNet ``model`` dict onto ours: drop the classifier
        (``norm``, ``head``) and the index buffers (``relative_position_index*``,
        ``valid_ind_*``, ``attn_mask``, recomputed here); output norms named as Swin's
        dense backbone (``norm{i}``, the layout the release says its det/seg code follows)
        become ``out_norms.{i}``. Our own layout comes back unchanged."""
        out = {}
        for key, value in state_dict.items():
            if key.startswith(('head.', 'norm.')) or _BUFFER.search(key):
                continue
            out[re.sub(r'^norm(\d+)\.', r'out_norms.\1.', key)] = value
        return out

    # ---- forward --------------------------------------------------------------------
    def _run_stages(self, x):
        x = self.patch_embed(x)
        last = self.out_indices[-1]
        for i, stage in enumerate(self.layers[:last + 1]):  # skip unused stages
            x = run_blocks(stage.blocks, x, self.with_cp[i])
            if i in self.out_indices:
                yield i, x
            if i < last:
                x = stage.downsample(x.permute(0, 3, 1, 2))


_BUFFER = re.compile(r'(^|\.)(relative_position_index(_\d+)?|valid_ind_\w+|attn_mask)$')
