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
(``univenc.training``). Interrupted (Ctrl-C, a notebook's stop button) or killed, a run stops the local jobs it
started, so that they never train on beside the next run's; Slurm jobs go on.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .catalogue import ABLATION_NETS, ABLATIONS, ZOO, ZOO_BY_NAME
from .data import REPO_ROOT, data_root
from .presets import get_preset
from .zoo import (ablation_checkpoint, ablation_config, available, checkpoint_path, is_trained, sweep_per_class,
                  train_ablation, train_ablations, train_config, train_images, train_zoo)

__all__ = ["JobOptions", "Task", "zoo_tasks", "run_zoo", "run_tasks", "train_task", "train_tasks", "default_jobs",
           "ZooJobsFailed", "longest_first", "estimated_seconds"]


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
    """One network to train: a zoo entry (``setting`` None) or one network of the ablation sweep; of the run's
    preset, or of its own ``preset`` (a variant: the scaling study's points)."""
    name: str
    setting: str | None = None
    role: str | None = None
    preset: str | None = None

    @property
    def label(self) -> str:
        label = self.name if self.setting is None else f"{self.name} ({self.setting})"
        return label if self.preset is None else f"{label} [{self.preset}]"

    def preset_of(self, preset):
        """Its preset: its own, else the run's ``preset``."""
        return get_preset(self.preset or preset)

    def checkpoint(self, preset, root=None) -> Path:
        p = self.preset_of(preset)
        if self.setting is None:
            return checkpoint_path(self.name, p, root)
        return ablation_checkpoint(_ablation(self.setting), self.role, p, root)

    def trained(self, preset, root=None) -> bool:
        """Whether its final checkpoint exists and was trained with today's recipe (:func:`univenc.zoo.is_trained`;
        one trained with another recipe is set aside and trained again)."""
        spec, p = ZOO_BY_NAME[self.name], self.preset_of(preset)
        if self.setting is None:
            return is_trained(spec, p, root)
        return is_trained(spec, p, root, sweep_per_class(spec, p), self.config(p), self.checkpoint(p, root))

    def config(self, preset):
        """Its training recipe (:class:`univenc.training.TrainConfig`)."""
        spec, p = ZOO_BY_NAME[self.name], self.preset_of(preset)
        return train_config(spec, p) if self.setting is None else ablation_config(_ablation(self.setting), spec, p)

    def images(self, preset) -> int:
        """Training images it sees over all its epochs (the work a job does, for projections)."""
        spec, p = ZOO_BY_NAME[self.name], self.preset_of(preset)
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
        if path not in seen and not (missing_only and t.trained(p, root)):
            seen.add(path)
            out.append(t)
    return out


def train_task(task: Task, preset, root=None, threads: int | None = None) -> dict:
    """Train ``task`` in this process (under its network's lock) with ``threads`` torch threads. Returns
    {network, status, seconds}: status "trained", "exists", "skipped: ..." (another runner holds its lock)."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    preset = task.preset_of(preset)
    if task.setting is None:
        out = train_zoo(preset, only=[task.name], root=root, progress=False).iloc[0].to_dict()
    else:
        out = train_ablation(_ablation(task.setting), task.role, preset, root, progress=False)
    return {"network": task.label, "status": out["status"], "seconds": round(out.get("seconds", 0.0), 1)}


def train_tasks(tasks: list[Task], preset, root=None, threads: int | None = None, status_file=None,
                parent: tuple[int, float] | None = None) -> list[dict]:
    """What one job runs: go through ``tasks`` in order and train each one that is neither trained nor held by
    another runner, one after another in this process, so that the job pays its start-up (Python, torch, the
    datasets) once. Several such jobs given the same list share it out between them through the networks' locks.
    A network whose training raises is reported "failed: ..." (its traceback goes to the job's log) and the job
    goes on with the next. ``status_file``: where the job writes the label of the network it trains (progress).
    ``parent``: (pid, start time) of the process that started this job on this machine; the job stops when that
    process is gone (:func:`_stop_when_gone`)."""
    import traceback

    from .storage import atomic_write
    if parent is not None:
        _stop_when_gone(*parent)
    p = get_preset(preset)
    rows = []
    for task in tasks:
        if task.trained(p, root):
            continue
        if status_file is not None:
            atomic_write(status_file, lambda tmp: Path(tmp).write_text(task.label))
        try:
            rows.append(train_task(task, p, root, threads))
        except Exception as err:  # this network failed; its last.pt (if any) stays for the next run
            traceback.print_exc()
            rows.append({"network": task.label, "status": f"failed: {_last_line(err)}"})
    return rows


def _process_identity() -> tuple[int, float]:
    """(pid, start time) of this process: a pid alone may be reused by another process once the first has ended."""
    import psutil
    proc = psutil.Process()
    return proc.pid, proc.create_time()


def _stop_when_gone(pid: int, started: float, every_s: float = 1.0) -> None:
    """Interrupt this process's main thread (a KeyboardInterrupt in its training, whose last epoch's ``last.pt`` the
    next run resumes) once the process ``(pid, started)`` has ended. A local job's starter killed outright (kill -9, a
    notebook kernel shut down) cannot stop its jobs, which would otherwise train on beside the next run's jobs:
    two jobs too many on the cores, each many times slower."""
    import _thread
    import threading

    import psutil

    def alive():
        try:
            proc = psutil.Process(pid)
            return proc.create_time() == started and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def watch():
        while alive():
            time.sleep(every_s)
        print(f"univenc: the process that started this job (pid {pid}) has ended: the job stops; its network "
              f"resumes from its last epoch on the next run", file=sys.stderr, flush=True)
        _thread.interrupt_main()

    threading.Thread(target=watch, name="univenc-parent-watch", daemon=True).start()


def _stop_local_jobs(jobs, wait_s: float = 30.0) -> int:
    """Cancel this machine's unfinished jobs (submitit sends SIGINT, then SIGKILL a second later) and wait up to
    ``wait_s`` for them to end. Returns how many were running."""
    running = [job for job in jobs if not job.done()]
    for job in running:
        job.cancel(check=False)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not all(job.done() for job in running):
        time.sleep(0.05)
    return len(running)


def _last_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[-1][:300] if text else ''}"


class ZooJobsFailed(RuntimeError):
    """Networks of the zoo failed to train. The message names each one, its last error line and its job's log;
    ``table`` is the run's status table."""

    def __init__(self, table: pd.DataFrame):
        failed = table[table.status.str.startswith("failed")]
        lines = [f"{len(failed)} of {len(table)} networks failed to train:"]
        lines += [f"  - {r.network}: {r.status[len('failed: '):]} (log: {r.log})" for r in failed.itertuples()]
        lines.append("The trained networks are kept. Fix the cause and rerun: every failed network resumes from its "
                     "last checkpoint.")
        super().__init__("\n".join(lines))
        self.table = table


