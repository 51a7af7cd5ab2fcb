"""LocalVMamba backbones (tiny / small) for dense prediction (mmdet + mmseg).

Paper: `LocalMamba: Visual State Space Model with Windowed Selective Scan` (Huang et al.,
2024, https://arxiv.org/abs/2403.09338) and its public release (github.com/hunto/LocalMamba,
``classification/lib/models/local_vmamba.py``, ``.../mamba/multi_mamba.py`` and
``.../mamba/local_scan.py``), which fixes everything below.

LocalVMamba is VMamba V0 (:mod:`backbones.models.vmamba`: the same 4x4/s4 stem, patch merging,
SS2D with d_state 16, ssm_ratio 2, z gate, no MLP) with two changes inside SS2D:

* **Local scan routes.** Each block scans the map along four of eight directions, chosen
  per block by the paper's search (:data:`DIRECTIONS`): ``h`` (row-major), ``v``
  (column-major), ``w2`` / ``w7`` (the map cut into 2x2 / 7x7 windows, windows visited
  row-major and tokens row-major inside each), each also reversed (``*_flip``). They are
  registered scan routes (``local_h`` ... ``local_w7_flip``), i.e. index maps.
* **Per-direction channel gate.** Every direction's output, put back in map order, is
  multiplied by a channel gate (LN -> mean over tokens -> Linear Di -> Di/8 -> GELU ->
  Linear -> sigmoid) shared by the four directions, then the four are summed. The paper
  calls it SCAttn (spatial + channel); the release's code is channel-only, and so is ours.

Two release behaviours kept on purpose (both documented in :class:`LocalScan`):

* Windowed scans on maps not divisible by the window are **zero-padded** at the bottom /
  right: the padded zero tokens are part of the scanned sequence (the state decays across
  them) and are cropped after the reverse; shorter sequences of a block are right-padded
  with zeros to the longest (harmless: the scan is causal). ``positions`` of the registered
  routes is the pad-free permutation (what generic consumers such as the fused Triton path
  can run); LocalVMamba's SS2D runs the padded sequences of :meth:`LocalScan.sequences`.
* The release's reverse of ``v`` / ``v_flip`` reads the column-major sequence as if it were
  row-major (``(h w) -> (w h)`` instead of ``(w h) -> (h w)``): on non-square maps the
  vertical directions come back spatially scrambled. COCO and ADE20K whole-image maps are
  non-square, so the release's det/seg numbers were produced that way. We reverse
  correctly by default; ``release_v_reverse=True`` reproduces the release. Both agree on
  square maps (all of ImageNet pre-training).

Parameter counts (backbone with its four output norms): T 24,759,504, S 48,980,880; the
release's classifiers minus head 24,758,160 / 48,979,536 (checked in
tests/test_localvmamba.py). Key layout: VMamba's (``patch_embed.{proj,norm}``,
``layers.i.blocks.j.{norm,op}``, ``layers.i.downsample``) plus
``layers.i.blocks.j.op.channel_gate.{norm,global_reduce,channel_select}`` for the release's
``op.multi_scan.attn.*``; :meth:`LocalVMamba.convert_pretrained` maps the release's
``state_dict`` (bare keys) onto it.
"""
import math
import re
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import LayerNorm, stage_drop_path_rates
from ..ops import backend_names
from ..ops.routes import SCAN_ROUTES, ScanRoute, register_scan_route
from .base import DenseBackbone, check_common_args, positive_ints
from .registry import register_backbone
from .vmamba import SS2D, PatchEmbed, PatchMerging, VMamba, VSSStage

__all__ = ['LocalVMamba', 'LocalSS2D', 'LocalScan', 'DIRECTIONS']

#: The release's direction vocabulary (``MultiScan.ALL_CHOICES``).
ALL_DIRECTIONS = ('h', 'h_flip', 'v', 'v_flip', 'w2', 'w2_flip', 'w7', 'w7_flip')


