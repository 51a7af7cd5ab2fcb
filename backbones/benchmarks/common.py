"""What every benchmark shares: the interface, the record envelope, timing, peak memory, diffs.

Records: every benchmark writes ``results/benchmarks/<name>.json`` (atomically) with the
machine, versions, device, git commit, command line and time around its ``results``,
``targets`` and ``notes`` (:func:`make_record`; the envelope is fixed by ``SCHEMA``).

Timing: ratios are measured in one process with interleaved repeats after a warm-up (these
machines are shared and noisy) and reported as medians (:func:`time_interleaved`).

Peak memory (:func:`peak_bytes`): on CUDA ``torch.cuda.max_memory_allocated``. On CPU torch
has no peak counter, so the measurements run in a fresh subprocess (:func:`run_probe`) with
glibc's mmap threshold fixed at 128 KiB (every tensor is mmapped and returned to the OS when
freed, so the resident set follows the live tensors) and read the kernel's high-water mark
(VmHWM, reset through /proc/self/clear_refs before each call) minus the resident set just
before the measured call.
"""
import datetime
import importlib.metadata
import json
import os
import os.path as osp
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

import torch

from ..engine.fileio import write_file_atomic
from ..engine.launch import REPO

__all__ = ['Benchmark', 'OUT_DIR', 'SCHEMA', 'DEVICES', 'PROBE_PREFIX', 'add_common_arguments',
           'run_benchmark', 'select_device', 'make_record', 'target', 'write_record', 'sync',
           'time_interleaved', 'peak_bytes', 'run_probe', 'mib', 'max_diff', 'fmt_seconds',
           'head', 'notes_md']

OUT_DIR = osp.join(REPO, 'results', 'benchmarks')
SCHEMA = 1
#: Distributions whose versions every record names (the README reads ``torch``'s).
PACKAGES = ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'timm', 'faster-coco-eval',
            'pycocotools', 'numpy')
MMAP_ENV = {'MALLOC_MMAP_THRESHOLD_': '131072'}
PROBE_PREFIX = 'PROBE '
DEVICES = ('cpu', 'cuda')


# ---------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------
class Benchmark:
    """One benchmark: a sub-command of ``tools/benchmark.py`` and a section of the README.

    A subclass sets ``name`` (the sub-command and the ``benchmark`` field of its records)
    and ``help``, and implements :meth:`add_arguments`, :meth:`run` and :meth:`render`;
    one that measures peak memory in a fresh process also implements :meth:`probe`.
    """
    name = ''
    help = ''

    def add_arguments(self, parser):
        """Add this benchmark's own options (the common ones are already there)."""

    def record_name(self, args):
        """The JSON file name (without ``.json``) when ``--name`` is not given (``args``
        None: the same for ``--help``)."""
        return self.name

    def run(self, args, device):
        """Measure; return the record (:func:`make_record`)."""
        raise NotImplementedError

    def render(self, name, rec):
        """Markdown lines of the README section for the record ``rec`` saved as ``name``."""
        return head(rec, rec['benchmark']) + ['```', json.dumps(rec['results'])[:500], '```',
                                              '']

    def probe(self, spec, device):
        """One measurement in a fresh process (:func:`run_probe`); returns a JSON-able dict."""
        raise NotImplementedError(f'benchmark {self.name!r} has no probe')


def add_common_arguments(parser, bench):
    """The options every benchmark takes: where its record goes, threads, device."""
    parser.add_argument('--out', default=OUT_DIR,
                        help='folder for the JSON (default: results/benchmarks)')
    parser.add_argument('--name', default=None,
                        help=f'JSON file name (default: {bench.record_name(None)})')
    parser.add_argument('--threads', type=int, default=1, help='torch intra-op threads on CPU')
    parser.add_argument('--device', choices=DEVICES, default='cpu', help='default: cpu')
    parser.set_defaults(benchmark=bench)


def select_device(name='cpu', threads=1):
    """The torch device ``name``, or a clear error before any work if it is not here."""
    if name == 'cuda' and not torch.cuda.is_available():
        raise SystemExit(f'error: --device cuda, but CUDA is not available here (torch '
                         f'{torch.__version__}, CUDA build {torch.version.cuda or "none"})')
    device = torch.device(name)
    if device.type == 'cpu' and threads:
        torch.set_num_threads(threads)
    return device


def run_benchmark(args, argv=None):
    """Run the benchmark ``args.benchmark`` on ``args.device``; write and return its record."""
    bench = args.benchmark
    device = select_device(args.device, args.threads)
    args.command_line = 'python tools/benchmark.py ' + shlex.join(
        sys.argv[1:] if argv is None else [str(a) for a in argv])
    rec = bench.run(args, device)
    write_record(rec, args.out, args.name or bench.record_name(args))
    return rec


