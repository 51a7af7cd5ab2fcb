"""TransNeXt dense backbones (backbones/models/transnext.py) and their det/seg configs.

Reference values come from outside the code under test: the official release
(github.com/DaiShiResearch/TransNeXt @ c8a9974: ``detection/maskrcnn/transnext_native.py``,
``segmentation/upernet/transnext_native.py``, ``classification/transnext.py`` and the det / seg
configs) for the sizes, the key layouts and the position-bias rules; parameter counts were
measured on the release's modules (../shared/reference/remaining_rows.md, section 2.4). The
aggregated attention is checked against a float64 evaluation written out here, one query
and one neighbour at a time; the slow test runs the release's own modules from its pinned
snapshot against ours.
"""
import importlib.util
import math
import os.path as osp
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from backbones.engine.checkpoint import CheckpointError
from backbones.layers import LayerNorm
from backbones.models.transnext import (
    AggregatedAttention,
    FullAttention,
    TransNeXt,
    stage_geometry,
)
from conftest import REPO, call_tool, randomize_, release_source

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')

RELEASE = ('DaiShiResearch/TransNeXt', 'c8a99743b60ac94ac8d2bf66ffe164a440dcfe21')
# the release's dense TransNeXt (transnext_tiny / small / base), instantiated
BACKBONE_PARAMS = {'tiny': 27_681_960, 'small': 49_164_564, 'base': 88_952_496}
# whole models: the release's backbone + mmdet 3.3 / mmseg 1.2 default heads
MODEL_PARAMS = {
    'mask-rcnn_transnext-t_fpn_8xb2-amp-1x_coco.py': 47_863_704,
    'mask-rcnn_transnext-s_fpn_8xb2-amp-1x_coco.py': 69_346_308,
    'mask-rcnn_transnext-b_fpn_8xb2-amp-1x_coco.py': 109_226_400,
    'upernet_transnext-t_8xb2-amp-160k_ade20k-512x512.py': 58_517_972,
    'upernet_transnext-s_8xb2-amp-160k_ade20k-512x512.py': 80_000_576,
    'upernet_transnext-b_8xb2-amp-160k_ade20k-512x512.py': 121_373_660,
}
# the release's no-decay keys (det and seg configs, paramwise_cfg.custom_keys)
NO_DECAY_KEYS = ('query_embedding', 'relative_pos_bias_local', 'cpb', 'temperature', 'norm')
# cheap model (the release's pooling ratios 8, 4, 2, 1: inputs of at least 29 pixels)
MINI = dict(dims=(16, 24, 32, 48), depths=(1, 1, 2, 1), num_heads=(2, 2, 4, 4),
            mlp_ratios=(4, 4, 4, 4))


def _blocks(model):
    return [b for stage in model.stages for b in stage.blocks]


@pytest.fixture
def exact_layernorm(monkeypatch):
    """The suite's LayerNorm computes in float32 whatever the input; float64 checks of the
    attention math use torch's own (the same function in the input's precision)."""
    monkeypatch.setattr(LayerNorm, 'forward', torch.nn.LayerNorm.forward)


# ---- sizes and shapes -------------------------------------------------------------------
@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_params_and_layout_are_the_releases(arch):
    with torch.device('meta'):
        model = TransNeXt(arch)
    assert sum(p.numel() for p in model.parameters()) == BACKBONE_PARAMS[arch]
    depths = {'tiny': (2, 2, 15, 2), 'small': (5, 5, 22, 5), 'base': (5, 5, 23, 5)}[arch]
    assert tuple(len(s.blocks) for s in model.stages) == depths
    # stages 1-3: aggregated attention pooled by 8, 4, 2; stage 4: full attention
    kinds = [type(s.blocks[0].attn) for s in model.stages]
    assert kinds == [AggregatedAttention] * 3 + [FullAttention]
    assert [s.blocks[0].attn.sr_ratio for s in model.stages[:3]] == [8, 4, 2]
    attn = model.stages[0].blocks[0].attn
    C = model.dims[0]
    assert attn.relative_pos_bias_local.shape == (attn.num_heads, 9)
    assert attn.learnable_tokens.shape == (attn.num_heads, C // attn.num_heads, 9)
    assert attn.cpb_fc1.weight.shape == (512, 2) and attn.cpb_fc2.weight.shape[0] == attn.num_heads
    # ConvGLU hidden: int(2 * int(C * mlp_ratio) / 3), mlp_ratio 8 in stages 1-2
    assert model.stages[0].blocks[0].mlp.fc1.weight.shape == (2 * int(2 * C * 8 / 3), C)
    assert model.stem.proj.kernel_size == (7, 7) and model.stem.proj.stride == (4, 4)
    # LN eps: 1e-5 in the patch embeddings and the pooled branch, 1e-6 elsewhere
    assert (model.stem.norm.eps, attn.norm.eps, model.stages[0].norm.eps,
            model.stages[0].blocks[0].norm1.eps) == (1e-5, 1e-5, 1e-6, 1e-6)


@pytest.mark.parametrize('extrapolate', [False, True])
def test_stage_sizes_at_odd_input(extrapolate):
    """conv 7x7/s4 p3, then conv 3x3/s2 p1: 97x131 -> 25x33, 13x17, 7x9, 4x5 (pooled to 3x4,
    3x4, 3x4); the stage norms are the outputs, no further norm."""
    model = TransNeXt('tiny', is_extrapolation=extrapolate).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 97, 131))
    assert [tuple(o.shape) for o in outs] == [
        (1, 72, 25, 33), (1, 144, 13, 17), (1, 288, 7, 9), (1, 576, 4, 5)]
    assert all(torch.isfinite(o).all() and o.is_contiguous() for o in outs)
    assert model.out_channels == (72, 144, 288, 576)
    assert all(isinstance(n, torch.nn.Identity) for n in model.out_norms)