def _blocks(*rows):
    return tuple(tuple(r.split()) for r in rows)


#: The searched directions, one entry per block in order (stages concatenated), exactly as
#: released (``local_vssm_tiny`` / ``local_vssm_small``; identical in the det/seg configs).
DIRECTIONS = {
    'tiny': _blocks(
        'h h_flip w7 w7_flip', 'h_flip v_flip w2 w2_flip',                       # stage 1
        'h_flip v_flip w2_flip w7', 'h_flip v v_flip w2',                         # stage 2
        'h h_flip v_flip w2_flip', 'h_flip v_flip w2 w2_flip', 'h w2_flip w7 w7_flip',
        'h h_flip v v_flip', 'h v_flip w7 w7_flip', 'h_flip v w2 w7_flip',
        'v v_flip w2 w7_flip', 'h h_flip v_flip w2_flip', 'v_flip w2_flip w7 w7_flip',  # 3
        'h_flip v_flip w2_flip w7_flip', 'h_flip v w7 w7_flip'),                  # stage 4
    'small': _blocks(
        'h v v_flip w7_flip', 'h h_flip v w7',                                    # stage 1
        'h_flip v v_flip w7', 'h_flip v w2_flip w7',                              # stage 2
        'h_flip v w2_flip w7', 'h_flip v_flip w2 w7_flip', 'h_flip v v_flip w7',  # stage 3
        'h v v_flip w7', 'h v v_flip w7', 'h v v_flip w7_flip', 'h h_flip v v_flip',
        'h v v_flip w2', 'v v_flip w2_flip w7', 'h h_flip v w2', 'h_flip v v_flip w7_flip',
        'h h_flip v v_flip', 'h v v_flip w7_flip', 'h v v_flip w7_flip', 'h h_flip v_flip w7',
        'h_flip v_flip w2_flip w7', 'h_flip v v_flip w7_flip', 'v v_flip w7 w7_flip',
        'h v v_flip w7_flip', 'h_flip v v_flip w2', 'h v v_flip w2_flip', 'h h_flip v w7',
        'h h_flip w7 w7_flip', 'h v_flip w2 w2_flip', 'h v_flip w2 w7',
        'h v v_flip w7_flip', 'h_flip v w2_flip w7',
        'h_flip v_flip w7 w7_flip', 'h v w7 w7_flip'),                            # stage 4
}


# ---------------------------------------------------------------------------------------
# Scan routes: one registered route per direction, a LocalScan per block
# ---------------------------------------------------------------------------------------
class LocalRoute(ScanRoute):
    """One LocalVMamba direction (K = 1). ``window``: None (whole map) or the window size;
    ``column``: column-major (``v``); ``flip``: the sequence reversed."""
    num_routes = 1
    window = None
    column = False
    flip = False

    def sequence(self, H, W):
        """(Lp,) LongTensor: the release's sequence as flat row-major positions, -1 for the
        zero tokens of a window-padded map (Lp = H*W unless a window does not divide)."""
        pos = torch.arange(H * W).view(H, W)
        if self.window is None:
            seq = (pos.t() if self.column else pos).flatten()
        else:
            w = self.window
            hg, wg = math.ceil(H / w), math.ceil(W / w)
            grid = torch.full((hg * w, wg * w), -1, dtype=torch.long)
            grid[:H, :W] = pos
            seq = grid.view(hg, w, wg, w).permute(0, 2, 1, 3).flatten()  # windows, then tokens
        return seq.flip(0) if self.flip else seq

    def positions(self, H, W):
        seq = self.sequence(H, W)
        return seq[seq >= 0][None]  # pad-free: a permutation of the H*W positions

    def maps(self, H, W, device='cpu', release_v_reverse=False):
        """(sequence with ``H*W`` for a zero token, (H*W,) sequence index each map position
        reads back), cached per size and device on this (shared) route like ``index``."""
        release_v_reverse = bool(release_v_reverse and self.column)
        key = (int(H), int(W), torch.device(device), release_v_reverse)
        if '_maps' not in self.__dict__:
            self._maps = OrderedDict()
        cache = self._maps
        if key in cache:
            cache.move_to_end(key)
        else:
            seq = self.sequence(H, W)
            if release_v_reverse:
                unscan = _release_v_unscan(H, W, self.flip)
            else:
                real = (seq >= 0).nonzero().flatten()
                unscan = torch.empty(H * W, dtype=torch.long)
                unscan[seq[real]] = real
            seq = torch.where(seq < 0, H * W, seq)
            cache[key] = (seq.to(key[2]), unscan.to(key[2]))
            if len(cache) > self.index_cache_size:
                cache.popitem(last=False)
        return cache[key]


