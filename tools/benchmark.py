"""Benchmarks of the suite: where users spend their time, measured side by side.

    python tools/benchmark.py scan [--stages 1 3] [--repeats 5]       # scan vs a step loop
    python tools/benchmark.py scan --device cuda --input 800x1344x2 512x512x2 --no-reference
        [--arch v2-tiny] [--stages 1 2 3 4] [--fused]    # every backend: GB/s, floor, fused
    python tools/benchmark.py backbone [--shapes 800x1280x1 512x512x2]  # ours vs timm, VMamba
    python tools/benchmark.py backbone --device cuda --shapes 800x1344x2  # + ConvNeXt, Swin
    python tools/benchmark.py cp [--configs ...] [--shape H W]          # with_cp peak memory
    python tools/benchmark.py coco [--images 500] [--repeats 3]         # faster-coco-eval
    python tools/benchmark.py train CONFIG [--iters 10] [--toy-data DIR]
    python tools/benchmark.py train CONFIG --device cuda --toy-data DIR --synthetic 800x1333
        [--cudnn default benchmark off] [--profile-steps]  # fixed vs varying shapes, diagnosed
    python tools/benchmark.py infer CONFIG [--iters 10] [--toy-data DIR]
    python tools/benchmark.py report [--check]                          # README section

Every benchmark takes ``--device {cpu,cuda}`` (default cpu) and ``--threads`` (CPU intra-op
threads, default 1: on a shared machine a descheduled second OpenMP thread stalls every op),
and writes ``results/benchmarks/<name>.json`` (``--out`` elsewhere, atomically) with the
machine, versions, device, git commit, command line and time. The sub-commands come from
``backbones.benchmarks.BENCHMARKS`` (one module each; timing and peak-memory method in
``backbones/benchmarks/common.py``).
"""
import argparse

from backbones.benchmarks import BENCHMARKS, add_common_arguments, report, run_benchmark


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n', 1)[1])
    sub = parser.add_subparsers(dest='command', required=True)
    for bench in BENCHMARKS:
        p = sub.add_parser(bench.name, help=bench.help)
        add_common_arguments(p, bench)
        bench.add_arguments(p)
    report.add_arguments(sub.add_parser('report', help=report.HELP))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.command == 'report':
        report.run(args, BENCHMARKS)
    else:
        run_benchmark(args, argv)


if __name__ == '__main__':
    main()
