"""MambaOut dense-prediction backbone (backbones/mambaout.py, tools/convert_checkpoint.py).

Reference values come from outside the code under test: the paper's Table 4 (sizes,
params, MACs), the official release's key layout (github.com/yuweihao/MambaOut,
models/mambaout.py), and timm's implementation run side by side.
"""
import importlib
import itertools
import math
import os
import re
import subprocess
import sys

import pytest
import timm  # required: a missing timm must fail these tests, not skip them
import torch
import torch.nn.functional as F
from torch import nn

from backbones.engine.checkpoint import CheckpointError, load_state_dict_strict
from backbones.models.mambaout import MambaOut
from conftest import REPO, randomize_, run_tool

CONVERT = os.path.join(REPO, 'tools', 'convert_checkpoint.py')

# Table 4 of the paper; kobe (24 blocks) from the official release.
SIZES = {
    'femto': ((3, 3, 9, 3), (48, 96, 192, 288)),
    'kobe': ((3, 3, 15, 3), (48, 96, 192, 288)),
    'tiny': ((3, 3, 9, 3), (96, 192, 384, 576)),
    'small': ((3, 4, 27, 3), (96, 192, 384, 576)),
    'base': ((3, 4, 27, 3), (128, 256, 512, 768)),
}
# Table 4: classification model at 224x224, params (M) and MACs (G).
PAPER_COST = {'femto': (7.3, 1.2), 'tiny': (26.5, 4.5), 'small': (48.5, 9.0),
              'base': (84.8, 15.8)}


def _ceil_halvings(n, times):
    for _ in range(times):
        n = math.ceil(n / 2)
    return n


def _expected_shapes(batch, h, w, dims, indices):
    return [(batch, dims[i], _ceil_halvings(h, i + 2), _ceil_halvings(w, i + 2))
            for i in indices]


def _backbone_sd(model):
    return {k: v.clone() for k, v in model.state_dict().items()
            if not k.startswith('out_norms.')}


