"""One peak-memory measurement in a fresh process, started by :func:`.common.run_probe`:

    python -m backbones.benchmarks.probe BENCHMARK SPEC_JSON [--device cpu] [--threads 1]

runs ``probe(spec, device)`` of the benchmark and prints its result as one ``PROBE {json}``
line (the parent sets glibc's mmap threshold so that freed tensors leave the resident set).
"""
import argparse
import json

from . import BENCHMARKS, get_benchmark
from .common import DEVICES, PROBE_PREFIX, select_device


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('benchmark', choices=[b.name for b in BENCHMARKS])
    parser.add_argument('spec', type=json.loads, help='what to measure (JSON)')
    parser.add_argument('--device', choices=DEVICES, default='cpu')
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args(argv)
    device = select_device(args.device, args.threads)
    print(PROBE_PREFIX + json.dumps(get_benchmark(args.benchmark).probe(args.spec, device)))


if __name__ == '__main__':
    main()
