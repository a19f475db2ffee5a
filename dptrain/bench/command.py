"""``dptrain bench``: dptrain's step time next to an sgemm roof and PyTorch, in one run.

Rounds alternate dptrain and PyTorch so that drift on a shared machine hits
both alike; the report gives medians over rounds and their ratio.
"""
from __future__ import annotations

from ..errors import UsageError

def add_bench_arguments(p) -> None:
    from .to_accuracy import add_to_accuracy_arguments
    add_to_accuracy_arguments(p)
    p.add_argument("--model", default="thesis-cnn", metavar="NAME",
                   help="the model to time (dptrain models lists them), or one of your own: "
                   "FILE.py:NAME or package.module:NAME (single-step bench, with --input-shape)")
    p.add_argument("--input-shape", metavar="CxHxW", help="per-sample input shape of a model of "
                   "your own (none: a zoo model's own)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N",
                   help="batch per step (per rank with --ranks)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="BLAS threads per process")
    p.add_argument("--steps", type=int, default=40, metavar="N",
                   help="timed steps per round; with --ranks the wall time per step is "
                   "differenced over them (start-up and warm-up cancel): --steps 300 for a steady "
                   "weak-scaling figure")
    p.add_argument("--warmup", type=int, default=5, metavar="N",
                   help="untimed steps before each round")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds, each through every row (dptrain, PyTorch, each schedule) in turn; "
                   "the report gives medians over rounds (--ranks: and the spread)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table and "
                   "of the lines printed as each measurement finishes (a cut bench prints the "
                   "object of what finished)")
    p.add_argument("--ranks", help="data-parallel weak scaling over these rank counts, e.g. 1,2 "
                   "(batch per rank = --batch-size); compares --schedules; efficiency from the "
                   "median step and from wall time (differenced, with its spread over rounds)")
    p.add_argument("--reductions", default="auto",
                   help="with --ranks: how multi-rank rows sum their buckets when ranks share "
                   "nodes, comma separated: auto (as train does), flat, hierarchical; "
                   "'flat,hierarchical' gives a row of each, side by side")
    p.add_argument("--schedules", default="independent,blocking,overlap:poll,overlap:thread,auto",
                   help="with --ranks: schedules to compare, SYNC[:PROGRESS][@MB] (MB: that row's "
                   "bucket cap, else --bucket-mb), comma separated; 'auto' runs train's defaults "
                   "(--sync auto --bucket-mb auto); 'independent' runs the ranks without "
                   "exchanging gradients (the machine's ceiling)")
    p.add_argument("--launcher", metavar="CMD", help="with --ranks: start the multi-rank rows "
                   "with this command, across hosts (\"mpiexec -f hosts -ppn 2\", srun); split "
                   "like a shell would, run without one; the bench appends -n P")
    p.add_argument("--hostfile", metavar="FILE", help="with --ranks: --launcher \"mpiexec -f FILE\" "
                   "(MPICH's hydra; the working directory must be shared with the hosts)")
    p.add_argument("--bucket-mb", type=float, default=4.0, metavar="MB",
                   help="with --ranks: gradient bucket size cap")
    p.add_argument("--net-emulate", action="append", metavar="bw=..,lat=..",
                   help="with --ranks: emulate this network (repeat the flag to compare several); "
                   "switches to the overlap report")
    p.add_argument("--models", help="with --ranks and --net-emulate: comma list of models "
                   "(default: --model)")
    p.add_argument("--predict", action="store_true",
                   help="predict step time and speedup for P = 1..1024 (alpha-beta model)")
    p.add_argument("--lee", action="store_true",
                   help="with --predict: Lee et al.'s VGG-A case (FLOP-based, strong scaling)")
    p.add_argument("--net", help="with --predict: the network, as --net-emulate (default: "
                   "bw=10Gbit,lat=5us; with --lee bw=64Gbit,lat=2us, an Aries-class interconnect)")
    p.add_argument("--node-gflops", type=float,
                   help="with --predict: a node's sustained GFLOP/s, for FC-replicated gradients "
                   "(default: 100) and, with --lee, for every layer (default: 1000)")
    p.add_argument("--sync-bn", default="auto", choices=("auto", "on", "off"),
                   help="with --ranks: batch-norm statistics over all ranks (train --sync-bn); "
                   "auto: on for models with BatchNorm, as train does")
    p.add_argument("--no-bind", dest="bind", action="store_false",
                   help="with --ranks: do not bind ranks to cores")
    p.add_argument("--batch-sizes", help="a sweep over batch sizes, e.g. 64,256,1024, with "
                   "achieved TFLOP/s; --model may then list several models")
    p.add_argument("--device", default="cpu", help="with --batch-sizes: cpu or gpu "
                   "(PyTorch then runs on the same GPU with cuDNN)")
    p.add_argument("--json-out", help="also write the report as JSON here, rewritten after each "
                   "measurement (\"complete\": false until the end: a cut bench keeps what finished)")
    p.add_argument("--kernel-ops", action="store_true", help="with --device gpu: each CUDA kernel "
                   "family against the generic CuPy code, on --model's layer shapes at --batch-size "
                   "(median of --steps)")
    p.add_argument("--profile", action="store_true", help="forward and backward time of every "
                   "layer, the loss and the optimiser update, as medians over --steps and shares "
                   "of the step (CUDA events with --device gpu); --model may list several models")
    p.add_argument("--kernels", default="auto", help="with --batch-sizes: which CUDA kernels GPUs "
                   "use: auto (those that beat the generic code on a GPU: all but im2col), all, generic "
                   "(none), or families joined by + (im2col+col2im); "
                   "several choices, comma separated, are compared: auto,generic")
    p.add_argument("--cuda-graph", default="off", help="with --batch-sizes: off, on (each step "
                   "replayed from a CUDA graph, as train --cuda-graph on; GPU only), or off,on "
                   "to compare", metavar="off|on|off,on")


