"""The one source of backbone metadata: ``results/backbones.csv``, one row per backbone.

Every consumer reads it here: the leaderboard, the tables and the plot (paper name, family,
size, token mixing, configs, plot style), the complexity step and the main job (which
configs, which toy runs), and the benchmarks (which rows they measure by default).

Columns:

* ``backbone``: the row name in the paper's Tables 2 / 3 (or our own name for a size the
  paper does not list); ``family``, ``size`` (tiny / small / base, empty: not in the paper),
  ``token_mixing`` (Conv, Conv+SSM, Attn, ...);
* ``type``, ``arch``: the backbone as configs build it (``model.backbone``); empty for a
  published row the suite cannot build yet (it still gets its family's plot style);
* ``det_config``, ``seg_config``: file names in ``det_configs/`` and ``seg_configs/``;
* ``checkpoint``: the ImageNet weights the configs load (``pretrained`` in both configs);
* ``colour``, ``marker``: matplotlib style of the row's family in the plot;
* ``toy``: tasks (``det;seg``) trained by the main job's toy mode;
* ``benchmark``: benchmark subjects by default (``backbone``; ``det`` / ``seg``: its config of
  that task in the config benchmarks).

The released detectors / segmentors that ``tools/reproduce.py release`` re-evaluates are listed
in ``results/releases.csv``, read here too (:func:`load_releases`, columns in
:data:`RELEASE_COLUMNS`).
"""
import csv
import functools
import os.path as osp
import re
from dataclasses import dataclass

from .engine.launch import REPO

__all__ = ['BackboneRow', 'ROWS_CSV', 'TASK_DIRS', 'load_rows', 'row_for_config',
           'row_for_backbone', 'family_styles', 'ReleaseRow', 'RELEASES_CSV', 'load_releases']

ROWS_CSV = osp.join(REPO, 'results', 'backbones.csv')
TASK_DIRS = {'det': osp.join(REPO, 'det_configs'), 'seg': osp.join(REPO, 'seg_configs')}
COLUMNS = ('backbone', 'family', 'size', 'token_mixing', 'type', 'arch', 'det_config',
           'seg_config', 'checkpoint', 'colour', 'marker', 'toy', 'benchmark')
SIZES = ('tiny', 'small', 'base', '')


@dataclass(frozen=True)
class BackboneRow:
    backbone: str
    family: str
    size: str
    token_mixing: str
    type: str
    arch: str
    det_config: str
    seg_config: str
    checkpoint: str
    colour: str
    marker: str
    toy: tuple
    benchmark: tuple

    def config(self, task):
        """File name of this row's config for ``task`` ('det' | 'seg'), '' if none."""
        return self.det_config if task == 'det' else self.seg_config

    def config_path(self, task):
        name = self.config(task)
        return osp.join(TASK_DIRS[task], name) if name else ''


def _split(text):
    return tuple(t for t in (text or '').split(';') if t)


def load_rows(path=None):
    """Every row of the metadata file (default :data:`ROWS_CSV`), validated: a bad file
    fails here, naming the line."""
    path = path or ROWS_CSV
    return _load_rows(path, tuple(sorted(TASK_DIRS.items())), osp.getmtime(path))


@functools.lru_cache(maxsize=8)
def _load_rows(path, task_dirs, mtime):
    task_dirs = dict(task_dirs)
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f'{path}: columns must be {",".join(COLUMNS)}, got '
                             f'{reader.fieldnames}')
        rows = []
        for line, rec in enumerate(reader, 2):
            row = BackboneRow(**{k: rec[k].strip() for k in COLUMNS[:11]},
                              toy=_split(rec['toy']), benchmark=_split(rec['benchmark']))
            problems = [f'size {row.size!r} is not one of {SIZES}'] if row.size not in SIZES \
                else []
            problems += [f'toy task {t!r} is not det / seg' for t in row.toy
                         if t not in task_dirs]
            problems += [f'toy task {t} has no {t}_config' for t in row.toy
                         if t in task_dirs and not row.config(t)]
            for task, folder in task_dirs.items():
                if row.config(task) and not osp.isfile(osp.join(folder, row.config(task))):
                    problems.append(f'{task}_config {row.config(task)} is not in {folder}')
            if not row.backbone:
                problems.append('backbone must not be empty')
            if (row.det_config or row.seg_config) and not row.type:
                problems.append('a row with configs needs its backbone type')
            if problems:
                raise ValueError(f'{path}:{line} ({row.backbone}): ' + '; '.join(problems))
            rows.append(row)
    names = [r.backbone for r in rows]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f'{path}: backbone names must be unique, repeated: {dup}')
    return tuple(rows)


def row_for_config(name, path=None):
    """The row whose det or seg config has file name ``name`` (a basename), or None."""
    name = osp.basename(name or '')
    return next((r for r in load_rows(path) if name and name in (r.det_config, r.seg_config)),
                None)


def row_for_backbone(type_, arch, path=None):
    """The row built as ``model.backbone=dict(type=type_, arch=arch)``, or None."""
    return next((r for r in load_rows(path)
                 if r.type and (r.type, r.arch) == (type_, arch or '')), None)