for _d in ALL_DIRECTIONS:
    _base = _d.split('_')[0]
    register_scan_route(f'local_{_d}')(type(f'LocalRoute_{_d}', (LocalRoute,), dict(
        __doc__=f'LocalVMamba direction {_d!r}.', window=int(_base[1:]) if _base[0] == 'w'
        else None, column=_base == 'v', flip=_d.endswith('_flip'))))


def _release_v_unscan(H, W, flip):
    """Sequence index per map position of the release's ``v`` / ``v_flip`` reverse:
    ``rearrange(y, 'b d (h w) -> b d (w h)')`` on a sequence that is really ``(w h)``."""
    p = torch.arange(H * W)
    q = (p % H) * W + p // H
    return H * W - 1 - q if flip else q


class LocalScan(ScanRoute):
    """The four directions of one block as one route (K = len(directions)).

    ``positions`` / ``scan`` / ``merge`` are the generic pad-free form (each direction a
    permutation). The release's exact form, which :class:`LocalSS2D` runs:

    * :meth:`sequences`: (K, Lmax) positions, ``H*W`` standing for a zero token (window
      padding, then right padding to the longest sequence), so ``scan_padded`` is one gather
      from the map with one zero appended;
    * :meth:`unscan_index`: (K, H*W) sequence index that each map position reads back, the
      release's reverse (with ``release_v_reverse``: its scrambled ``v`` / ``v_flip``).
    """

    def __init__(self, directions, release_v_reverse=False):
        unknown = [d for d in directions if d not in ALL_DIRECTIONS]
        if unknown or not directions:
            raise ValueError(f'LocalScan: directions must be a non-empty sequence of '
                             f'{ALL_DIRECTIONS}, got {tuple(directions)!r}')
        self.directions = tuple(directions)
        self.release_v_reverse = bool(release_v_reverse)
        self.routes = [SCAN_ROUTES[f'local_{d}'] for d in self.directions]
        self.num_routes = len(self.routes)
        self.name = f"local[{','.join(self.directions)}]" + ('+release_v' * release_v_reverse)

    def __repr__(self):
        return f'LocalScan({self.name})'

    def positions(self, H, W):
        return torch.cat([r.positions(H, W) for r in self.routes])

    def _maps(self, H, W, device):
        return [r.maps(H, W, device, self.release_v_reverse) for r in self.routes]

    def sequences(self, H, W, device='cpu'):
        """(K, Lmax): each direction's sequence, right-padded with zero tokens (``H*W``)."""
        seqs = [seq for seq, _ in self._maps(H, W, device)]
        L = max(len(q) for q in seqs)
        return torch.stack([F.pad(q, (0, L - len(q)), value=H * W) for q in seqs])

    def unscan_index(self, H, W, device='cpu'):
        """(K, H*W): the sequence index that each map position reads back."""
        return torch.stack([unscan for _, unscan in self._maps(H, W, device)])

    def scan_padded(self, x):
        """(B, C, H, W) -> (B, K, C, Lmax): the release's sequences, zero tokens included."""
        B, C, H, W = x.shape
        flat = torch.cat([x.flatten(2), x.new_zeros(B, C, 1)], dim=2)
        return flat[:, :, self.sequences(H, W, x.device)].transpose(1, 2)

    def unscan(self, ys, H, W):
        """(B, K, C, Lmax) -> (B, K, C, H*W): each direction back in map order, pads cropped."""
        B, K, C, _ = ys.shape
        idx = self.unscan_index(H, W, ys.device)
        return ys.gather(3, idx[None, :, None].expand(B, K, C, H * W))