# ---- release formats, written from their documented layouts ----------------------------
def _to_official(sd, dim):
    """Official release: downsample_layers.0 = stem, .N before stage N; stages.S.B.*."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r'^stem\.', 'downsample_layers.0.', k)
        k = re.sub(r'^stages\.(\d+)\.downsample\.', r'downsample_layers.\1.', k)
        k = re.sub(r'^stages\.(\d+)\.blocks\.(\d+)\.', r'stages.\1.\2.', k)
        out[k] = v
    out.update(_classifier(dim, {'norm': dim}, ('head.fc1', 'head.norm', 'head.fc2')))
    return out


def _to_timm(sd, dim):
    out = dict(sd)
    out.update(_classifier(dim, {'head.norm': dim},
                           ('head.pre_logits.fc', 'head.pre_logits.norm', 'head.fc')))
    return out


def _classifier(dim, final_norm, names, num_classes=10):
    """pooled-feature norm + MLP head (fc dim->4dim, norm, fc 4dim->classes)."""
    fc1, norm, fc2 = names
    out = {}
    for name, d in final_norm.items():
        out[f'{name}.weight'], out[f'{name}.bias'] = torch.rand(d), torch.rand(d)
    out[f'{fc1}.weight'], out[f'{fc1}.bias'] = torch.rand(4 * dim, dim), torch.rand(4 * dim)
    out[f'{norm}.weight'], out[f'{norm}.bias'] = torch.rand(4 * dim), torch.rand(4 * dim)
    out[f'{fc2}.weight'] = torch.rand(num_classes, 4 * dim)
    out[f'{fc2}.bias'] = torch.rand(num_classes)
    return out


@pytest.fixture(scope='module')
def femto_source():
    model = randomize_(MambaOut('femto'))
    return _backbone_sd(model)


def _load(tmp_path, ckpt, arch='femto', name='ckpt.pth', **kwargs):
    path = tmp_path / name
    torch.save(ckpt, path)
    model = MambaOut(arch, init_cfg=dict(type='Pretrained', checkpoint=str(path), **kwargs))
    model.init_weights()
    return model


def _assert_weights_equal(model, source):
    own = model.state_dict()
    assert set(source) <= set(own)
    for k, v in source.items():
        assert torch.equal(own[k], v), k


# ---- architecture -----------------------------------------------------------------------
@pytest.mark.parametrize('arch', list(SIZES))
def test_sizes_and_shapes_at_odd_input(arch):
    depths, dims = SIZES[arch]
    model = MambaOut(arch).eval()
    assert [len(s.blocks) for s in model.stages] == list(depths)
    assert model.out_channels == dims
    batch = 2 if arch in ('femto', 'kobe') else 1
    with torch.no_grad():
        outs = model(torch.randn(batch, 3, 225, 257))
    assert [tuple(o.shape) for o in outs] == _expected_shapes(batch, 225, 257, dims,
                                                              range(4))
    assert all(o.is_contiguous() and o.isfinite().all() for o in outs)


def test_explicit_depths_dims():
    model = MambaOut(dict(depths=[1, 2, 1], dims=[16, 24, 40]), out_indices=(0, 1, 2)).eval()
    outs = model(torch.randn(1, 3, 31, 17))
    assert [tuple(o.shape) for o in outs] == _expected_shapes(1, 31, 17, (16, 24, 40),
                                                              range(3))


def test_every_out_indices_choice():
    # out_indices logic does not depend on the size: a small arch keeps 15 builds cheap
    x = torch.randn(1, 3, 45, 33)
    arch = dict(depths=(1, 1, 2, 1), dims=(16, 24, 40, 56))
    dims = arch['dims']
    for r in range(1, 5):
        for indices in itertools.combinations(range(4), r):
            model = MambaOut(arch, out_indices=indices).eval()
            with torch.no_grad():
                outs = model(x)
            assert [tuple(o.shape) for o in outs] == _expected_shapes(1, 45, 33, dims,
                                                                      indices)
            norms = {k.split('.')[1] for k in model.state_dict() if k.startswith('out_norms.')}
            assert norms == {str(i) for i in indices}
    # order given does not matter, output order is by stage
    model = MambaOut(arch, out_indices=(3, 1)).eval()
    assert [o.shape[1] for o in model(x)] == [24, 56]


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='huge'), r"unknown arch 'huge'.*femto, kobe, tiny, small, base"),
    (dict(arch='Tiny'), r'femto, kobe, tiny, small, base'),
    (dict(arch=dict(depths=(1, 1))), "'depths' and 'dims'"),
    (dict(arch=dict(depths=(1, 1), dims=(8,))), 'equally long'),
    (dict(arch=dict(depths=(1, 0), dims=(8, 8))), 'positive ints'),
    (dict(arch=dict(depths=(1,), dims=(8,), mlp_ratio=4)), "'depths' and 'dims'"),
    (dict(out_indices=(4,)), 'out_indices'),
    (dict(out_indices=()), 'out_indices'),
    (dict(frozen_stages=5), 'frozen_stages'),
    (dict(with_cp=(True, False)), 'with_cp'),
    (dict(kernel_size=4), 'kernel_size'),
    (dict(conv_ratio=3.0), 'conv_ratio'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MambaOut(**kwargs)


def test_block_layout_follows_algorithm_1():
    model = MambaOut(dict(depths=(1,), dims=(48,)), out_indices=(0,), conv_ratio=0.5)
    block = model.stages[0].blocks[0]
    hidden = int(8 / 3 * 48)  # MLP ratio 8/3
    assert block.fc1.weight.shape == (2 * hidden, 48)
    assert block.fc2.weight.shape == (48, hidden)
    assert block.conv.weight.shape == (24, 1, 7, 7) and block.conv.groups == 24
    stem = model.stem
    assert (stem.conv1.stride, stem.conv2.stride) == ((2, 2), (2, 2))
    assert stem.conv1.kernel_size == (3, 3) and stem.conv1.out_channels == 24


def test_drop_path_rises_linearly_over_all_blocks():
    model = MambaOut('femto', drop_path_rate=0.3)
    rates = [b.drop_path.drop_prob for s in model.stages for b in s.blocks]
    assert len(rates) == 18
    assert rates == pytest.approx([0.3 * i / 17 for i in range(18)])
    x = torch.randn(4, 3, 32, 32)
    model.train()
    torch.manual_seed(0)
    a = model(x)[-1]
    torch.manual_seed(1)
    b = model(x)[-1]
    assert not torch.allclose(a, b)  # stochastic depth is active in training ...
    model.eval()
    assert torch.equal(model(x)[-1], model(x)[-1])  # ... and off in eval


# ---- frozen stages / norm_eval / checkpointing ------------------------------------------
@pytest.mark.parametrize('frozen', [-1, 0, 1, 2, 4])
def test_frozen_stages(frozen):
    model = MambaOut('femto', frozen_stages=frozen, norm_eval=True, drop_path_rate=0.1)
    model.train()
    frozen_mods = ([model.stem] if frozen >= 0 else []) + [
        m for i in range(max(frozen, 0)) for m in (model.stages[i], model.out_norms[i])]
    frozen_ids = {id(p) for m in frozen_mods for p in m.parameters()}
    for m in frozen_mods:
        assert not any(sub.training for sub in m.modules())
    for i in range(max(frozen, 0), 4):
        assert model.stages[i].training and model.out_norms[i].training
    assert len(frozen_ids) == sum(1 for m in frozen_mods for _ in m.parameters())

    loss = sum(o.square().mean() for o in model(torch.randn(2, 3, 33, 31)))
    if frozen == 4:  # everything frozen: nothing to differentiate
        assert not loss.requires_grad
    else:
        loss.backward()
    for p in model.parameters():
        if id(p) in frozen_ids:
            assert not p.requires_grad and p.grad is None
        else:
            assert p.requires_grad and p.grad is not None
    model.train()  # frozen parts stay frozen on later .train() calls
    assert not any(m.training for m in frozen_mods)


def test_frozen_stages_survive_pretrained_loading(tmp_path, femto_source):
    path = tmp_path / 'src.pth'
    torch.save(femto_source, path)
    model = MambaOut('femto', frozen_stages=2,
                     init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    model.train()
    assert not any(p.requires_grad for p in model.stages[1].parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())


@pytest.mark.parametrize('with_cp', [True, (False, True, False, True)])
def test_with_cp_same_outputs_and_grads(with_cp, monkeypatch):
    ref = MambaOut('femto', drop_path_rate=0.2).train()
    cp_model = MambaOut('femto', drop_path_rate=0.2, with_cp=with_cp).train()
    cp_model.load_state_dict(ref.state_dict())

    import backbones.layers.blocks as mod
    calls = []
    real = mod.cp.checkpoint
    monkeypatch.setattr(mod.cp, 'checkpoint',
                        lambda *a, **k: calls.append(k) or real(*a, **k))

    results = []
    for model in (ref, cp_model):
        x = torch.randn(2, 3, 41, 35, generator=torch.Generator().manual_seed(0),
                        requires_grad=True)
        torch.manual_seed(123)  # same drop-path masks; checkpoint replays the RNG
        outs = model(x)
        sum((o * torch.linspace(-1, 1, o.shape[-1])).sum() for o in outs).backward()
        results.append((outs, x.grad, {n: p.grad for n, p in model.named_parameters()}))

    flags = (with_cp,) * 4 if isinstance(with_cp, bool) else with_cp
    assert len(calls) == sum(d for d, f in zip(SIZES['femto'][0], flags) if f)
    assert all(k.get('use_reentrant') is False for k in calls)
    (o1, gx1, g1), (o2, gx2, g2) = results
    for a, b in zip(o1, o2):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(gx1, gx2, rtol=1e-5, atol=1e-6)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-5, atol=1e-6, msg=name)


def test_with_cp_is_skipped_without_grad(monkeypatch):
    model = MambaOut('femto', with_cp=True).eval()
    import backbones.layers.blocks as mod
    monkeypatch.setattr(mod.cp, 'checkpoint', lambda *a, **k: pytest.fail('checkpointed'))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))


# ---- mixed precision --------------------------------------------------------------------
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast(dtype):
    model = MambaOut('femto', drop_path_rate=0.1)
    x = torch.randn(2, 3, 49, 37)
    model.eval()
    with torch.no_grad():
        ref = model(x)
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = output.dtype
        return hook

    block = model.stages[2].blocks[0]
    hooks = [block.fc1.register_forward_hook(record('fc1')),
             block.norm.register_forward_hook(record('norm'))]
    # No skip: the pinned torch has CPU autocast for both dtypes, so an error here is the
    # model's (a skip would turn a broken model into a green run).
    with torch.autocast('cpu', dtype=dtype):
        with torch.no_grad():
            outs = model(x)
    for h in hooks:
        h.remove()
    assert seen == {'fc1': dtype, 'norm': torch.float32}  # matmuls low, LayerNorm fp32
    for a, b in zip(ref, outs):
        assert b.dtype == torch.float32 and b.isfinite().all()
        assert (a - b).norm() / a.norm() < 0.05

    model.train()  # gradients under autocast are finite too
    with torch.autocast('cpu', dtype=dtype):
        outs = model(x)
    sum(o.float().square().mean() for o in outs).backward()
    assert all(p.grad.isfinite().all() for p in model.parameters())


def test_low_precision_model_keeps_its_dtype():
    model = MambaOut('femto').eval().to(torch.bfloat16)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 32, dtype=torch.bfloat16))
    assert all(o.dtype == torch.bfloat16 and o.isfinite().all() for o in outs)


# ---- pretrained weights -----------------------------------------------------------------
@pytest.mark.parametrize('wrap', ['model', 'state_dict', None])
def test_official_format_loads(tmp_path, femto_source, wrap):
    ckpt = _to_official(femto_source, 288)
    # the helper reproduces the official key set exactly (models/mambaout.py of the release)
    layers = ['downsample_layers.0.conv1', 'downsample_layers.0.norm1',
              'downsample_layers.0.conv2', 'downsample_layers.0.norm2']
    layers += [f'downsample_layers.{i}.{m}' for i in (1, 2, 3) for m in ('conv', 'norm')]
    layers += [f'stages.{s}.{b}.{m}' for s, depth in enumerate(SIZES['femto'][0])
               for b in range(depth) for m in ('norm', 'fc1', 'conv', 'fc2')]
    layers += ['norm', 'head.fc1', 'head.norm', 'head.fc2']
    assert set(ckpt) == {f'{layer}.{p}' for layer in layers for p in ('weight', 'bias')}
    model = _load(tmp_path, {wrap: ckpt, 'epoch': 300} if wrap else ckpt)
    _assert_weights_equal(model, femto_source)


def test_timm_format_loads(tmp_path, femto_source):
    model = _load(tmp_path, {'state_dict': _to_timm(femto_source, 288)})
    _assert_weights_equal(model, femto_source)


def test_real_timm_checkpoint_loads(tmp_path):
    src = randomize_(timm.create_model('mambaout_femto'))
    model = _load(tmp_path, {'model': src.state_dict()})
    _assert_weights_equal(model, {k: v for k, v in src.state_dict().items()
                                  if not k.startswith('head.')})


def test_own_format_loads_with_prefix(tmp_path):
    src = randomize_(MambaOut('femto', out_indices=(1, 2)))
    full = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    full['neck.conv.weight'] = torch.ones(1)
    model = MambaOut('femto', out_indices=(1, 2), init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'det.pth'), prefix='backbone.'))
    torch.save({'state_dict': full, 'meta': {}}, tmp_path / 'det.pth')
    model.init_weights()
    _assert_weights_equal(model, src.state_dict())  # out_norms included


def test_convert_pretrained_is_idempotent(femto_source):
    once = MambaOut.convert_pretrained(_to_official(femto_source, 288))
    assert set(once) == set(femto_source)
    twice = MambaOut.convert_pretrained(once)
    assert list(twice) == list(once) and all(twice[k] is once[k] for k in once)
    own = MambaOut('femto').state_dict()
    assert list(MambaOut.convert_pretrained(own)) == list(own)


def test_wrong_size_checkpoint_names_keys(tmp_path, femto_source):
    with pytest.raises(CheckpointError) as err:
        _load(tmp_path, _to_official(femto_source, 288), arch='tiny')
    msg = str(err.value)
    assert 'shape mismatches (164)' in msg
    assert 'stages.0.blocks.0.conv.weight (checkpoint (48, 1, 7, 7) vs model (96, 1, 7, 7))' \
        in msg

    kobe = _backbone_sd(MambaOut('kobe'))
    with pytest.raises(CheckpointError, match=r'unexpected keys \(48\): stages\.2\.blocks\.'
                                              r'(9|1[0-4])\.'):
        _load(tmp_path, _to_timm(kobe, 288), arch='femto')
    with pytest.raises(CheckpointError, match=r'missing keys \(48\): stages\.2\.blocks\.'):
        _load(tmp_path, _to_timm(femto_source, 288), arch='kobe')


def test_missing_key_is_an_error(tmp_path, femto_source):
    ckpt = _to_official(femto_source, 288)
    del ckpt['stages.1.2.fc2.bias']
    with pytest.raises(CheckpointError, match=r'missing keys \(1\): stages\.1\.blocks\.2\.fc2'
                                              r'\.bias'):
        _load(tmp_path, {'model': ckpt})


# ---- paper numbers and timm -------------------------------------------------------------
class _Classifier(nn.Module):
    """Classification form of Table 4: backbone, global average pooling, Norm, MLP head
    (fc to 4x, GELU, Norm, fc to 1000 classes, as in the official release)."""

    def __init__(self, arch):
        super().__init__()
        self.backbone = MambaOut(arch, out_indices=(3,))
        self.backbone.out_norms[3] = nn.Identity()  # dense-only: not in the classifier
        dim = self.backbone.dims[-1]
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.LayerNorm(4 * dim),
                                  nn.Linear(4 * dim, 1000))

    def forward(self, x):
        return self.head(self.norm(self.backbone.forward_stages(x)[0].mean((2, 3))))


@pytest.mark.parametrize('arch', list(PAPER_COST))
def test_params_and_macs_match_paper(arch):
    from mmengine.analysis import get_model_complexity_info
    with torch.device('meta'):  # skip the random init: only shapes matter for counting
        model = _Classifier(arch)
    model = model.to_empty(device='cpu').eval()
    for p in model.parameters():
        p.data.zero_()
    info = get_model_complexity_info(model, input_shape=(3, 224, 224), show_table=False,
                                     show_arch=False)
    params, macs = PAPER_COST[arch]
    assert round(info['params'] / 1e6, 1) == params
    assert round(info['flops'] / 1e9, 1) == macs  # mmengine counts a multiply-add once


@pytest.mark.parametrize('arch', list(SIZES))
def test_same_tensors_as_timm(arch):
    with torch.device('meta'):  # shapes only: no memory, no init time
        ours, theirs = MambaOut(arch), timm.create_model(f'mambaout_{arch}')
    converted = {k: v.shape for k, v in MambaOut.convert_pretrained(theirs.state_dict()).items()}
    assert converted == {k: v.shape for k, v in ours.state_dict().items()
                         if not k.startswith('out_norms.')}


@pytest.mark.parametrize('arch, size', [('femto', (97, 65)), ('tiny', (63, 45))])
def test_stage_outputs_equal_timm_features_only(arch, size):
    ref = randomize_(timm.create_model(f'mambaout_{arch}', features_only=True)).eval()
    # features_only flattens ``stages`` into ``stages_<i>``; otherwise timm's own keys
    sd = {re.sub(r'^stages_(\d+)\.', r'stages.\1.', k): v for k, v in ref.state_dict().items()}
    model = MambaOut(arch).eval()
    load_state_dict_strict(model, MambaOut.convert_pretrained(sd), allow_missing=('out_norms.',))
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = [y.permute(0, 3, 1, 2) for y in ref(x)]  # timm returns NHWC here
        stages = model.forward_stages(x)
        outs = model(x)
    assert len(expected) == len(stages) == 4
    for i, (a, b, o) in enumerate(zip(stages, expected, outs)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        norm = model.out_norms[i]
        manual = F.layer_norm(a.permute(0, 2, 3, 1), (a.shape[1],), norm.weight, norm.bias,
                              1e-6).permute(0, 3, 1, 2)
        torch.testing.assert_close(o, manual, rtol=1e-5, atol=1e-5)


# ---- registries -------------------------------------------------------------------------
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_build_from_registry(scope, tmp_path, femto_source):
    registry = importlib.import_module(f'{scope}.registry').MODELS
    torch.save({'model': _to_official(femto_source, 288)}, tmp_path / 'official.pth')
    model = registry.build(dict(type='MambaOut', arch='femto', out_indices=(1, 3),
                                drop_path_rate=0.1, init_cfg=dict(
                                    type='Pretrained', checkpoint=str(tmp_path / 'official.pth'))))
    assert type(model) is MambaOut
    model.init_weights()
    _assert_weights_equal(model, femto_source)
    outs = model.eval()(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 96, 8, 8), (1, 288, 2, 2)]


_ONLY_ONE = r'''
import importlib, importlib.abc, sys
blocked = sys.argv[1]
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == blocked or name.startswith(blocked + '.'):
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
sys.meta_path.insert(0, Block())
import backbones
from backbones.models.registry import available_scopes
(other,) = available_scopes()
model = importlib.import_module(other + '.registry').MODELS.build(
    dict(type='MambaOut', arch='femto'))
assert type(model).__name__ == 'MambaOut' and blocked not in sys.modules
print('ok', other)
'''


@pytest.mark.parametrize('missing, present', [('mmseg', 'mmdet'), ('mmdet', 'mmseg')])
def test_import_with_only_one_library(missing, present):
    proc = subprocess.run([sys.executable, '-c', _ONLY_ONE, missing], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert f'ok {present}' in proc.stdout


# ---- tools/convert_checkpoint.py --------------------------------------------------------
def test_convert_checkpoint_end_to_end(tmp_path, femto_source):
    src, dst = tmp_path / 'official.pth', tmp_path / 'out' / 'femto.pth'
    torch.save({'model': _to_official(femto_source, 288)}, src)
    proc = run_tool(CONVERT, src, dst, '--backbone', 'MambaOut', '--arch', 'femto')
    n_params = sum(v.numel() for v in femto_source.values())
    assert f'{len(femto_source)} tensors' in proc.stdout
    assert f'{n_params / 1e6:.2f}M params' in proc.stdout

    saved = torch.load(dst, weights_only=True)
    assert set(saved) == {'state_dict'} and set(saved['state_dict']) == set(femto_source)
    model = MambaOut('femto', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    _assert_weights_equal(model, femto_source)


def test_convert_checkpoint_wrong_arch_writes_nothing(tmp_path, femto_source):
    src, dst = tmp_path / 'official.pth', tmp_path / 'femto_as_tiny.pth'
    torch.save(_to_official(femto_source, 288), src)
    proc = run_tool(CONVERT, src, dst, '--backbone', 'MambaOut', '--arch', 'tiny',
                    check=False)
    assert proc.returncode != 0
    assert 'shape mismatches (164)' in proc.stdout
    assert 'stages.0.blocks.0.fc1.weight (checkpoint (256, 48) vs model (512, 96))' \
        in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ['official.pth']  # no DST, no temp file
