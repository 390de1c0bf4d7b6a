"""Training in several processes (accelerate launch, torchrun): who writes, what is summed.

Every process runs the same code on its own shard; only the main process writes files or
draws progress, and per-epoch figures are sums over all processes, so a run's files look
the same whatever the process count. Workstation only (torch, accelerate).
"""

from __future__ import annotations

import os
import sys

from edgecxr.core.errors import EdgecxrError
from edgecxr.core.progress import Reporter

# Set by torchrun / MPI in every process they start: this process is one of several already.
_STARTED_VARS = ("WORLD_SIZE", "LOCAL_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE",
                 "MV2_COMM_WORLD_SIZE")


def main_reporter(accelerator, reporter: Reporter) -> Reporter:
    """The caller's reporter in the main process, a silent one elsewhere (one progress bar)."""
    return reporter if accelerator.is_main_process else Reporter()


def sum_over_processes(accelerator, *values: float) -> list[float]:
    """Each value summed over all processes (float64, so image counts stay exact)."""
    if accelerator.num_processes == 1:
        return list(values)
    import torch

    local = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(local, reduction="sum").tolist()


def require_same_everywhere(accelerator, what: str, value, path) -> None:
    """Refuse to train when processes (machines) see different data: their shards would not
    partition one split."""
    if accelerator.num_processes == 1:
        return
    from accelerate.utils import gather_object

    seen = gather_object([value])
    if any(v != seen[0] for v in seen):
        raise EdgecxrError(f"the {accelerator.num_processes} training processes see different {what}",
                           path=path, fix="give every machine an identical copy of the data folder")


def cpu_launch_request(environ=os.environ, parent_argv: list[str] | None = None,
                       gpus: int | None = None) -> list[str] | None:
    """torchrun arguments when `accelerate launch --num_processes N` (N > 1) started only us.

    accelerate's launcher for the CPU (`--cpu`, or no flag on a machine without GPUs) starts
    ONE process whatever --num_processes says (it expects mpirun to start the others) and
    only leaves MASTER_ADDR behind, so training would silently run in one process. None
    when this is not that case.
    """
    if any(name in environ for name in _STARTED_VARS) or "MASTER_ADDR" not in environ:
        return None
    forced_cpu = environ.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1", "yes")
    args = _accelerate_launch_args(parent_argv if parent_argv is not None else _parent_argv())
    if args is None and not forced_cpu:
        return None  # MASTER_ADDR from elsewhere: not accelerate's one-process launcher
    if not forced_cpu and (gpus if gpus is not None else _gpu_count()):
        return None  # accelerate's GPU launchers start every process themselves
    if args is None or not args.num_processes or (args.num_processes < 2 and (args.num_machines or 1) < 2):
        raise EdgecxrError("accelerate launch --cpu asked for several processes but started one, "
                           "and edgecxr could not read how many from its command line",
                           fix="start the processes with torchrun: torchrun --nproc-per-node N "
                               "-m edgecxr.cli train ... (or accelerate launch --multi_gpu "
                               "--num_processes N ..., which runs torchrun)")
    machines = args.num_machines or 1
    if args.num_processes % machines:
        raise EdgecxrError(f"--num_processes {args.num_processes} is not a multiple of "
                           f"--num_machines {machines}", fix="give the total over all machines")
    return ["--nnodes", str(machines), "--node_rank", str(args.machine_rank or 0),
            "--nproc_per_node", str(args.num_processes // machines),
            "--master_addr", environ["MASTER_ADDR"],
            "--master_port", environ.get("MASTER_PORT", "29500"), "-m", "edgecxr.cli",
            *sys.argv[1:]]


def relaunch(torchrun_args: list[str]) -> int:
    """Start the requested processes with torch's own launcher; their exit status."""
    from torch.distributed import run
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        run.main(torchrun_args)
    except ChildFailedError as failed:  # the failing process has printed its own error
        return max(1, *(failure.exitcode for failure in failed.failures.values()))
    return 0


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def _parent_argv() -> list[str]:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
            return [part.decode() for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def _accelerate_launch_args(argv: list[str]):
    """accelerate's own parser over the launching command line (`accelerate launch ...`)."""
    for i, part in enumerate(argv):
        if part == "launch" or part.endswith(("accelerate-launch", "accelerate.commands.launch")):
            from accelerate.commands.launch import launch_command_parser

            try:
                return launch_command_parser().parse_args(argv[i + 1:])
            except SystemExit:
                return None
    return None
