"""UniFormer backbones (small / base) for dense prediction (mmdet + mmseg).

Paper: `UniFormer: Unifying Convolution and Self-attention for Visual Recognition` (Li et
al., ICLR 2022 / TPAMI 2023, https://arxiv.org/abs/2201.09450) and its public release
(github.com/Sense-X/UniFormer @ 52a0415: ``semantic_segmentation/mmseg/models/backbones/
uniformer.py``, identical to ``object_detection/mmdet/models/backbones/uniformer.py``, and
``image_classification/models/uniformer.py``), which fixes everything below:

* Four stages behind non-overlapping patch embeddings (conv k4/s4, then k2/s2, each + LN;
  a plain strided conv, so H % 4 / W % 4 trailing rows and columns are dropped, as the
  release does), widths (64, 128, 320, 512), one head per 64 channels.
* Stages 1-2: convolutional blocks (``ConvBlock``, the release's ``CBlock``): a 3x3
  depthwise position conv, then BN -> 1x1 -> 5x5 depthwise -> 1x1 as the token mixer and
  BN -> 1x1 conv MLP, all NCHW. The BatchNorms keep running statistics (``norm_eval``).
* Stages 3-4: attention blocks (``AttnBlock``, the release's ``SABlock`` and
  ``SABlock_Windows``, which share their parameters): the same position conv, then
  LN -> multi-head self-attention and LN -> MLP on tokens.
* Each returned stage goes through a LayerNorm (eps 1e-6): ``norm1..4`` in the release's
  det/seg models, ``out_norms.0..3`` here.

**Stage-3 attention, train vs eval.** The release trains its UperNet models with global
attention in stage 3 (``exp/upernet_global_*/config.py``: ``hybrid=False``) and reports
them with "hybrid" windows (``test_config_h32.py``: ``hybrid=True, window_size=32``): blocks
with (i + 1) % 4 == 0 stay global, the others attend inside 32x32 windows, the map zero-
padded at the right / bottom (after the block's first LN) to a multiple of 32 and cropped
back. Its detectors train and test with ``h14``. Here ``attn_mode`` is the stage-3
attention in training and ``eval_attn_mode`` the one in eval mode (``model.eval()``, i.e.
validation and testing), each ``'global'``, ``'w<N>'`` (all blocks in NxN windows) or
``'h<N>'`` (hybrid); one config then does what the release's pair of configs does.

Parameters (backbone with its four output norms, = the release's seg ``UniFormer``): S
21,033,280, B 49,264,576 (tests/test_uniformer.py). Key layout, timm style: ``stem.*``
(``patch_embed1``), ``stages.i.downsample.*`` (``patch_embed{i+1}``),
``stages.i.blocks.j.*`` (``blocks{i+1}.j``, names inside a block unchanged),
``out_norms.i`` (``norm{i+1}``); :meth:`UniFormer.convert_pretrained` maps the release's
ImageNet checkpoints (dropping their final BN ``norm`` and ``head``) and the backbones of
its det/seg checkpoints.
"""
import contextlib
import re
from functools import partial

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from timm.layers import DropPath, Mlp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import LayerNorm, stage_drop_path_rates
from .base import DenseBackbone, check_common_args, positive_ints
from .registry import register_backbone

__all__ = ['UniFormer', 'parse_attn_mode']

#: The stage whose attention ``attn_mode`` / ``eval_attn_mode`` set (the release's blocks3).
WINDOW_STAGE = 2


def parse_attn_mode(mode, depth, name='attn_mode'):
    """Window size of each of ``depth`` stage-3 blocks (None: global attention) for
    ``'global'``, ``'w<N>'`` (every block in NxN windows) or ``'h<N>'`` (hybrid: blocks with
    (i + 1) % 4 == 0 global, the others in NxN windows, as the release's ``hybrid=True``)."""
    match = re.fullmatch(r'([wh])([1-9]\d*)', mode) if isinstance(mode, str) else None
    if mode == 'global':
        return (None,) * depth
    if match is None:
        raise ValueError(f"UniFormer: {name} must be 'global', 'w<N>' (NxN windows) or "
                         f"'h<N>' (hybrid: every 4th block global, NxN windows otherwise), "
                         f'got {mode!r}')
    size = int(match[2])
    if match[1] == 'w':
        return (size,) * depth
    return tuple(None if (i + 1) % 4 == 0 else size for i in range(depth))


