"""tools/get_flops.py --all: the complexity cache keeps every row it did not measure, under
--only and when another run writes the same file meanwhile (the counting itself is faked here;
tests/test_complexity.py checks real counts)."""
import csv

import pytest

import backbones.analysis.complexity as cx


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Three configs a.py, b.py, c.py; measuring one records its name and, once, lets a
    concurrent run write c.py's row into the CSV."""
    paths = [str(tmp_path / f'{n}.py') for n in 'abc']
    monkeypatch.setattr(cx, 'find_configs', lambda dirs: paths)
    monkeypatch.setattr(cx, 'load_config', lambda path: type('Cfg', (), {
        'default_scope': 'mmdet', 'model': {'backbone': {'arch': path}}})())
    out, calls = str(tmp_path / 'complexity.csv'), []

    def measure(path, shape=None):
        calls.append(path.rsplit('/', 1)[1])
        if calls == ['a.py']:  # another process finishes c.py while we measure a.py
            with cx._locked(out):
                rows = cx._read_rows(out)
                rows['c.py'] = dict(config='c.py', config_digest='other', params_m='3.0',
                                    macs_g='30.0', shape='800x1280')
                cx._write_rows(out, list(rows.values()))
        return dict(params_m=1.0, macs_g=10.0, shape='800x1280')
    monkeypatch.setattr(cx, 'measure', measure)
    return out, calls


def _rows(out):
    with open(out, newline='') as f:
        return {r['config']: r for r in csv.DictReader(f)}


def test_only_measures_the_matching_configs_and_keeps_the_others(fake):
    out, calls = fake
    cx.measure_all(out, only=['a*'], log=lambda *a: None)
    assert calls == ['a.py']
    rows = _rows(out)
    assert set(rows) == {'a.py', 'c.py'}  # c.py written meanwhile by the other run is kept
    assert rows['c.py']['config_digest'] == 'other'
    cx.measure_all(out, only=['b*'], log=lambda *a: None)
    assert calls == ['a.py', 'b.py'] and set(_rows(out)) == {'a.py', 'b.py', 'c.py'}
    assert list(_rows(out)) == ['a.py', 'b.py', 'c.py']  # config order


def test_only_without_a_match_is_an_error(fake):
    out, _ = fake
    with pytest.raises(ValueError, match=r"no config matches \['zzz\*'\]"):
        cx.measure_all(out, only=['zzz*'])


def test_all_skips_unchanged_rows(fake):
    out, calls = fake
    cx.measure_all(out, log=lambda *a: None)
    assert calls == ['a.py', 'b.py', 'c.py']
    cx.measure_all(out, log=lambda *a: None)
    assert calls == ['a.py', 'b.py', 'c.py']  # nothing re-measured