def estimated_seconds(tasks: list[Task], preset, measured: pd.DataFrame | None = None) -> list[float]:
    """Each task's training time, estimated from measured seconds per training image (``zoo.csv``: by network name,
    else by architecture, else the median) times the images it sees (:meth:`Task.images`), times the square of its
    width over the measured one for the VGGs. Without a measured table, the images (times that factor) alone."""
    p = get_preset(preset)

    def cost(t):  # a VGG's cost per image grows as its width squared; torchvision's ResNet has its own width
        spec = ZOO_BY_NAME[t.name]
        return t.images(p) * ((t.preset_of(p).width / width) ** 2 if spec.arch in ("vgg", "factorized") else 1.0)
    if measured is None or measured.empty:
        width = p.width
        return [float(cost(t)) for t in tasks]
    width = get_preset(measured.preset.iloc[0]).width if "preset" in measured else p.width
    rate = measured.seconds / (measured.train_images * measured.epochs)
    by_name, by_arch = dict(zip(measured.name, rate)), rate.groupby(measured.arch).median()
    default = float(rate.median())
    return [cost(t) * by_name.get(t.name, by_arch.get(ZOO_BY_NAME[t.name].arch, default)) for t in tasks]


MEASURED_TABLE = REPO_ROOT / "figures" / "zoo.csv"


def longest_first(tasks: list[Task], preset, measured=None) -> list[Task]:
    """``tasks`` ordered by :func:`estimated_seconds`, longest first (default table: the committed
    ``figures/zoo.csv``), so that the jobs that share them end at about the same time."""
    if measured is None and MEASURED_TABLE.exists():
        measured = pd.read_csv(MEASURED_TABLE)
    seconds = estimated_seconds(tasks, preset, measured)
    order = sorted(range(len(tasks)), key=lambda i: (-seconds[i], i))
    return [tasks[i] for i in order]


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
    return ex, threads, folder