def test_out_indices_and_nchw():
    model = TransNeXt(MINI, out_indices=(1, 3)).eval()
    assert model.out_channels == (24, 48)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 65, 47))
    assert [tuple(o.shape) for o in outs] == [(2, 24, 9, 6), (2, 48, 3, 2)]  # 17x12 after the stem
    model = TransNeXt(MINI, out_indices=(0,)).eval()
    with torch.no_grad():  # the stages after the last output are not run (nor checked)
        assert model(torch.randn(1, 3, 29, 29))[0].shape == (1, 16, 8, 8)


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='large'), r"unknown arch 'large'; valid names: tiny, small, base"),
    (dict(arch=dict(MINI, window=3)), r"unknown arch keys \['window'\]"),
    (dict(arch=dict(MINI, depths=(1, 1, 2))), 'one positive entry per stage'),
    (dict(arch=dict(MINI, num_heads=(3, 2, 4, 4))), 'stage 0: dims 16 must divide into '
                                                    'num_heads 3'),
    (dict(arch=dict(MINI, mlp_ratios=(4, 0, 4, 4))), 'mlp_ratios'),
    (dict(arch=dict(MINI, window_size=4)), 'window_size must be an odd positive int'),
    (dict(img_size=(512, 28)), r"img_size \(512, 28\) gives a 128x7 map at stage 0, smaller "
                                   r"than 8"),
    (dict(img_size=(512, 0)), 'img_size must be a positive int or'),
    (dict(pretrain_size=32), r'pretrain_size 32 gives a 1x1 map at stage 3, smaller than 2'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(out_indices=(4,)), 'out_indices'),
    (dict(in_channels=0), 'in_channels'),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransNeXt(**{'arch': MINI, **kwargs})


def test_extrapolation_ignores_img_size():
    assert TransNeXt(MINI, img_size=96, is_extrapolation=True).img_size is None


def test_too_small_input_is_refused_before_work():
    model = TransNeXt(MINI).eval()
    with pytest.raises(ValueError, match=r'a 25x60 input gives a 7x15 map at stage 0, smaller '
                                         r'than its pooling ratio 8'):
        model(torch.randn(1, 3, 25, 60))


# ---- the attention, evaluated directly in float64 ---------------------------------------
def _f32(value):
    return torch.tensor(value, dtype=torch.float32)


