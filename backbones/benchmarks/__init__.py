"""The suite's benchmarks: one module each, one list that the command line and the README
report are built from (``tools/benchmark.py``; the records go to ``results/benchmarks/``).

Every benchmark is a :class:`.common.Benchmark`: ``name``, ``help``, ``add_arguments(parser)``,
``run(args, device) -> record``, ``render(name, record) -> markdown lines`` and, where it
measures peak memory in a fresh process, ``probe(spec, device)``. Adding one is a new module
here plus its line in :data:`BENCHMARKS`.
"""
from .backbone import BackboneSpeed
from .coco import CocoEval
from .common import Benchmark, add_common_arguments, run_benchmark, select_device
from .cp import ActivationCheckpointing
from .sass import Sass
from .scan import Scan
from .throughput import Throughput

__all__ = ['BENCHMARKS', 'Benchmark', 'get_benchmark', 'add_common_arguments', 'run_benchmark',
           'select_device']

#: Every benchmark, in the order of the README's performance section.
BENCHMARKS = (
    Scan(),
    Sass(),
    BackboneSpeed(),
    ActivationCheckpointing(),
    CocoEval(),
    Throughput('train'),
    Throughput('infer'),
)


def get_benchmark(name):
    """The benchmark of :data:`BENCHMARKS` called ``name``."""
    for bench in BENCHMARKS:
        if bench.name == name:
            return bench
    raise KeyError(f'unknown benchmark {name!r}; known: {[b.name for b in BENCHMARKS]}')