SLURM_ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
               "TIMEOUT"}


def _slurm_ended(job) -> bool:
    """Whether Slurm says that ``job`` has ended, from ``squeue``. submitit asks ``sacct``, which needs accounting
    storage: without it, submitit never learns that a job killed before writing its result (scancel, preemption,
    time limit) has ended, and waiting on it would never return."""
    import subprocess
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", str(job.job_id), "-o", "%T"], capture_output=True,
                         text=True)
    if out.returncode != 0:  # "Invalid job id": gone from the controller's memory, so long ended
        return "invalid job id" in out.stderr.lower()
    states = out.stdout.split()
    return bool(states) and all(state in SLURM_ENDED for state in states)


def _epochs_done(task: Task, p, root) -> int:
    log = task.checkpoint(p, root).parent / "log.csv"
    try:
        with open(log) as fh:
            return max(0, sum(1 for _ in fh) - 1)
    except OSError:
        return 0


class _Bars:
    """One overall bar (networks done / total) and one per job: the network it trains and its epochs."""

    def __init__(self, tasks, p, root, jobs: int, threads: int, progress: bool):
        self.p, self.root, self.by_label = p, root, {t.label: t for t in tasks}
        self.overall = tqdm(total=len(tasks), desc=f"zoo {p.name} ({jobs} jobs x {threads} threads)",
                            disable=not progress, position=0)
        self.jobs = [tqdm(total=1, desc="starting", position=i + 1, leave=False, disable=not progress)
                     for i in range(jobs)]
        self.progress = progress

    def update(self, status_files):
        if not self.progress:
            return
        for bar, status in zip(self.jobs, status_files):
            try:
                task = self.by_label[status.read_text()]
            except (OSError, KeyError):
                continue
            if bar.desc != task.label:
                bar.reset(total=task.config(self.p).epochs)
                bar.set_description_str(task.label)
            bar.update(_epochs_done(task, self.p, self.root) - bar.n)
        done = sum(t.checkpoint(self.p, self.root).exists() for t in self.by_label.values())
        self.overall.update(done - self.overall.n)

    def close(self):
        for bar in self.jobs:
            bar.close()
        self.overall.close()


def run_zoo(preset="auto", root=None, options: JobOptions | None = None, only=None, ablations: bool = True,
            progress: bool = True, poll_s: float = 0.5, check: bool = True) -> pd.DataFrame:
    """Train what is missing of the zoo (and the sweep of notebook 08) in at most ``options.jobs`` jobs at once.

    The networks are ordered longest first (:func:`longest_first`) and each job trains them one after another
    (:func:`train_tasks`), taking the next one that no other job holds: the jobs share the list without a
    coordinator, through the networks' locks. Shows one overall bar (networks done / total) and one bar per job
    (the network it trains, its epochs). Returns one row per network: network, status, seconds, log (its job's
    log). With ``check`` (default), raises :class:`ZooJobsFailed` naming every network that failed, once all
    jobs have ended; rerunning resumes them."""
    return run_tasks(zoo_tasks(preset, root, only, ablations), preset, root, options, progress, poll_s, check)


def run_tasks(tasks: list[Task], preset="auto", root=None, options: JobOptions | None = None, progress: bool = True,
              poll_s: float = 0.5, check: bool = True) -> pd.DataFrame:
    """:func:`run_zoo` of an explicit list of tasks (each of ``preset`` unless it names its own; those trained
    already are left out)."""
    p = get_preset(preset)
    options = options or JobOptions()
    pending = longest_first([t for t in tasks if not t.checkpoint(p, root).exists()], p)
    # A network initialised from another's covariances waits for it: a second wave, once the first has ended.
    labels = {(t.name, t.preset_of(p).name) for t in pending}
    waits = [t for t in pending if (ZOO_BY_NAME[t.name].init_source, t.preset_of(p).name) in labels]
    tables = [_run_wave(wave, p, root, options, progress, poll_s)
              for wave in ([t for t in pending if t not in waits], waits) if wave]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["network", "status", "seconds",
                                                                                     "log"])
    if check and table.status.str.startswith("failed").any():
        raise ZooJobsFailed(table)
    return table


