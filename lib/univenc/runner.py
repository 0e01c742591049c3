"""The zoo as jobs: every network trains in a job of its own, on this machine or on a Slurm cluster (submitit).

    univenc zoo --preset cpu --jobs 2                      # local processes, 1 thread each here
    univenc zoo --preset paper --jobs 40 --executor slurm --partition gpu --gpus 1 --time 60

(``python -m univenc.runner`` is the same command.)

One code path for both: submitit's local executor starts each job as a process of this machine, its Slurm
executor submits it to the cluster; at most ``jobs`` run at once. On CPU a job gets ``cores // jobs`` threads,
so the jobs share the cores without oversubscription (two 2-thread trainings on 2 cores ran 13x slower).
A per-network file lock (``univenc.storage.exclusive_lock``, taken by ``train_zoo``) makes sure two runners
(two shells, two cluster jobs) never train the same network; a job killed mid-epoch (kill -9, preemption, time
limit) leaves its ``last.pt``, and the next run resumes it to the same weights as an uninterrupted run
(``univenc.training``).
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .catalogue import ABLATION_NETS, ABLATIONS, ZOO, ZOO_BY_NAME
from .data import data_root
from .presets import get_preset
from .zoo import (ablation_checkpoint, ablation_config, available, checkpoint_path, sweep_per_class, train_ablation,
                  train_ablations, train_config, train_images, train_zoo)

__all__ = ["JobOptions", "Task", "zoo_tasks", "run_zoo", "train_task", "default_jobs"]


@dataclass
class JobOptions:
    """How the zoo's jobs run. Plain data: ``JobOptions(jobs=2)``, ``JobOptions("slurm", 40, partition="gpu")``."""
    executor: str = "local"        # "local" (processes of this machine) or "slurm"
    jobs: int = 1                  # at most this many at once
    threads: int | None = None     # torch threads per job; None: this machine's cores // jobs
    partition: str | None = None   # Slurm partition
    time_min: int = 240            # time limit per job (minutes)
    gpus: int = 0                  # GPUs per job (Slurm)
    mem_gb: float | None = None    # memory per job (Slurm)
    folder: str | None = None      # submitit's logs; default <data root>/jobs/<preset>

    def __post_init__(self):
        if self.executor not in ("local", "slurm"):
            raise ValueError(f"executor must be 'local' or 'slurm', got {self.executor!r}")
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")

    def threads_per_job(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.jobs)


def default_jobs() -> int:
    """Jobs at once for ``make reproduce``. CPU: one single-threaded job per core (``benchmarks/bench_zoo.py``
    measures it against one job with all the threads). GPU: one, until several jobs on one GPU are measured."""
    import torch
    if torch.cuda.is_available():
        return 1
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Task:
    """One network to train: a zoo entry (``setting`` None) or one network of the ablation sweep."""
    name: str
    setting: str | None = None
    role: str | None = None

    @property
    def label(self) -> str:
        return self.name if self.setting is None else f"{self.name} ({self.setting})"

    def checkpoint(self, preset, root=None) -> Path:
        if self.setting is None:
            return checkpoint_path(self.name, preset, root)
        return ablation_checkpoint(_ablation(self.setting), self.role, preset, root)

    def config(self, preset):
        """Its training recipe (:class:`univenc.training.TrainConfig`)."""
        spec = ZOO_BY_NAME[self.name]
        return train_config(spec, preset) if self.setting is None else ablation_config(_ablation(self.setting),
                                                                                       spec, preset)

    def images(self, preset) -> int:
        """Training images it sees over all its epochs (the work a job does, for projections)."""
        spec, p = ZOO_BY_NAME[self.name], get_preset(preset)
        per_class = None if self.setting is None else sweep_per_class(spec, p)
        return train_images(spec, p, per_class) * self.config(p).epochs


def _ablation(setting: str):
    return next(a for a in ABLATIONS if a.name == setting)


def zoo_tasks(preset, root=None, only=None, ablations: bool = True, missing_only: bool = True) -> list[Task]:
    """The networks still to train (all of them with ``missing_only=False``): zoo entries (those named in
    ``only``) whose dataset is present, then the sweep's networks (each once: a baseline network may be the
    zoo's own)."""
    p = get_preset(preset)
    specs = [s for s in ZOO if only is None or s.name in only]
    tasks = [Task(s.name) for s in specs if available(s, root)]
    if ablations and only is None:
        tasks += [Task(name, ab.name, role) for ab in ABLATIONS for role, name in ABLATION_NETS.items()]
    seen, out = set(), []
    for t in tasks:
        path = t.checkpoint(p, root)
        if path not in seen and not (missing_only and path.exists()):
            seen.add(path)
            out.append(t)
    return out