# ---------------------------------------------------------------------------------------
# Records: machine, versions, device, provenance; atomic JSON
# ---------------------------------------------------------------------------------------
def _cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit():
    def git(*args):
        return subprocess.run(['git', *args], cwd=REPO, capture_output=True, text=True).stdout
    commit = git('rev-parse', 'HEAD').strip() or None
    return {'commit': commit, 'dirty': bool(git('status', '--porcelain', '--untracked-files=no')
                                            .strip())}


def _versions():
    # distribution names, not modules (backbones.engine.env reports those): the records'
    # ``versions`` keys stay what they have always been
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_name(device):
    if device.type == 'cuda':
        return f'cuda: {torch.cuda.get_device_name(device)}'
    return f'cpu: {_cpu_model()}'


def make_record(name, args, device, results, targets, notes=()):
    """The common envelope of every benchmark JSON."""
    command = getattr(args, 'command_line', None) or \
        'python tools/benchmark.py ' + shlex.join(sys.argv[1:])
    return {
        'schema': SCHEMA,
        'benchmark': name,
        'command': command,
        'timestamp': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'git': _git_commit(),
        'machine': {'cpu': _cpu_model(), 'logical_cores': os.cpu_count(),
                    'usable_cores': len(os.sched_getaffinity(0)),
                    'platform': platform.platform(), 'python': platform.python_version()},
        'device': device_name(device),
        'threads': torch.get_num_threads(),
        'versions': _versions(),
        'results': results,
        'targets': targets,
        'notes': list(notes),
    }


def target(name, goal, value, met, why=''):
    return {'name': name, 'goal': goal, 'value': value, 'met': bool(met), 'why': why}


def write_record(rec, out_dir, name):
    path = osp.join(out_dir, f'{name}.json')
    write_file_atomic(json.dumps(rec, indent=1, sort_keys=False) + '\n', path)
    print(f'wrote {osp.relpath(path)}')
    return path


# ---------------------------------------------------------------------------------------
# Timing and memory
# ---------------------------------------------------------------------------------------
def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_interleaved(fns, repeats, device, warmup=1):
    """Median seconds per call of each ``name -> fn``, the calls interleaved round by round
    so that a slow phase of a shared machine hits every contender alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: {'median_s': statistics.median(ts), 'min_s': min(ts),
                   'times_s': [round(t, 5) for t in ts]} for name, ts in times.items()}


def _proc_status():
    with open('/proc/self/status') as f:
        text = f.read()
    return {k: int(re.search(rf'^{k}:\s+(\d+) kB', text, re.M).group(1)) * 1024
            for k in ('VmRSS', 'VmHWM')}


def peak_bytes(fn, device):
    """Run ``fn`` once; bytes of memory it needed above what was live before it."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to the current resident set
    before = _proc_status()['VmRSS']
    fn()
    return _proc_status()['VmHWM'] - before


def run_probe(benchmark, spec, device, threads, timeout=3600):
    """``probe(spec, device)`` of ``benchmark`` in a fresh process with the mmap threshold
    fixed (see the module docstring), through ``python -m backbones.benchmarks.probe``."""
    env = dict(os.environ, **MMAP_ENV, PYTHONWARNINGS='ignore')
    cmd = [sys.executable, '-m', 'backbones.benchmarks.probe', benchmark, json.dumps(spec),
           '--device', device.type, '--threads', str(threads)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(PROBE_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f'probe {benchmark} {spec} failed ({proc.returncode}):\n'
                           f'{proc.stderr[-3000:]}')
    return json.loads(lines[-1][len(PROBE_PREFIX):])


def mib(n):
    return round(n / 2 ** 20, 1)


def max_diff(a, b):
    """Largest absolute difference, and the same relative to the reference's largest value."""
    a, b = a.detach().double(), b.detach().double()
    d = (a - b).abs().max().item()
    return {'max_abs': d, 'max_rel': d / max(b.abs().max().item(), 1e-30)}


# ---------------------------------------------------------------------------------------
# Markdown pieces of the renderers
# ---------------------------------------------------------------------------------------
def fmt_seconds(x):
    return f'{x:.3f}' if x < 1 else f'{x:.2f}'


def head(rec, title):
    """A section's title line: what, the command that measured it, and when."""
    return [f"**{title}** (`{rec['command']}`, {rec['timestamp'][:10]})", '']


def notes_md(rec):
    return [f'_{n}_' for n in rec['notes']] + [''] if rec['notes'] else []