def _bin_centres(n, m):
    """Mean position of each adaptive-average-pooling bin [floor(i n / m), ceil((i+1) n / m))."""
    return [sum(range(i * n // m, -(-(i + 1) * n // m))) / (-(-(i + 1) * n // m) - i * n // m)
            for i in range(m)]


def direct_bias(attn, q_size, k_size, pretrain):
    """(heads, Nq, Nk) float64: the module's MLP on each (query, pooled key) pair's offsets,
    per axis (q - key bin centre) / (pretrain - 1) * 8 -> sign * log2(1 + |t|) / 3, the
    offsets in float32 as the release's coordinate tables are."""
    rows, cols = _bin_centres(q_size[0], k_size[0]), _bin_centres(q_size[1], k_size[1])
    pairs = []
    for qi in range(q_size[0]):
        for qj in range(q_size[1]):
            for kr in rows:
                for kc in cols:
                    t = torch.stack([(_f32(qi) - _f32(kr)) / (pretrain[0] - 1) * 8,
                                     (_f32(qj) - _f32(kc)) / (pretrain[1] - 1) * 8])
                    pairs.append(torch.sign(t) * torch.log2(t.abs() + 1) / 3)
    hidden = torch.relu(torch.stack(pairs).double() @ attn.cpb_fc1.weight.t() + attn.cpb_fc1.bias)
    table = hidden @ attn.cpb_fc2.weight.t() + attn.cpb_fc2.bias
    nq = q_size[0] * q_size[1]
    return table.view(nq, -1, attn.num_heads).permute(2, 0, 1)


def _resize_matrix(n_in, n_out):
    """(n_out, n_in) weights of 1-D linear resizing with half-pixel centres (bilinear,
    align_corners=False): source (dst + 0.5) n_in / n_out - 0.5, clamped at 0."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for dst in range(n_out):
        src = max((dst + 0.5) * n_in / n_out - 0.5, 0.)
        i0 = int(src)
        i1, frac = min(i0 + 1, n_in - 1), src - i0
        m[dst, i0] += 1 - frac
        m[dst, i1] += frac
    return m


def direct_resized_bias(attn, size, pool, trained, sr, pretrain):
    """Interpolation mode: the bias of the ``trained`` maps, resized over the key rows and
    columns and the query rows and columns to the actual maps."""
    qh, qw = trained
    kh, kw = qh // sr, qw // sr
    bias = direct_bias(attn, (qh, qw), (kh, kw), pretrain).reshape(-1, qh, qw, kh, kw)
    r = [_resize_matrix(n, m) for n, m in ((qh, size[0]), (qw, size[1]), (kh, pool[0]),
                                           (kw, pool[1]))]
    bias = torch.einsum('xa,yb,zc,wd,habcd->hxyzw', *r, bias)
    return bias.reshape(bias.shape[0], size[0] * size[1], pool[0] * pool[1])


def _per_head(t, heads):
    return t.reshape(*t.shape[:-1], heads, -1)


def direct_aggregated(m, x, pretrain, trained=None):
    """float64 aggregated attention of ``x`` (B, H, W, C), one query at a time: the window
    neighbours inside the map plus the pooled tokens, one softmax."""
    B, H, W, C = x.shape
    heads, r, win = m.num_heads, m.window // 2, m.window
    ph, pw = H // m.sr_ratio, W // m.sr_ratio
    q = F.normalize(_per_head(x @ m.q.weight.t() + m.q.bias, heads), dim=-1)
    kv = x @ m.kv.weight.t() + m.kv.bias
    k, v = F.normalize(_per_head(kv[..., :C], heads), dim=-1), _per_head(kv[..., C:], heads)
    s = F.gelu(x @ m.sr.weight[:, :, 0, 0].t() + m.sr.bias)  # the 1x1 conv, per pixel
    rows = [(i * H // ph, -(-(i + 1) * H // ph)) for i in range(ph)]
    cols = [(j * W // pw, -(-(j + 1) * W // pw)) for j in range(pw)]
    pooled = torch.stack([s[:, a:b, c:d].mean((1, 2)) for a, b in rows for c, d in cols], 1)
    pooled = F.layer_norm(pooled, (C,), m.norm.weight, m.norm.bias, m.norm.eps)
    kvp = pooled @ m.kv.weight.t() + m.kv.bias
    kp = F.normalize(_per_head(kvp[..., :C], heads), dim=-1)  # (B, P, heads, d)
    vp = _per_head(kvp[..., C:], heads)
    if trained is None:
        bias = direct_bias(m, (H, W), (ph, pw), pretrain)
    else:
        bias = direct_resized_bias(m, (H, W), (ph, pw), trained, m.sr_ratio, pretrain)
    gain = F.softplus(m.temperature).view(heads, 1)
    out = []
    for i in range(H):
        for j in range(W):
            nbrs = [(n, i + a - r, j + b - r) for n, (a, b) in
                    enumerate((a, b) for a in range(win) for b in range(win))
                    if 0 <= i + a - r < H and 0 <= j + b - r < W]
            scale = torch.log(_f32(len(nbrs) + ph * pw)).double()
            qs = (q[:, i, j] + m.query_embedding[:, 0]) * gain * scale  # (B, heads, d)
            local = [(qs * k[:, y, z]).sum(-1) + m.relative_pos_bias_local[:, n]
                     for n, y, z in nbrs]
            pool = torch.einsum('bhd,bphd->bhp', qs, kp) + bias[:, i * W + j]
            w = torch.cat([torch.stack(local, -1), pool], -1).softmax(-1)
            y = torch.einsum('bhp,bphd->bhd', w[..., len(nbrs):], vp)
            for t, (n, yy, zz) in enumerate(nbrs):
                dyn = (q[:, i, j] * m.learnable_tokens[:, :, n]).sum(-1) + m.learnable_bias[:, 0, n]
                y = y + (w[..., t] + dyn)[..., None] * v[:, yy, zz]
            out.append(y.reshape(B, C))
    return torch.stack(out, 1).view(B, H, W, C) @ m.proj.weight.t() + m.proj.bias


def direct_full(m, x, pretrain, trained=None):
    """float64 full attention with the MLP position bias (the last stage)."""
    B, H, W, C = x.shape
    heads = m.num_heads
    qkv = x.reshape(B, H * W, C) @ m.qkv.weight.t() + m.qkv.bias
    q, k, v = (_per_head(qkv[..., i * C:(i + 1) * C], heads).transpose(1, 2) for i in range(3))
    gain = F.softplus(m.temperature) * torch.log(_f32(H * W)).double()
    qs = (F.normalize(q, dim=-1) + m.query_embedding) * gain
    if trained is None:
        bias = direct_bias(m, (H, W), (H, W), pretrain)
    else:
        bias = direct_resized_bias(m, (H, W), (H, W), trained, 1, pretrain)
    attn = (qs @ F.normalize(k, dim=-1).transpose(-2, -1) + bias).softmax(-1)
    out = (attn @ v).transpose(1, 2).reshape(B, H, W, C)
    return out @ m.proj.weight.t() + m.proj.bias


def _attention(kind, seed=0):
    torch.manual_seed(seed)
    m = AggregatedAttention(12, 3, sr_ratio=kind) if kind > 1 else FullAttention(12, 3)
    return randomize_(m, seed).double()


@pytest.mark.parametrize('sr,size,trained', [
    (2, (7, 9), None),    # uneven pooling bins (7 / 3, 9 / 4), extrapolation
    (4, (5, 11), None),   # one pooled row
    (2, (7, 9), (8, 6)),  # interpolation: bias made for 8x6 (keys 4x3), resized
    (3, (10, 7), (6, 6)),
    (1, (5, 7), None),    # full attention
    (1, (5, 7), (4, 6)),
])
def test_attention_equals_direct_float64_evaluation(sr, size, trained, exact_layernorm):
    """Outputs and the gradients of the input and of every parameter equal a direct
    evaluation (float64, odd sizes, both bias modes)."""
    m = _attention(sr)
    pretrain = (6, 8)
    geo = stage_geometry(size, sr, 3 if sr > 1 else None, pretrain, trained)
    x = torch.randn(2, *size, 12, dtype=torch.float64, requires_grad=True)
    direct = direct_aggregated if sr > 1 else direct_full
    ours, ref = m(x, geo), direct(m, x, pretrain, trained)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=1e-9)
    cot = torch.randn_like(ref)
    grads = [torch.autograd.grad((y * cot).sum(), [x, *m.parameters()]) for y in (ours, ref)]
    for (name, _), a, b in zip([('input', x), *m.named_parameters()], *grads):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8, msg=name)


def test_attention_gradcheck(exact_layernorm):
    m = _attention(2, seed=3)
    geo = stage_geometry((4, 5), 2, 3, (6, 8), (4, 4))
    x = torch.randn(1, 4, 5, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: m(t, geo), (x,), eps=1e-6, atol=1e-6)


def test_padding_mask_and_scale_follow_the_map():
    """Corner tokens see 4 of their 3x3 neighbours, edge tokens 6, inner ones 9; the query
    gain is log(neighbours inside + pooled tokens)."""
    geo = stage_geometry((4, 5), 2, 3, (56, 56))
    inside = (~geo.pad_mask).sum(-1).view(4, 5)
    assert inside.tolist() == [[4, 6, 6, 6, 4], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6],
                               [4, 6, 6, 6, 4]]
    assert geo.pad_mask[0].tolist() == [True] * 4 + [False, False, True, False, False]
    torch.testing.assert_close(geo.seq_scale.view(4, 5), (inside + 4).float().log())
    full = stage_geometry((4, 5), 1, None, (7, 7))
    assert full.pad_mask is None and full.seq_scale.item() == pytest.approx(math.log(20))


# ---- position bias: sizes and modes -----------------------------------------------------
def test_no_size_dependent_state_and_no_stale_tables():
    """Nothing but parameters in the state dict and no buffers at all; after inputs of other
    sizes the model gives what a fresh model with the same weights gives, in both modes."""
    for extrapolate in (False, True):
        model = randomize_(TransNeXt(MINI, img_size=64, is_extrapolation=extrapolate)).eval()
        assert list(model.buffers()) == []
        assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}
        x = torch.randn(1, 3, 45, 77)
        with torch.no_grad():
            for size in ((64, 64), (33, 101), (97, 131)):
                model(torch.randn(1, 3, *size))
            used = model(x)
            fresh = TransNeXt(MINI, img_size=64, is_extrapolation=extrapolate).eval()
            fresh.load_state_dict(model.state_dict())
            for a, b in zip(used, fresh(x)):
                torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_interpolation_is_extrapolation_at_img_size():
    """A 128x128 input gives exactly the maps of img_size=128 (32, 16, 8, 4): both modes
    generate the same bias there; at another size they differ, and the interpolated model
    depends on img_size."""
    model = randomize_(TransNeXt(MINI, img_size=128)).eval()
    extra = TransNeXt(MINI, is_extrapolation=True).eval()
    extra.load_state_dict(model.state_dict())
    other = TransNeXt(MINI, img_size=256).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        x = torch.randn(1, 3, 128, 128)
        for a, b in zip(model(x), extra(x)):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
        x = torch.randn(1, 3, 96, 160)
        ours, theirs, wider = model(x)[-1], extra(x)[-1], other(x)[-1]
    assert not torch.allclose(ours, theirs, atol=1e-4)
    assert not torch.allclose(ours, wider, atol=1e-4)


# ---- training behaviour -----------------------------------------------------------------
def test_drop_path_rises_linearly_and_is_stochastic_in_training():
    with torch.device('meta'):
        model = TransNeXt('tiny', drop_path_rate=0.4)
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for b in _blocks(model)]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.4)
    assert all(b - a == pytest.approx(0.4 / 20) for a, b in zip(rates, rates[1:]))
    mini = randomize_(TransNeXt(MINI, drop_path_rate=0.5))
    x = torch.randn(2, 3, 40, 40)
    torch.manual_seed(0)
    a = mini.train()(x)[-1]
    b = mini(x)[-1]
    assert not torch.allclose(a, b)
    with torch.no_grad():
        mini.eval()
        torch.testing.assert_close(mini(x)[-1], mini(x)[-1])


@pytest.mark.parametrize('frozen', [-1, 0, 2])
def test_frozen_stages(frozen):
    model = TransNeXt(MINI, frozen_stages=frozen, drop_path_rate=0.5)
    model.train()
    frozen_mods = ([model.stem] if frozen >= 0 else []) + list(model.stages[:max(frozen, 0)])
    frozen_ids = {id(p) for m in frozen_mods for p in m.parameters()}
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) not in frozen_ids), name
    assert all(not m.training for m in frozen_mods)
    sum(o.sum() for o in model(torch.randn(1, 3, 40, 40))).backward()
    assert all(p.grad is None for m in frozen_mods for p in m.parameters())
    assert model.stages[3].blocks[0].attn.cpb_fc2.weight.grad is not None


def test_with_cp_same_outputs_and_grads(monkeypatch):
    import backbones.layers.blocks as layers
    calls = []
    real = layers.cp.checkpoint
    monkeypatch.setattr(layers.cp, 'checkpoint',
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    ref = randomize_(TransNeXt(MINI, drop_path_rate=0.3)).train()
    cpm = TransNeXt(MINI, drop_path_rate=0.3, with_cp=True).train()
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 45, 37)
    outs = []
    for m in (ref, cpm):
        torch.manual_seed(1)  # same drop-path draws: checkpointing replays the RNG state
        outs.append(m(x))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for o in outs:
        sum((t ** 2).sum() for t in o).backward()
    for (name, p), q in zip(ref.named_parameters(), cpm.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert len(calls) == 5 and all(k.get('use_reentrant') is False for k in calls)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('extrapolate', [False, True])
def test_autocast_is_finite(dtype, extrapolate):
    model = randomize_(TransNeXt(MINI, img_size=64, is_extrapolation=extrapolate)).eval()
    x = torch.randn(1, 3, 53, 71)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outs = model(x)
    for o, r in zip(outs, ref):
        assert torch.isfinite(o).all()
        assert (o.float() - r).abs().mean() < 0.1 * r.abs().mean()


# ---- pretrained weights -----------------------------------------------------------------
def _release_key(key):
    """Our key in the release's layout (the ImageNet and the dense model share it)."""
    parts = key.split('.')
    if parts[0] == 'stem':
        return 'patch_embed1.' + '.'.join(parts[1:])
    i = int(parts[1])
    if parts[2] == 'downsample':
        return f'patch_embed{i + 1}.' + '.'.join(parts[3:])
    if parts[2] == 'norm':
        return f'norm{i + 1}.' + '.'.join(parts[3:])
    assert parts[2] == 'blocks', key
    rest = '.'.join(parts[4:]).replace('mlp.dwconv.', 'mlp.dwconv.dwconv.')
    return f'block{i + 1}.{parts[3]}.{rest}'


def release_state_dict(model, imagenet=True, seed=0):
    """The release's layout with distinct random values, from the shapes of ``model``:
    ``classification/transnext.py`` (with the ``head`` classifier) or the dense
    ``transnext_native.py`` (without)."""
    g = torch.Generator().manual_seed(seed)
    out = {_release_key(k): torch.randn(v.shape, generator=g)
           for k, v in model.state_dict().items()}
    if imagenet:
        C = model.dims[-1]
        out.update({'head.weight': torch.zeros(1000, C), 'head.bias': torch.zeros(1000)})
    return out


@pytest.mark.parametrize('wrapper', [None, 'model', 'state_dict'])
def test_imagenet_checkpoint_loads_strictly(tmp_path, wrapper):
    release = release_state_dict(TransNeXt(MINI))
    path = tmp_path / 'transnext_mini_224_1k.pth'
    torch.save(release if wrapper is None else {wrapper: release, 'epoch': 300}, path)
    model = TransNeXt(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    own = model.state_dict()
    pairs = {'stem.proj.weight': 'patch_embed1.proj.weight',
             'stem.norm.bias': 'patch_embed1.norm.bias',
             'stages.1.downsample.proj.weight': 'patch_embed2.proj.weight',
             'stages.2.blocks.1.attn.learnable_tokens': 'block3.1.attn.learnable_tokens',
             'stages.2.blocks.0.mlp.dwconv.weight': 'block3.0.mlp.dwconv.dwconv.weight',
             'stages.3.blocks.0.attn.qkv.bias': 'block4.0.attn.qkv.bias',
             'stages.0.norm.weight': 'norm1.weight', 'stages.3.norm.bias': 'norm4.bias'}
    for ours, theirs in pairs.items():
        assert torch.equal(own[ours], release[theirs]), ours
    assert len(release) - 2 == len(own)  # all but the classifier


def test_detection_checkpoint_backbone_loads_strictly(tmp_path):
    """The released Mask R-CNN / UperNet checkpoints (mmdet 2.28 / mmseg 0.30): ``backbone.``
    + the dense file's keys (its stage norms are the ImageNet model's), next to the heads."""
    release = release_state_dict(TransNeXt(MINI), imagenet=False)
    ckpt = {f'backbone.{k}': v for k, v in release.items()}
    ckpt.update({'neck.lateral_convs.0.conv.weight': torch.zeros(256, 16, 1, 1),
                 'roi_head.bbox_head.fc_cls.bias': torch.zeros(81)})
    path = tmp_path / 'mask_rcnn_transnext_mini_fpn_1x_coco_in1k.pth'
    torch.save({'meta': {}, 'state_dict': ckpt}, path)
    model = TransNeXt(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                          prefix='backbone.'))
    model.init_weights()
    own = model.state_dict()
    assert len(own) == len(release)
    assert torch.equal(own['stages.2.norm.weight'], release['norm3.weight'])
    assert torch.equal(own['stages.1.blocks.0.attn.cpb_fc1.weight'],
                       release['block2.0.attn.cpb_fc1.weight'])


def test_wrong_size_checkpoint_names_keys(tmp_path):
    release = release_state_dict(TransNeXt(dict(MINI, dims=(16, 24, 32, 64))))
    path = tmp_path / 'wide.pth'
    torch.save({'model': release}, path)
    with pytest.raises(CheckpointError) as err:
        TransNeXt(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    msg = str(err.value)
    assert 'shape mismatches' in msg and 'stages.3.blocks.0.attn.qkv.weight' in msg
    deeper = release_state_dict(TransNeXt(dict(MINI, depths=(1, 1, 3, 1))))
    torch.save({'model': deeper}, path)
    with pytest.raises(CheckpointError, match=r'unexpected keys \(\d+\): stages\.2\.blocks\.2'):
        TransNeXt(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    # a classification checkpoint saved with the release's size-dependent buffers (they are
    # non-persistent there, so a file holding them comes from elsewhere): named, refused
    torch.save({'model': {**release, 'relative_pos_index1': torch.zeros(4, dtype=torch.long)}},
               path)
    with pytest.raises(CheckpointError, match='relative_pos_index1'):
        TransNeXt(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


@pytest.mark.parametrize('imagenet', [True, False])
def test_convert_pretrained_is_idempotent(imagenet):
    once = TransNeXt.convert_pretrained(release_state_dict(TransNeXt(MINI), imagenet=imagenet))
    twice = TransNeXt.convert_pretrained(once)
    assert list(once) == list(twice)
    assert all(k.startswith(('stem.', 'stages.')) for k in once)


def test_convert_checkpoint_tool(tmp_path):
    """A released Mask R-CNN checkpoint's backbone through tools/convert_checkpoint.py."""
    model = TransNeXt(MINI)
    release = release_state_dict(model, imagenet=False)
    src, dst = tmp_path / 'mask_rcnn_transnext_mini.pth', tmp_path / 'out' / 'transnext_m.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in release.items()}}, src)
    proc = call_tool('convert_checkpoint', src, dst,
                     '--backbone', 'TransNeXt', '--arch', repr(MINI), '--prefix', 'backbone.')
    params = sum(p.numel() for p in model.parameters())
    assert f'{len(release)} tensors, {params / 1e6:.2f}M params' in proc.stdout
    model = TransNeXt(MINI, init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    assert torch.equal(model.state_dict()['stages.3.norm.bias'], release['norm4.bias'])
    assert torch.equal(model.state_dict()['stages.2.blocks.1.attn.learnable_bias'],
                       release['block3.1.attn.learnable_bias'])


# ---- det / seg configs ------------------------------------------------------------------
def _config(name):
    if name.startswith('mask-rcnn'):
        return osp.join(REPO, 'det_configs', name)
    return osp.join(REPO, 'seg_configs', *(['release'] if name.endswith('polation.py') else []),
                    name)


def _build(path, meta=True):
    import mmdet.utils
    import mmseg.utils
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(path)
    (mmdet.utils if cfg.default_scope == 'mmdet' else mmseg.utils).register_all_modules(False)
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope), \
            torch.device('meta' if meta else 'cpu'):
        return MODELS.build(cfg.model), cfg


@pytest.mark.parametrize('name', list(MODEL_PARAMS))
def test_model_params_equal_the_reference(name):
    model, cfg = _build(_config(name))
    backbone = cfg.model.backbone
    assert type(model.backbone).__name__ == 'TransNeXt'
    assert sum(p.numel() for p in model.parameters()) == MODEL_PARAMS[name]
    assert cfg.pretrained == f'checkpoints/transnext/transnext_{backbone.arch}_224_1k.pth'
    # the release's bias settings: det img_size 800, seg SS 512, interpolation, pretrain 224
    det = name.startswith('mask-rcnn')
    assert (backbone.img_size, backbone.pretrain_size, backbone.is_extrapolation) == \
        (800 if det else 512, 224, False)
    assert backbone.drop_path_rate == {'tiny': 0.4, 'small': 0.6, 'base': 0.7}[backbone.arch]
    if not det:
        assert cfg.model.test_cfg == dict(mode='slide', crop_size=(512, 512), stride=(341, 341))
    # fp16 with a static loss scale of 512 in the release's Base det config only
    scale = 512.0 if name == 'mask-rcnn_transnext-b_fpn_8xb2-amp-1x_coco.py' else 'dynamic'
    assert cfg.optim_wrapper.loss_scale == scale


@pytest.mark.parametrize('size', ['t', 's', 'b'])
def test_multi_scale_release_configs_change_only_the_bias_mode(size):
    """The release's two multi-scale protocols: its SS config's weights with the bias
    extrapolated (the paper's MS number) or interpolated from 800x800, whole-image tests."""
    from mmengine.config import Config
    stem = f'upernet_transnext-{size}_8xb2-amp-160k_ade20k-512x512'
    suite = Config.fromfile(_config(f'{stem}.py')).to_dict()
    for mode, change in (('extrapolation', dict(is_extrapolation=True)),
                         ('interpolation', dict(img_size=800))):
        ms = Config.fromfile(_config(f'{stem}_ms-{mode}.py')).to_dict()
        assert ms['model'].pop('test_cfg') == dict(mode='whole')
        expected = {k: v for k, v in suite.items()}
        expected['model'] = dict(suite['model'])
        expected['model'].pop('test_cfg')
        expected['model']['backbone'] = {**suite['model']['backbone'], **change}
        assert ms == expected, mode


@pytest.mark.parametrize('name', ['mask-rcnn_transnext-t_fpn_8xb2-amp-1x_coco.py',
                                  'upernet_transnext-t_8xb2-amp-160k_ade20k-512x512.py'])
def test_weight_decay_follows_the_release(name):
    """No decay on exactly the parameters whose names hold one of the release's keys
    (query_embedding, relative_pos_bias_local, cpb, temperature, norm); every other
    parameter, biases included, decays by 0.05 (the release has no bias rule)."""
    from mmengine.optim import build_optim_wrapper
    model, cfg = _build(_config(name), meta=False)
    cfg.optim_wrapper.type = 'OptimWrapper'  # AmpOptimWrapper needs CUDA
    cfg.optim_wrapper.pop('loss_scale')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}
    seen = set()
    for pname, p in model.backbone.named_parameters():
        exempt = any(k in pname for k in NO_DECAY_KEYS)
        assert decay[id(p)] == (0.0 if exempt else 0.05), pname
        seen.add(next(k for k in NO_DECAY_KEYS + ('',) if k in pname))
    assert seen == set(NO_DECAY_KEYS) | {''}


# ---- equivalence with the release's own modules -----------------------------------------
def _stub(monkeypatch, name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def _import_release(src, monkeypatch):
    """The release's dense seg module (mmseg 0.x registry, its logger and mmcv's loader
    stubbed) and its ImageNet model (the swattention CUDA extension is not installed, so it
    imports its pure-PyTorch ``attention_native``)."""
    class Registry:
        def register_module(self):
            return lambda cls: cls

    _stub(monkeypatch, 'mmseg', __path__=[])
    _stub(monkeypatch, 'mmseg.models', __path__=[])
    _stub(monkeypatch, 'mmseg.models.builder', BACKBONES=Registry())
    _stub(monkeypatch, 'mmseg.utils', get_root_logger=None)
    _stub(monkeypatch, 'mmcv', __path__=[])
    _stub(monkeypatch, 'mmcv.runner', load_checkpoint=None)

    monkeypatch.syspath_prepend(osp.join(src, 'classification'))
    modules = []
    for name, path in (('transnext_release_seg',
                        osp.join(src, 'segmentation', 'upernet', 'transnext_native.py')),
                       ('transnext_release_cls', osp.join(src, 'classification',
                                                          'transnext.py'))):
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        modules.append(module)
    return modules


def _max_errors(ours, theirs):
    return [((a - b).abs().max().item(), ((a - b).abs().max() / b.abs().max()).item())
            for a, b in zip(ours, theirs)]


@pytest.mark.slow
def test_equivalent_to_the_release(tmp_path_factory, monkeypatch):
    """TransNeXt-T: the release's dense ``transnext_tiny`` (seeded random weights, its state
    dict converted by ours) gives our four stage outputs at 224x224 and 200x264, with the
    bias interpolated from img_size 512 (its seg SS configs) and extrapolated (its
    ms_extrapolation configs); in float64 (interpolation; the release's extrapolation makes
    float32 tables that a float64 MLP refuses) to 1e-10. Its ImageNet model loads through the
    converter and gives our pooled features at 224x224."""
    src = release_source(*RELEASE, tmp_path_factory.mktemp('release'), paths=(
        'segmentation/upernet/transnext_native.py', 'classification/transnext.py',
        'classification/attention_native.py'))
    dense_mod, cls_mod = _import_release(src, monkeypatch)
    report = {}
    for img_size, extrapolate in ((512, False), (800, True)):
        torch.manual_seed(0)
        ref = dense_mod.transnext_tiny(pretrained=None, img_size=img_size, pretrain_size=224,
                                       is_extrapolation=extrapolate)
        randomize_(ref, seed=1).eval()
        ours = TransNeXt('tiny', img_size=img_size, is_extrapolation=extrapolate,
                         drop_path_rate=0.).eval()
        ours.load_state_dict(TransNeXt.convert_pretrained(ref.state_dict()))  # strict
        with torch.no_grad():
            for size in ((224, 224), (200, 264)):
                x = torch.randn(2, 3, *size)
                theirs, mine = ref(x), ours(x)
                assert [t.shape for t in theirs] == [m.shape for m in mine]
                report[(img_size, extrapolate, size)] = errs = _max_errors(mine, theirs)
                assert all(rel < 2e-4 for _, rel in errs), errs
            if not extrapolate:
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(LayerNorm, 'forward', torch.nn.LayerNorm.forward)
                    ref.double(), ours.double()
                    x = torch.randn(1, 3, 200, 264, dtype=torch.float64)
                    report['float64'] = errs = _max_errors(ours(x), ref(x))
                assert all(rel < 1e-10 for _, rel in errs), errs

    cls = cls_mod.transnext_tiny()
    randomize_(cls, seed=2).eval()
    ours = TransNeXt('tiny', img_size=224, drop_path_rate=0.).eval()
    ours.load_state_dict(TransNeXt.convert_pretrained(cls.state_dict()))  # strict, head dropped
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        feats = ours(x)[-1].flatten(2).mean(-1)
        report['imagenet'] = errs = _max_errors([feats], [cls.forward_features(x)])
    assert all(rel < 2e-4 for _, rel in errs), errs
    print('max abs / rel error per stage:', report)