def family_styles(path=None):
    """family -> (colour, marker), in the order the families first appear."""
    styles = {}
    for r in load_rows(path):
        styles.setdefault(r.family, (r.colour or '0.6', r.marker or '.'))
    return styles


# ---- released checkpoints (results/releases.csv) -----------------------------------------
RELEASES_CSV = osp.join(REPO, 'results', 'releases.csv')
#: ``row``: the paper's row name; ``config`` / ``ms_config``: the suite configs (relative to
#: the task's config folder) that evaluate it single-scale / multi-scale (empty: no MS run);
#: ``layout``: the key layout of the file (a converter of ``backbones.releases``); ``file``:
#: its name in ``--ckpt-dir``; ``sha256``: empty until the first verified file fixes it;
#: ``published``: the metrics the source publishes with the file (``name=value;...``, the
#: leaderboard's column names); ``protocol``, ``release_config``, ``caveat``: free text.
RELEASE_COLUMNS = ('row', 'task', 'config', 'ms_config', 'layout', 'url', 'file', 'sha256',
                   'published', 'protocol', 'release_config', 'caveat')
RELEASE_METRICS = {'det': ('ap_box', 'ap_box_50', 'ap_box_75', 'ap_mask', 'ap_mask_50',
                           'ap_mask_75'),
                   'seg': ('miou_ss', 'miou_ms')}


@dataclass(frozen=True)
class ReleaseRow:
    row: str
    task: str
    config: str
    ms_config: str
    layout: str
    url: str
    file: str
    sha256: str
    published: tuple  # ((metric, value), ...)
    protocol: str
    release_config: str
    caveat: str

    @property
    def metrics(self):
        return dict(self.published)

    @property
    def manual(self):
        """Hosted where no plain HTTP download works (Google Drive): the user fetches it."""
        return 'drive.google.com' in self.url

    def config_path(self, multi_scale=False):
        name = self.ms_config if multi_scale else self.config
        return osp.join(TASK_DIRS[self.task], name) if name else ''


def _published(text):
    pairs = []
    for item in _split(text):
        name, _, value = item.partition('=')
        try:
            pairs.append((name.strip(), float(value)))
        except ValueError:
            raise ValueError(f'published entry {item!r} is not name=number') from None
    return tuple(pairs)


def load_releases(path=None):
    """Every row of the release manifest (default :data:`RELEASES_CSV`), validated: a bad
    file fails here, naming the line."""
    path = path or RELEASES_CSV
    return _load_releases(path, tuple(sorted(TASK_DIRS.items())), osp.getmtime(path))


@functools.lru_cache(maxsize=8)
def _load_releases(path, task_dirs, mtime):
    task_dirs = dict(task_dirs)
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != RELEASE_COLUMNS:
            raise ValueError(f'{path}: columns must be {",".join(RELEASE_COLUMNS)}, got '
                             f'{reader.fieldnames}')
        rows, seen = [], {}
        for line, rec in enumerate(reader, 2):
            rec = {k: (rec[k] or '').strip() for k in RELEASE_COLUMNS}
            problems = []
            try:
                rec['published'] = _published(rec['published'])
            except ValueError as err:
                problems.append(str(err))
                rec['published'] = ()
            row = ReleaseRow(**rec)
            if not row.row:
                problems.append('row must not be empty')
            if row.task not in task_dirs:
                problems.append(f'task {row.task!r} is not one of {sorted(task_dirs)}')
            else:
                for col in ('config', 'ms_config'):
                    name = getattr(row, col)
                    if name and ('..' in name or not osp.isfile(
                            osp.join(task_dirs[row.task], name))):
                        problems.append(f'{col} {name} is not in {task_dirs[row.task]}')
                if not row.config:
                    problems.append('config must not be empty')
                if row.ms_config and row.task != 'seg':
                    problems.append('ms_config is for segmentation rows only')
                bad = [m for m, _ in row.published if m not in RELEASE_METRICS[row.task]]
                if bad or not row.published:
                    problems.append(f'published needs metrics among '
                                    f'{RELEASE_METRICS[row.task]}, got {row.published or "none"}')
            if not re.fullmatch(r'[a-z0-9][a-z0-9-]*', row.layout):
                problems.append(f'layout {row.layout!r} is not a converter name')
            if not row.url.startswith(('http://', 'https://')):
                problems.append(f'url {row.url!r} is not http(s)')
            if not row.file or row.file != osp.basename(row.file) or row.file.startswith('.'):
                problems.append(f'file {row.file!r} must be a plain file name')
            if row.sha256 and not re.fullmatch(r'[0-9a-f]{64}', row.sha256):
                problems.append(f'sha256 {row.sha256!r} is not 64 lowercase hex digits')
            for key in ((row.task, row.row), ('file', row.file)):
                if key in seen:
                    problems.append(f'{key[0]} {key[1]!r} repeats line {seen[key]}')
                seen[key] = line
            if problems:
                raise ValueError(f'{path}:{line} ({row.row} {row.task}): ' + '; '.join(problems))
            rows.append(row)
    return tuple(rows)
