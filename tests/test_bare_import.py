"""A bare GPU machine (torch, triton, timm; no cv2, rich, mmcv, mmdet, mmseg) builds the
backbones and runs the scan: nothing on the import path of ``backbones.ops`` or a backbone
class needs the mm stack (mmengine itself needs ``rich``, so it is out too).

Checked in a subprocess whose import system refuses those packages, as they would be refused
where they are not installed (``ModuleNotFoundError`` naming the package).
"""
import subprocess
import sys

from conftest import REPO

BLOCKED = ('cv2', 'rich', 'mmcv', 'mmdet', 'mmseg')

BLOCKER = f'''
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Blocker())
'''

CODE = BLOCKER + '''
import warnings
import torch
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    import backbones
assert any('models and ops only' in str(w.message) for w in caught), caught
for name in ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'cv2', 'rich'):
    assert name not in sys.modules, name
from backbones.models import backbone_class, backbone_classes
print('classes', sorted(backbone_classes()))
from backbones.ops import selective_scan, selective_scan_torch
from backbones.ops.reference import reference_scan
torch.manual_seed(0)
x = torch.randn(1, 3, 72, 40)
for cls, arch in (('VMamba', 'v0-tiny'), ('VMamba', 'v2-tiny'), ('MambaOut', 'tiny')):
    model = backbone_class(cls)(arch=arch)
    model.init_weights()
    outs = model(x)
    assert [o.shape[-2:] for o in outs] == [(18, 10), (9, 5), (5, 3), (3, 2)], arch
    sum(o.float().square().mean() for o in outs).backward()
    assert all(p.grad is not None and p.grad.isfinite().all()
               for p in model.parameters() if p.requires_grad), arch
g = torch.Generator().manual_seed(1)
u, delta = torch.randn(2, 4, 33, generator=g), torch.randn(2, 4, 33, generator=g) * 0.5
A = -torch.rand(4, 3, generator=g) - 0.1
B, C = torch.randn(2, 2, 3, 33, generator=g), torch.randn(2, 2, 3, 33, generator=g)
D, bias = torch.randn(4, generator=g), torch.randn(4, generator=g) * 0.3
y = selective_scan(u, delta, A, B, C, D, bias, delta_softplus=True)
ref = reference_scan(u, delta, A, B, C, D, bias, delta_softplus=True)
torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-5)
print('bare ok')
'''


def test_models_and_scan_without_the_mm_stack():
    proc = subprocess.run([sys.executable, '-c', CODE], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0 and 'bare ok' in proc.stdout, proc.stderr[-4000:]
    # every family imports there (a family that needs the stack at import fails here)
    from backbones.models import backbone_classes
    assert f'classes {sorted(backbone_classes())}' in proc.stdout


def test_a_broken_family_still_raises(tmp_path):
    """Only a *missing* package of the stack is tolerated; any other import error raises."""
    code = ('import sys, types\n'
            'broken = types.ModuleType("timm")\n'
            'sys.modules["timm"] = None\n'  # timm is required: its absence must raise
            'try:\n'
            '    import backbones\n'
            'except ImportError as err:\n'
            '    print("raised", err)\n')
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert 'raised' in proc.stdout, proc.stdout + proc.stderr[-3000:]