# ---------------------------------------------------------------------------------------
# SS2D with the local routes and the per-direction channel gate
# ---------------------------------------------------------------------------------------
class ChannelGate(nn.Module):
    """The release's ``BiAttn`` (channel branch only): x * sigmoid(W2 GELU(W1 mean(LN(x))))
    over the tokens of each sequence; (..., L, C) in and out."""

    def __init__(self, dim, ratio=0.125):
        super().__init__()
        hidden = int(dim * ratio)
        self.norm = LayerNorm(dim)
        self.global_reduce = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.channel_select = nn.Linear(hidden, dim)

    def forward(self, x):
        g = self.norm(x).mean(-2, keepdim=True)
        return x * torch.sigmoid(self.channel_select(self.act(self.global_reduce(g))))


class LocalSS2D(SS2D):
    """SS2D over the block's :class:`LocalScan` directions: padded local sequences ->
    selective scan (fp32) -> each direction reversed -> shared :class:`ChannelGate` -> sum."""

    def __init__(self, dim, directions=ALL_DIRECTIONS[:4], release_v_reverse=False, **kwargs):
        super().__init__(dim, scan_route=LocalScan(directions, release_v_reverse), **kwargs)
        self.channel_gate = ChannelGate(self.d_inner)

    def ssm(self, x):
        B, D, H, W = x.shape
        ys = self.scan_sequences(self.route.scan_padded(x))                 # (B, K, D, Lmax)
        ys = self.route.unscan(ys, H, W).transpose(-1, -2)                  # (B, K, HW, D)
        y = self.channel_gate(ys).sum(1)                                    # (B, HW, D)
        return y.view(B, H, W, D)