def train_task(task: Task, preset, root=None, threads: int | None = None) -> dict:
    """What one job runs: train ``task`` (under its network's lock) with ``threads`` torch threads."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    if task.setting is None:
        out = train_zoo(preset, only=[task.name], root=root, progress=False).iloc[0].to_dict()
    else:
        out = train_ablation(_ablation(task.setting), task.role, preset, root, progress=False)
    return {"network": task.label, "status": out["status"], "seconds": round(out.get("seconds", 0.0), 1)}


def _executor(options: JobOptions, p, root):
    import submitit
    folder = Path(options.folder or data_root(root) / "jobs" / p.name)
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=options.executor)
    threads = options.threads_per_job()
    params = dict(timeout_min=options.time_min, cpus_per_task=threads, name=f"univenc-{p.name}")
    if options.executor == "slurm":
        params.update(gpus_per_node=options.gpus, slurm_partition=options.partition)
        if options.mem_gb:
            params["mem_gb"] = options.mem_gb
    ex.update_parameters(**params)
    return ex, threads


def _epochs_done(task: Task, p, root) -> int:
    log = task.checkpoint(p, root).parent / "log.csv"
    try:
        with open(log) as fh:
            return max(0, sum(1 for _ in fh) - 1)
    except OSError:
        return 0


def run_zoo(preset="auto", root=None, options: JobOptions | None = None, only=None, ablations: bool = True,
            progress: bool = True, poll_s: float = 0.5) -> pd.DataFrame:
    """Train what is missing of the zoo (and the sweep of notebook 08) as jobs, at most ``options.jobs`` at
    once. Shows one overall bar (networks done / total, ETA) and one bar per running network (its epochs).
    Returns one row per network: network, status, seconds (a job that died has status "failed: ...";
    rerunning resumes it)."""
    p = get_preset(preset)
    options = options or JobOptions()
    pending = zoo_tasks(p, root, only, ablations)
    ex, threads = _executor(options, p, root)

    overall = tqdm(total=len(pending), desc=f"zoo {p.name} ({options.jobs} jobs x {threads} threads)",
                   disable=not progress, position=0)
    running, rows, free = {}, [], list(range(1, options.jobs + 1))  # free: terminal rows for the bars
    while pending or running:
        while pending and len(running) < options.jobs:
            task, slot = pending.pop(0), free.pop(0)
            job = ex.submit(train_task, task, p, root, threads)
            bar = tqdm(total=task.config(p).epochs, desc=task.label, position=slot, leave=False, disable=not progress)
            running[job] = (task, bar, slot)
        time.sleep(poll_s)
        for job, (task, bar, slot) in list(running.items()):
            bar.update(_epochs_done(task, p, root) - bar.n)
            if not job.done():
                continue
            try:
                rows.append(job.result())
            except Exception as err:  # a job that died: its last.pt stays, the next run resumes it
                last = str(err).strip().splitlines()[-1][:200] if str(err).strip() else ""
                rows.append({"network": task.label, "status": f"failed: {type(err).__name__}: {last}"})
            bar.close()
            free = sorted(free + [slot])
            del running[job]
            overall.update(1)
    overall.close()
    return pd.DataFrame(rows, columns=["network", "status", "seconds"])


def main(argv=None):
    ap = argparse.ArgumentParser(prog="univenc zoo", description="Train what is missing of the zoo and of the sweep "
                                 "of notebook 08: in this process, or as jobs (--jobs) on this machine or a Slurm "
                                 "cluster.")
    ap.add_argument("--preset", default="auto")
    ap.add_argument("--only", nargs="*", help="zoo networks to train (default: all, and the sweep)")
    ap.add_argument("--root")
    ap.add_argument("--jobs", type=int, help="run the networks as jobs, at most JOBS at once")
    ap.add_argument("--executor", choices=["local", "slurm"], default="local")
    ap.add_argument("--threads", type=int, help="torch threads per job (default: cores // jobs)")
    ap.add_argument("--partition", help="Slurm partition")
    ap.add_argument("--time", type=int, default=240, help="time limit per job, minutes")
    ap.add_argument("--gpus", type=int, default=0, help="GPUs per job (Slurm)")
    ap.add_argument("--mem", type=float, help="memory per job, GB (Slurm)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.jobs is None and args.executor == "local":
        print(train_zoo(args.preset, args.only, args.root).to_string())
        if args.only is None:
            print(train_ablations(args.preset, args.root).to_string())
    else:
        options = JobOptions(args.executor, args.jobs or 1, args.threads, args.partition, args.time, args.gpus,
                             args.mem)
        print(run_zoo(args.preset, args.root, options, args.only).to_string())
    print(f"total wall time {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
