"""Strict, weights-only loading of pretrained weights (backbones/engine/checkpoint.py)."""
import pytest
import torch
from torch import nn

from backbones.engine.checkpoint import CheckpointError, load_state_dict_strict, unwrap_state_dict


def _net(width=4):
    return nn.Sequential(nn.Linear(3, width), nn.LayerNorm(width))


@pytest.mark.parametrize('wrap', [
    lambda sd: sd,
    lambda sd: {'model': sd},
    lambda sd: {'state_dict': sd, 'meta': {'epoch': 3}},
    lambda sd: {'model': {'module.' + k: v for k, v in sd.items()}, 'epoch': 1},
])
def test_unwrap_formats(wrap):
    sd = _net().state_dict()
    out = unwrap_state_dict(wrap(sd))
    assert list(out) == list(sd)
    assert all(torch.equal(out[k], sd[k]) for k in sd)


def test_unwrap_prefix_selects_backbone():
    sd = {'backbone.0.weight': torch.ones(1), 'neck.w': torch.ones(1)}
    assert list(unwrap_state_dict({'state_dict': sd}, prefix='backbone.')) == ['0.weight']
    with pytest.raises(CheckpointError, match="starts with 'head.'"):
        unwrap_state_dict(sd, prefix='head.')


def test_unwrap_rejects_non_state_dict():
    with pytest.raises(CheckpointError, match='holds no state_dict'):
        unwrap_state_dict({'meta': {'epoch': 1}})


def test_strict_load_copies_weights():
    src, dst = _net(), _net()
    load_state_dict_strict(dst, src.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(),
                                                 dst.state_dict().values()))


def test_strict_load_names_every_problem():
    sd = _net().state_dict()
    sd.pop('1.bias')
    sd['extra.weight'] = torch.ones(1)
    sd['0.weight'] = torch.ones(5, 3)
    with pytest.raises(CheckpointError) as err:
        load_state_dict_strict(_net(), sd, source='ckpt.pth')
    msg = str(err.value)
    assert 'ckpt.pth' in msg and 'missing keys (1): 1.bias' in msg
    assert 'unexpected keys (1): extra.weight' in msg
    assert '0.weight (checkpoint (5, 3) vs model (4, 3))' in msg


def test_strict_load_leaves_model_untouched_on_error():
    dst = _net()
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    bad = {k: torch.zeros_like(v) for k, v in _net().state_dict().items()}
    bad['0.weight'] = torch.zeros(5, 3)
    with pytest.raises(CheckpointError):
        load_state_dict_strict(dst, bad)
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())


def test_allowed_missing_prefix():
    class WithOutNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _net()
            self.out_norms = nn.ModuleList([nn.LayerNorm(4)])

    sd = {'body.' + k: v for k, v in _net().state_dict().items()}
    with pytest.raises(CheckpointError, match='out_norms.0.weight'):
        load_state_dict_strict(WithOutNorm(), sd)
    load_state_dict_strict(WithOutNorm(), sd, allow_missing=('out_norms.',))
