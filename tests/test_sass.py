"""tools/benchmark.py sass: the proxy (kernels compiled for sm_90, counted) and its records.

The counter is checked on a synthetic listing; the unit is calibrated on the first kernels
(f725828), whose counts the review measured independently (1237 SASS per tile / 16
element-states = 77 forward at N = 16); the committed records must be what the kernels of
this tree compile to, and must meet the issue's targets.
"""
import json
import os.path as osp

import pytest
import torch

from backbones.benchmarks import sass
from backbones.benchmarks.scan import vmamba_scan_shape
from conftest import REPO

RECORDS = osp.join(REPO, 'results', 'benchmarks')
STAGE1 = vmamba_scan_shape('v0-tiny', 1, (800, 1344), 2)


def load(name):
    with open(osp.join(RECORDS, f'{name}.json')) as f:
        return json.load(f)


def row(rec, direction, N, dtype='fp32'):
    return next(r for r in rec['results']['kernels'] if r['direction'] == direction
                and r['d_state'] == N and r['dtype'] == dtype)


def listing(lines):
    return '\n'.join(f'        /*{16 * i:04x}*/   {ins} ;' for i, ins in enumerate(lines))


def test_count_loop_weights_the_inner_loop_and_skips_the_trap():
    # 0: prologue; 1-7 outer loop (3-5 inner loop); 8 EXIT; 9 the trap (a branch to itself)
    text = listing(['MOV R1, R2', 'FFMA R1, R2, R3, R4', 'SHFL.UP R5, R6, 0x1, RZ',
                    'MUFU.EX2 R1, R2', 'FMUL R1, R2, R3', '@P0 BRA 0x0030', 'IADD3 R1, R2, 1',
                    '@P1 BRA 0x0010', 'EXIT', 'BRA 0x0090'])
    ins = sass.parse_sass(text)
    out = sass.count_loop(ins, inner_trips=(16,))
    assert out['static'] == 7 and out['inner_static'] == [3]
    assert out['per_iteration'] == 4 + 3 * 16
    assert out['ops']['MUFU.EX2'] == 16 and out['ops']['SHFL.UP'] == 1
    with pytest.raises(ValueError, match='expected 0 inner loop'):
        sass.count_loop(ins)


@pytest.mark.parametrize('regs, warps, shared, ctas', [
    (160, 4, 2048, 3), (177, 8, 4096, 1), (72, 4, 2048, 7), (255, 4, 0, 2), (96, 4, 0, 5)])
def test_occupancy_on_sm90(regs, warps, shared, ctas):
    """65536 registers per SM in 256-register units per warp, 64 warps, 228 KiB shared."""
    assert sass.occupancy(regs, warps, shared)[0] == ctas


def test_issue_bound_formula():
    # one warp instruction per (132 SMs x 4 schedulers) per clock
    fast, slow = sass.issue_ms(132 * 4 * 1.98e9 * 1e-3)
    assert fast == pytest.approx(1.0, abs=1e-4) and slow == pytest.approx(1.98 / 1.755, 1e-3)


def test_unit_calibrated_on_the_first_kernels():
    """The review's count of the first forward (1237 per tile, 77 per element-state) from
    the first version itself, through the same launch capture and counter."""
    mod = sass.load_kernels('f725828')
    (kernel, grid, args, kwargs), = sass.launches(mod, STAGE1, torch.float32, 'fwd')
    r = sass.Sass()._row({}, kernel, grid, args, kwargs, 16, 'fp32', 'fwd', None, STAGE1)
    assert r['sass_per_iteration'] == 1237 and r['sass_per_element_state'] == 77.3
    committed = row(load('sass_baseline'), 'fwd', 16)
    for key in ('sass_per_iteration', 'shfl', 'registers', 'ctas_per_sm', 'issue_bound_ms'):
        assert r[key] == committed[key], key


def test_committed_record_is_what_these_kernels_compile_to():
    """The V2-T forward (N = 1, fp32) of this tree compiles to the committed counts: rerun
    ``python tools/benchmark.py sass`` when the kernels change."""
    from backbones.ops import scan_triton
    shape = vmamba_scan_shape('v2-tiny', 1, (800, 1344), 2)
    (kernel, grid, args, kwargs), = sass.launches(scan_triton, shape, torch.float32, 'fwd')
    r = sass.Sass()._row({}, kernel, grid, args, kwargs, 1, 'fp32', 'fwd', None, shape)
    committed = row(load('sass'), 'fwd', 1)
    for key in ('sass_per_iteration', 'sass_per_element_state', 'registers',
                'spill_store_bytes', 'ctas_per_sm', 'issue_bound_ms'):
        assert r[key] == committed[key], key


def test_records_meet_the_issue_targets_and_show_the_calibration():
    before, after = load('sass_baseline'), load('sass')
    assert before['results']['kernels_rev'] == 'f725828' and after['results']['version'] == 'v2'
    # the facts file's figures, in the record made before any kernel changed
    assert [row(before, d, 16)['sass_per_element_state'] for d in ('fwd', 'bwd')] == [77.3, 214.2]
    assert [row(before, d, 1)['sass_per_element_state'] for d in ('fwd', 'bwd')] == [121.8, 306.2]
    assert after['targets'] and all(t['met'] for t in after['targets']), after['targets']
    assert before['targets'] == []  # a reference: the targets are the current kernels'
    for r in after['results']['kernels']:  # no spill inside a main loop; the backward spills
        assert r['local_in_loop'] == 0, r   # nothing and runs at least 2 CTAs per SM
        assert r['direction'] != 'bwd' or (r['spill_store_bytes'] == 0 and r['ctas_per_sm'] >= 2)
    # every registered route is compiled, through the same scan kernels
    routes = {r['route'] for r in after['results']['routed']}
    from backbones.ops.routes import SCAN_ROUTES
    assert routes == set(SCAN_ROUTES)