def _run_wave(pending, p, root, options, progress, poll_s) -> pd.DataFrame:
    """Train ``pending`` in at most ``options.jobs`` jobs that share the list (:func:`train_tasks`)."""
    import uuid

    ex, threads, folder = _executor(options, p, root)
    n_jobs = min(options.jobs, len(pending))
    run_dir = folder / "status" / uuid.uuid4().hex[:8]
    run_dir.mkdir(parents=True, exist_ok=True)
    status_files = [run_dir / f"job{i}.txt" for i in range(n_jobs)]
    local = options.executor == "local"
    parent = _process_identity() if local else None  # local jobs end with this process
    jobs = [ex.submit(train_tasks, pending, p, root, threads, status_files[i], parent) for i in range(n_jobs)]
    bars = _Bars(pending, p, root, n_jobs, threads, progress)
    ended, last_asked = set(), time.monotonic()
    try:
        while len(ended) < len(jobs):
            time.sleep(poll_s)
            bars.update(status_files)
            ask_slurm = not local and time.monotonic() - last_asked > 10
            last_asked = time.monotonic() if ask_slurm else last_asked
            ended |= {i for i, job in enumerate(jobs)
                      if i not in ended and (job.done() or (ask_slurm and _slurm_ended(job)))}
    except BaseException as err:  # Ctrl-C, a notebook's interrupt: this machine's jobs stop too, the cluster's go on
        bars.close()
        if local:
            stopped = _stop_local_jobs(jobs)
            print(f"univenc: {type(err).__name__}: stopped {stopped} local job(s). Their networks resume from "
                  f"their last epoch on the next run.", file=sys.stderr, flush=True)
        else:
            ids = " ".join(str(job.job_id) for job in jobs)
            print(f"univenc: {type(err).__name__}: the Slurm jobs go on (scancel {ids} stops them).",
                  file=sys.stderr, flush=True)
        raise
    bars.update(status_files)
    bars.close()
    return _status_table(pending, jobs, status_files, p, root)


def _status_table(pending, jobs, status_files, p, root) -> pd.DataFrame:
    """One row per pending network, from what the jobs reported. When several jobs speak of one network, a
    training (or a finished network) outranks a failure, which outranks a skip; a network whose job died while
    training it, and that no job finished, is "failed"."""
    by_label = {t.label: t for t in pending}

    def rank(status):
        return 0 if status.startswith("skipped") else 1 if status.startswith("failed") else 2

    rows = {}
    for job, status_file in zip(jobs, status_files):
        log = str(job.paths.stderr)
        try:
            if not job.done():  # Slurm says it ended, and it left no result
                raise RuntimeError(f"Slurm job {job.job_id} ended without a result: cancelled, preempted or out of "
                                   f"time")
            reported = job.result()
        except Exception as err:  # the job itself died (kill -9, preemption, time limit): its network resumes
            current = status_file.read_text() if status_file.exists() else None
            reported = [{"network": current, "status": f"failed: its job died ({_last_line(err)})"}] \
                if current in by_label else []
        for row in reported:
            old = rows.get(row["network"])
            if old is None or rank(row["status"]) > rank(old["status"]):
                rows[row["network"]] = {**row, "log": log}
    table = []
    for task in pending:
        row = rows.get(task.label)
        if task.checkpoint(p, root).exists() and (row is None or rank(row["status"]) < 2):
            row = {"network": task.label, "status": "trained", "log": (row or {}).get("log", "")}
        elif row is None:
            row = {"network": task.label, "status": "failed: not trained (its job ended before reaching it)", "log": ""}
        table.append(row)
    return pd.DataFrame(table, columns=["network", "status", "seconds", "log"])


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
    try:
        unknown = sorted(set(args.only or ()) - set(ZOO_BY_NAME))
        if unknown:
            raise ValueError(f"no zoo network named {', '.join(unknown)} (univenc.catalogue.ZOO lists them)")
        if args.jobs is None and args.executor == "local":
            print(train_zoo(args.preset, args.only, args.root).to_string())
            if args.only is None:
                print(train_ablations(args.preset, args.root).to_string())
        else:
            options = JobOptions(args.executor, args.jobs or 1, args.threads, args.partition, args.time, args.gpus,
                                 args.mem)
            print(run_zoo(args.preset, args.root, options, args.only).to_string())
    except ZooJobsFailed as err:
        print(err.table.to_string(), file=sys.stderr)
        print(f"univenc zoo: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except ValueError as err:  # a bad preset, network name or option: one line
        print(f"univenc zoo: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"total wall time {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