def run_bench(args) -> int:
    from ..train.setup import check_writable
    from ..train.validate import check_bench_numbers
    check_bench_numbers(args)
    from .inputs import check_batches_fit, check_network_specs
    check_network_specs(args)
    check_batches_fit(args)
    check_writable(args.json_out, "--json-out")          # before a long run, not after it
    if args.to_accuracy is not None:
        from .to_accuracy import run_to_accuracy
        return run_to_accuracy(args)
    from .launcher import parse_launcher
    if parse_launcher(args.launcher, args.hostfile) and not args.ranks:   # exit 2 before any run
        raise UsageError(f"{'--launcher' if args.launcher is not None else '--hostfile'} "
                         "starts the multi-rank rows of --ranks: give --ranks too")
    from .inputs import check_reference_mode
    shape = check_reference_mode(args)
    if args.profile:
        from .profile import run_profile
        return run_profile(args)
    if args.predict:
        from .predict import run_predict
        return run_predict(args)
    if args.ranks and args.net_emulate:
        from .overlap_bench import run_overlap_bench
        args.models = args.models or args.model
        return run_overlap_bench(args)
    if args.ranks:
        from .scaling import run_scaling_bench
        return run_scaling_bench(args)
    if args.kernel_ops:
        from .kernel_ops import run_kernel_ops
        return run_kernel_ops(args)
    if args.batch_sizes or args.device != "cpu":
        from .sweep import run_sweep
        args.batch_sizes = args.batch_sizes or str(args.batch_size)
        return run_sweep(args)
    from .. import models
    if args.model not in models.names() and shape is None:
        from ..suggest import did_you_mean
        raise UsageError(f"unknown model {args.model!r}{did_you_mean(args.model, models.names())} "
                         f"(choose {', '.join(models.names())})")
    for flag in ("batch_size", "threads", "steps", "rounds"):
        if getattr(args, flag) <= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be positive")
    from .step_report import run_step_bench
    return run_step_bench(args, shape)