# ---------------------------------------------------------------------------------------
# The backbone
# ---------------------------------------------------------------------------------------
@register_backbone
class LocalVMamba(VMamba):
    """LocalVMamba backbone returning NCHW features at strides 4/8/16/32.

    Args:
        arch (str | dict): 'tiny' | 'small', or a dict with ``depths``, ``embed_dim`` (or
            ``dims``) and ``directions`` (one sequence of directions for every block, or a
            single one for all; default ``('h', 'h_flip', 'v', 'v_flip')``).
        in_channels (int): input image channels.
        out_indices (Sequence[int]): stages whose outputs are returned (each through a LN).
        drop_path_rate (float): stochastic depth of the last block, rising linearly from 0.
        frozen_stages (int): freeze the stem and stages ``< frozen_stages``; -1: none.
        norm_eval (bool): accepted for config compatibility (no BatchNorm).
        with_cp (bool | Sequence[bool]): activation checkpointing, all stages or per stage.
        scan_backend (str): selective-scan backend ('auto' | 'torch' | 'mamba_ssm' |
            'triton'); the routes run as gathers around it (the per-direction gate sits
            between the scan and the merge, so the fused routed kernel does not apply).
        release_v_reverse (bool): reproduce the release's scrambled reverse of the ``v`` /
            ``v_flip`` directions on non-square maps (its det/seg numbers were made with
            it); False (default) reverses them correctly. Same on square maps.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH_OR_URL)``
            loads the release's classification checkpoint strictly.
    """

    #: The release's V0 block settings (``VSSM`` defaults used by local_vssm_*).
    block_settings = dict(d_state=16, ssm_ratio=2.0, dt_rank='auto', conv_bias=True, gate=True)
    arch_dict_help = 'a dict with depths, embed_dim / dims and directions'
    arch_zoo = {
        'tiny': dict(depths=(2, 2, 9, 2), embed_dim=96, directions=DIRECTIONS['tiny']),
        'small': dict(depths=(2, 2, 27, 2), embed_dim=96, directions=DIRECTIONS['small']),
    }

    def __init__(self, arch='tiny', in_channels=3, out_indices=(0, 1, 2, 3),
                 drop_path_rate=0.2, frozen_stages=-1, norm_eval=False, with_cp=False,
                 scan_backend='auto', release_v_reverse=False, init_cfg=None):
        depths, dims, directions = self._parse_arch(arch)
        check_common_args('LocalVMamba', in_channels, drop_path_rate)
        if scan_backend not in backend_names():
            raise ValueError(f'LocalVMamba: unknown scan_backend {scan_backend!r}; valid: '
                             f'{backend_names()}')
        num_stages = len(depths)
        DenseBackbone.__init__(self, num_stages, out_indices=out_indices,
                               frozen_stages=frozen_stages, norm_eval=norm_eval,
                               with_cp=with_cp, init_cfg=init_cfg)
        self.depths, self.dims, self.directions = depths, dims, directions
        self.arch_settings = dict(self.block_settings, depths=depths, dims=dims)

        self.patch_embed = PatchEmbed(in_channels, dims[0])  # V0's floor stem, as released
        dpr = stage_drop_path_rates(drop_path_rate, depths)
        self.layers = nn.ModuleList()
        for i in range(num_stages):
            first = sum(depths[:i])
            self.layers.append(VSSStage(
                dims[i], depths[i], dpr[i],
                downsample=PatchMerging(dims[i], dims[i + 1]) if i < num_stages - 1 else None,
                per_block=[dict(directions=d) for d in directions[first:first + depths[i]]],
                op_layer=LocalSS2D, release_v_reverse=release_v_reverse,
                scan_backend=scan_backend, mlp_ratio=0., **self.block_settings))
        self._build_out_norms(dims, LayerNorm)

        self.apply(self._init_weights)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch):
        arch = cls.lookup_arch(arch)
        unknown = sorted(set(arch) - {'depths', 'embed_dim', 'dims', 'directions'})
        if unknown:
            raise ValueError(f'LocalVMamba: unknown arch keys {unknown}; valid keys: '
                             f"['depths', 'dims', 'directions', 'embed_dim']")
        depths = tuple(arch.get('depths', ()))
        if 'dims' in arch:
            dims = tuple(arch['dims'])
        else:
            dims = tuple(int(arch.get('embed_dim', 0)) * 2 ** i for i in range(len(depths)))
        if len(dims) != len(depths) or not positive_ints(depths + dims):
            raise ValueError(f'LocalVMamba: arch needs depths and embed_dim (or dims of the '
                             f'same length) as positive ints, got {arch!r}')
        directions = arch.get('directions', ('h', 'h_flip', 'v', 'v_flip'))
        if directions and isinstance(directions[0], str):
            directions = (tuple(directions),) * sum(depths)
        directions = tuple(tuple(d) for d in directions)
        if len(directions) != sum(depths):
            raise ValueError(f'LocalVMamba: arch directions must give one sequence per block '
                             f'({sum(depths)}), got {len(directions)}')
        for d in directions:
            LocalScan(d)  # validates the names
        return depths, dims, directions

    @classmethod
    def convert_pretrained(cls, state_dict):
        """Map the release's ``state_dict`` (bare ``VSSM`` keys: ``patch_embed.0/.2``,
        ``layers.i.blocks.j.op.multi_scan.attn.*``, ``classifier.*``; ``outnorm<i>`` in its
        det/seg backbones) onto ours; VMamba's mapping does the rest."""
        renamed = {re.sub(r'^(layers\.\d+\.blocks\.\d+\.op)\.multi_scan\.attn\.',
                          r'\1.channel_gate.', k): v for k, v in state_dict.items()}
        return super().convert_pretrained(renamed)