class PatchEmbed(nn.Module):
    """Non-overlapping kxk/sk conv + LN (eps 1e-5, the release's default), NCHW in and out."""

    def __init__(self, in_chs, out_chs, patch_size):
        super().__init__()
        self.proj = nn.Conv2d(in_chs, out_chs, patch_size, stride=patch_size)
        self.norm = LayerNorm(out_chs)

    def forward(self, x):
        return self.norm(self.proj(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvBlock(nn.Module):
    """The release's ``CBlock`` (NCHW): position conv, local token mixer, conv MLP."""

    def __init__(self, dim, mlp_ratio=4., drop_path=0., norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = norm_layer(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), use_conv=True)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, window_size=None):
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Attention(nn.Module):
    """Multi-head self-attention over (B, N, C) tokens, scale head_dim ** -0.5. Written
    with explicit matmuls (as the release) so that the FLOP counter sees them."""

    def __init__(self, dim, num_heads, qkv_bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class AttnBlock(nn.Module):
    """The release's ``SABlock`` / ``SABlock_Windows`` (NCHW in and out): position conv,
    LN -> attention (global, or inside ``window_size`` windows), LN -> MLP."""

    def __init__(self, dim, num_heads, mlp_ratio=4., qkv_bias=True, drop_path=0.):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x, window_size=None):
        x = (x + self.pos_embed(x)).permute(0, 2, 3, 1)  # NHWC
        x = x + self.drop_path(self._attend(self.norm1(x), window_size))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2)

    def _attend(self, x, window_size):
        B, H, W, C = x.shape
        if window_size is None:
            return self.attn(x.reshape(B, H * W, C)).view(B, H, W, C)
        # as SABlock_Windows: zero tokens (after the LN) fill the right / bottom up to a
        # multiple of the window, and take part in the attention; cropped afterwards
        ws = window_size
        x = F.pad(x, (0, 0, 0, -W % ws, 0, -H % ws))
        hg, wg = x.shape[1] // ws, x.shape[2] // ws
        x = x.view(B, hg, ws, wg, ws, C).transpose(2, 3).reshape(B * hg * wg, ws * ws, C)
        x = self.attn(x).view(B, hg, wg, ws, ws, C).transpose(2, 3)
        return x.reshape(B, hg * ws, wg * ws, C)[:, :H, :W]


class UniFormerStage(nn.Module):
    """Optional patch embedding (downsampling), then the stage's blocks (NCHW)."""

    def __init__(self, in_chs, out_chs, depth, drop_path_rates, conv, downsample=True,
                 num_heads=1, mlp_ratio=4., qkv_bias=True, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.downsample = PatchEmbed(in_chs, out_chs, 2) if downsample else nn.Identity()
        if conv:
            make = partial(ConvBlock, out_chs, mlp_ratio, norm_layer=norm_layer)
        else:
            make = partial(AttnBlock, out_chs, num_heads, mlp_ratio, qkv_bias)
        self.blocks = nn.ModuleList([make(drop_path=r) for r in drop_path_rates[:depth]])

    def forward(self, x, window_sizes, with_cp=False):
        x = self.downsample(x)
        for block, window_size in zip(self.blocks, window_sizes):
            if with_cp and torch.is_grad_enabled():
                # run_blocks' checkpointing, plus: the recomputation in backward must not
                # update the BatchNorms' running statistics a second time
                x = cp.checkpoint(block, x, window_size, use_reentrant=False,
                                  context_fn=partial(_recompute_keeps_bn_stats, block))
            else:
                x = block(x, window_size)
        return x


@register_backbone
class UniFormer(DenseBackbone):
    """UniFormer backbone returning NCHW features at strides 4/8/16/32.

    Args:
        arch (str | dict): 'small' | 'base', or ``dict(depths=(...), dims=(...))`` with
            optional ``head_dim`` (64) and ``conv_stages`` (2: stages before it are
            convolutional, the others attention).
        in_channels (int): input image channels.
        out_indices (Sequence[int]): stages whose outputs are returned (each through a LN).
        attn_mode (str): stage-3 attention in training (and in eval unless
            ``eval_attn_mode`` is set): 'global', 'w<N>' (NxN windows) or 'h<N>' (hybrid:
            blocks with (i + 1) % 4 == 0 global, NxN windows otherwise).
        eval_attn_mode (str, optional): stage-3 attention in eval mode (validation,
            testing), same forms; None: as ``attn_mode``. The release's Table 3 setting
            is ``attn_mode='global', eval_attn_mode='h32'``.
        mlp_ratio (float): MLP expansion of every block.
        qkv_bias (bool): bias of the attention's qkv projection.
        drop_path_rate (float): stochastic depth of the last block, rising linearly from 0.
        norm_cfg (dict, optional): norm of the convolutional blocks: ``dict(type='BN')``
            (default: None) as the release, whose BatchNorms keep per-GPU statistics under
            DDP, or ``dict(type='SyncBN')`` (statistics over all GPUs).
        frozen_stages (int): freeze the stem and stages ``< frozen_stages``; -1: none.
        norm_eval (bool): keep the convolutional blocks' BatchNorms in eval mode (frozen
            running statistics) while training.
        with_cp (bool | Sequence[bool]): activation checkpointing of every block, for all
            stages or per stage; outputs, gradients and BatchNorm statistics are unchanged.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH_OR_URL)``
            loads the release's ImageNet checkpoint (or, with ``prefix='backbone.'``, the
            backbone of its det/seg checkpoints) strictly.
    """

    arch_dict_help = 'dict(depths=..., dims=..., [head_dim=64, conv_stages=2])'
    arch_zoo = {
        'small': dict(depths=(3, 4, 8, 3), dims=(64, 128, 320, 512)),
        'base': dict(depths=(5, 8, 20, 7), dims=(64, 128, 320, 512)),
    }

    def __init__(self, arch='small', in_channels=3, out_indices=(0, 1, 2, 3),
                 attn_mode='global', eval_attn_mode=None, mlp_ratio=4., qkv_bias=True,
                 drop_path_rate=0., norm_cfg=None, frozen_stages=-1,
                 norm_eval=False, with_cp=False, init_cfg=None):
        depths, dims, head_dim, conv_stages = self._parse_arch(arch)
        check_common_args('UniFormer', in_channels, drop_path_rate)
        norm_layer = _conv_norm_layer(norm_cfg)
        num_stages = len(depths)
        super().__init__(num_stages, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        self.depths, self.dims, self.conv_stages = depths, dims, conv_stages
        self.attn_mode = attn_mode
        self.eval_attn_mode = attn_mode if eval_attn_mode is None else eval_attn_mode
        self.train_windows = self._windows(attn_mode, 'attn_mode')
        self.eval_windows = self._windows(self.eval_attn_mode, 'eval_attn_mode')

        self.stem = PatchEmbed(in_channels, dims[0], 4)
        dpr = stage_drop_path_rates(drop_path_rate, depths)
        self.stages = nn.ModuleList([UniFormerStage(
            dims[i - 1] if i else dims[0], dims[i], depths[i], dpr[i], conv=i < conv_stages,
            downsample=i > 0, num_heads=dims[i] // head_dim, mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias, norm_layer=norm_layer) for i in range(num_stages)])
        self._build_out_norms(dims, partial(LayerNorm, eps=1e-6))

        self.apply(self._init_weights)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch):
        arch = cls.lookup_arch(arch)
        unknown = sorted(set(arch) - {'depths', 'dims', 'head_dim', 'conv_stages'})
        if unknown:
            raise ValueError(f'UniFormer: unknown arch keys {unknown}; valid keys: '
                             f"['conv_stages', 'depths', 'dims', 'head_dim']")
        depths, dims = tuple(arch.get('depths', ())), tuple(arch.get('dims', ()))
        head_dim, conv_stages = arch.get('head_dim', 64), arch.get('conv_stages', 2)
        if len(depths) != len(dims) or not positive_ints(depths + dims + (head_dim,)):
            raise ValueError(f'UniFormer: arch depths and dims must be equally long sequences '
                             f'of positive ints (head_dim a positive int), got {arch!r}')
        if len(depths) <= WINDOW_STAGE or not (isinstance(conv_stages, int)
                                               and 0 <= conv_stages <= WINDOW_STAGE):
            raise ValueError(f'UniFormer: arch needs more than {WINDOW_STAGE} stages and '
                             f'conv_stages in [0, {WINDOW_STAGE}] (stage {WINDOW_STAGE + 1} '
                             f'is the attention stage with windows), got {arch!r}')
        bad = [d for d in dims[conv_stages:] if d % head_dim]
        if bad:
            raise ValueError(f'UniFormer: attention stage dims must be multiples of head_dim '
                             f'{head_dim}, got {bad}')
        return depths, dims, head_dim, conv_stages

    def _windows(self, mode, name):
        """Window size of every block of every stage (None: global / no attention)."""
        return tuple(parse_attn_mode(mode, d, name) if i == WINDOW_STAGE else (None,) * d
                     for i, d in enumerate(self.depths))

    @staticmethod
    def _init_weights(m):
        # as the release: truncated normal for linear layers, zero bias; convs and norms
        # keep the PyTorch default
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---- DenseBackbone hooks --------------------------------------------------------
    def stage_modules(self, i):
        return [self.stages[i], self.out_norms[i]]

    @classmethod
    def convert_pretrained(cls, state_dict):
        """Map the release's keys onto ours: ``patch_embed1`` -> ``stem``,
        ``patch_embed{k}`` -> ``stages.{k-1}.downsample``, ``blocks{k}.j`` ->
        ``stages.{k-1}.blocks.j``, ``norm{k}`` (det/seg output norms) -> ``out_norms.{k-1}``;
        the ImageNet model's final BatchNorm ``norm`` and classifier ``head`` are dropped.
        Our own keys match none of these, so converting twice changes nothing; keys of
        neither layout pass through for the strict loader to name."""
        out = {}
        for key, value in state_dict.items():
            if key.startswith(('norm.', 'head.')):
                continue
            out[_release_to_own(key)] = value
        return out

    # ---- forward --------------------------------------------------------------------
    def _run_stages(self, x):
        windows = self.train_windows if self.training else self.eval_windows
        x = self.stem(x)
        for i, stage in enumerate(self.stages[:self.out_indices[-1] + 1]):  # skip unused
            x = stage(x, windows[i], with_cp=self.with_cp[i])
            if i in self.out_indices:
                yield i, x.permute(0, 2, 3, 1)


def _recompute_keeps_bn_stats(module):
    """``context_fn`` of a checkpointed block: nothing around the forward; around its
    recomputation, the BatchNorm buffers (running mean / var, counter) are put back as they
    were, so with_cp leaves the same statistics as a plain forward."""
    return contextlib.nullcontext(), _restored_buffers(
        [m for m in module.modules() if isinstance(m, _BatchNorm)])


@contextlib.contextmanager
def _restored_buffers(modules):
    saved = [(b, b.clone()) for m in modules for b in m.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def _conv_norm_layer(norm_cfg):
    kinds = {'BN': nn.BatchNorm2d, 'SyncBN': nn.SyncBatchNorm}
    cfg = dict(type='BN') if norm_cfg is None else norm_cfg
    if not (isinstance(cfg, dict) and set(cfg) <= {'type', 'requires_grad'}
            and cfg.get('type') in kinds and cfg.get('requires_grad', True) is True):
        raise ValueError(f"UniFormer: norm_cfg must be dict(type='BN') or dict(type='SyncBN') "
                         f'(optionally requires_grad=True), got {norm_cfg!r}')
    return kinds[cfg['type']]


def _release_to_own(key):
    m = re.match(r'(patch_embed|blocks|norm)([1-9])\.(.*)', key)
    if m is None:
        return key
    kind, stage, rest = m[1], int(m[2]) - 1, m[3]
    if kind == 'norm':
        return f'out_norms.{stage}.{rest}'
    if kind == 'blocks':
        return f'stages.{stage}.blocks.{rest}'
    return f'stem.{rest}' if stage == 0 else f'stages.{stage}.downsample.{rest}'
