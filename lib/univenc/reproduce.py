"""Run the numbered notebooks headless with papermill: ``python -m univenc.reproduce --preset cpu``.

Executed copies go to ``runs/<preset>/`` (git-ignored), with ``timings.csv``: each notebook's seconds and the peak
memory of its processes (the kernel and the jobs it starts), one row per notebook kept across runs. On a failure the
runner names the notebook and the failing cell, keeps the partial output notebook, and exits non-zero.
The notebooks that train (01, and 11 of ``make scaling``) run first, one at a time; the others only read what is
trained and record what they compute into one results file that any number of processes share (a value asked for
by two at once is computed once), so they then run as many at a time as there are job slots (``--jobs``; one per
core), each kernel on one thread, longest first by the last run's ``timings.csv`` (``--jobs 1``: one after
another). ``--analysis-only`` trains nothing (notebook 01 only redraws the training curves and the zoo table); with
``--results FILE`` it reads everything from a results file (:mod:`univenc.results`) and needs no checkpoint and no
dataset. ``--max-steps N`` is a dry run of the preset (:func:`univenc.presets.dry_run`): every network N optimiser
steps, then every notebook; its figures go to ``runs/<preset>-steps<N>/figures``, never over the committed ones.
Otherwise figures go to ``figures/`` for ``cpu`` (the committed run) and to ``figures/<preset>/`` for any other
preset. A bad argument gets one line and exit 2.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from .data import REPO_ROOT, CorruptDatasetError, MissingDatasetsError, ensure_datasets
from .presets import PresetError, get_preset
from .results import RESULTS_ENV

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DATA_NOTEBOOK, TRAINING_NOTEBOOK, SCALING_NOTEBOOK = "00_data", "01_train_zoo", "11_scaling"
TRAINING_NOTEBOOKS = (TRAINING_NOTEBOOK, SCALING_NOTEBOOK)  # they take ``train`` and ``jobs``


def notebooks(analysis_only: bool = False, scaling: bool = False) -> list[Path]:
    """The numbered notebooks in order: the scaling study (its own target, ``make scaling``) only with ``scaling``,
    the data notebook not with ``analysis_only``."""
    nbs = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    return [nb for nb in nbs if not (analysis_only and nb.stem == DATA_NOTEBOOK)
            and (scaling or nb.stem != SCALING_NOTEBOOK)]


def _failing_cell(path: Path) -> str:
    import nbformat
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return f"cell {i} ({first[:80]!r}): {out.get('ename')}: {out.get('evalue')}"
    return "unknown cell"


@contextlib.contextmanager
def _environment(values: dict):
    """Set the environment variables ``values`` for the block (kernels started in it inherit them), then restore
    what was there."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _reading_results(results):
    """While the notebooks run, their kernels (which inherit the environment) read from ``results``."""
    return _environment({} if results is None else {RESULTS_ENV: str(Path(results).resolve())})


class ReproduceError(ValueError):
    """A bad argument to the reproduction; the message says which and what is allowed."""


def _kernel_manager():
    """The kernels talk to papermill over local sockets (IPC) where the OS has them: over TCP, ipykernel warns
    under every notebook's line that its traffic is not encrypted."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"
            # Each kernel's sockets get their own path prefix: with the default one ("kernel-ipc" in the working
            # folder) two kernels started at once pick the same socket files and read each other's messages.
            self.ip = os.path.join(tempfile.gettempdir(), f"univenc-kernel-{uuid.uuid4().hex[:12]}")
    return IPCKernelManager if os.name == "posix" else AsyncKernelManager


class PeakMemory:
    """The peak, over the block, of the summed resident memory of this process's descendants (the notebook's
    kernel and the jobs it starts), sampled every ``every`` seconds in a thread. ``peak_gb`` after the block."""

    def __init__(self, every: float = 0.5):
        self.every, self.peak_gb = every, 0.0

    def _sample(self):
        import psutil
        me = psutil.Process()
        while not self._stop.wait(self.every):
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:  # it ended between the listing and the reading
                    pass
            self.peak_gb = max(self.peak_gb, total / 2 ** 30)

    def __enter__(self):
        import threading
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _execute(nbs, p, params, out_dir, analysis_only, jobs, at_once: int = 1) -> list[dict]:
    """Run ``nbs``: in order where ``at_once`` is 1; else as :func:`schedule` says, those that train first, in
    order, then the others ``at_once`` at a time, each in its own process with its kernel on one thread. Returns
    each notebook's seconds and peak memory. Raises SystemExit(1) when one fails, after the others end."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    def nb_params(nb):
        if nb.stem in TRAINING_NOTEBOOKS:
            return {**params, "train": not analysis_only, **({"jobs": jobs} if jobs else {})}
        return params
    if at_once <= 1:
        return [_execute_one(nb, p, nb_params(nb), out_dir) for nb in nbs]
    training, reading = schedule(nbs, analysis_only, out_dir / "timings.csv")
    done = [_execute_one(nb, p, nb_params(nb), out_dir) for nb in training]
    # one process per notebook run: papermill's kernel clients do not share a process safely
    with _one_thread_each(), ProcessPoolExecutor(at_once, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_execute_one, nb, p, nb_params(nb), out_dir) for nb in reading]
        done += [f.exception() or f.result() for f in futures]
    failed = [d for d in done if isinstance(d, BaseException)]
    if failed:
        raise failed[0]
    return done


def schedule(nbs: list[Path], analysis_only: bool, timings: Path) -> tuple[list[Path], list[Path]]:
    """(the notebooks of ``nbs`` that train, in order; the others, to run side by side after them): those by their
    seconds in the ``timings`` table of an earlier run, longest first, so that the longest does not start last
    beside nothing, and those the table does not list first, in their order. With ``analysis_only`` none trains."""
    import pandas as pd
    training = [nb for nb in nbs if nb.stem in TRAINING_NOTEBOOKS and not analysis_only]
    seconds = pd.read_csv(timings).set_index("notebook")["seconds"].to_dict() if timings.exists() else {}
    reading = sorted((nb for nb in nbs if nb not in training), key=lambda nb: -seconds.get(nb.stem, float("inf")))
    return training, reading


def _one_thread_each():
    """Kernels started inside run torch (and BLAS) on one thread: several of them share the cores."""
    return _environment({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


def _execute_one(nb: Path, p: str, nb_params: dict, out_dir: Path) -> dict:
    import papermill as pm

    out = out_dir / nb.name
    t0 = time.perf_counter()
    print(f"[reproduce] {nb.name} (preset {p}) ...", flush=True)
    try:
        with PeakMemory() as memory:
            pm.execute_notebook(str(nb), str(out), parameters=nb_params, cwd=str(NOTEBOOKS_DIR),
                                progress_bar=False, kernel_name="python3", kernel_manager_class=_kernel_manager())
    except pm.PapermillExecutionError as err:
        print(f"[reproduce] FAILED in {nb.name}, {_failing_cell(out)}\n"
              f"[reproduce] partial output kept at {out}", file=sys.stderr)
        raise SystemExit(1) from err
    seconds = time.perf_counter() - t0
    print(f"[reproduce] {nb.name} done in {seconds:.0f}s (peak memory {memory.peak_gb:.1f} GB)", flush=True)
    return dict(notebook=nb.stem, seconds=round(seconds, 1), peak_memory_gb=round(memory.peak_gb, 2))


def _selected(analysis_only: bool, only) -> list[Path]:
    if only:
        every = notebooks(scaling=True)
        unknown = sorted(set(only) - {nb.stem for nb in every})
        if unknown:
            raise ReproduceError(f"no notebook named {', '.join(unknown)}; the notebooks are "
                                 f"{', '.join(nb.stem for nb in every)}")
        return [nb for nb in notebooks(analysis_only, scaling=True) if nb.stem in only]
    return notebooks(analysis_only)


def run(preset: str = "auto", data_root=None, figures_dir=None, out_dir=None, analysis_only: bool = False,
        only=None, jobs: int | None = None, results=None, max_steps: int | None = None) -> float:
    """Execute the notebooks in order; returns the total wall time. Raises SystemExit(1) on a failure.

    Before any notebook (unless ``analysis_only``), every dataset is verified and fetched into the data root; a
    corrupt file, or a required dataset that cannot be had, stops the run before any training
    (:class:`univenc.data.CorruptDatasetError`, :class:`univenc.data.MissingDatasetsError`). With ``results`` (a
    results file) nothing is trained and every notebook reads from that file. ``max_steps``: a dry run of the
    preset (:func:`univenc.presets.dry_run`). Bad arguments raise :class:`ReproduceError` or
    :class:`univenc.presets.PresetError` before anything runs."""
    p = get_preset(preset, max_steps).name
    if jobs is not None and jobs < 1:
        raise ReproduceError(f"jobs must be a whole number >= 1, got {jobs}")
    if results is not None and not Path(results).is_file():
        raise ReproduceError(f"no results file at {results}: give the path of a results.pt "
                             f"(data/results/<preset>/results.pt)")
    analysis_only = analysis_only or results is not None
    nbs = _selected(analysis_only, only)
    if not analysis_only:
        status = ensure_datasets(root=data_root)
        print("[reproduce] data: " + ", ".join(f"{n} {s}" for n, s in status.items()), flush=True)
    out_dir = Path(out_dir or REPO_ROOT / "runs" / p)
    out_dir.mkdir(parents=True, exist_ok=True)
    if figures_dir is None:  # a dry run or another preset never writes over the committed figures
        from .figures import preset_figures_dir
        figures_dir = out_dir / "figures" if max_steps is not None else preset_figures_dir(p)
    figures_dir = Path(figures_dir).resolve()  # absolute: the notebooks run in notebooks/, not in the caller's folder
    params = {"preset": p, "figures_dir": str(figures_dir)}
    if data_root is not None:
        params["data_root"] = str(Path(data_root).resolve())
    total = time.perf_counter()
    from .runner import default_jobs
    at_once = jobs or default_jobs()
    with _reading_results(results):
        timings = _execute(nbs, p, params, out_dir, analysis_only, jobs, at_once)
    total = time.perf_counter() - total
    _write_timings(timings, out_dir / "timings.csv")
    print(f"[reproduce] all notebooks done in {total:.0f}s; figures in {figures_dir}; "
          f"times and peak memory in {out_dir / 'timings.csv'}")
    return total


def _write_timings(timings: list[dict], path: Path):
    """Write ``timings`` into ``path``, keeping the rows of notebooks this run did not execute: runs of one notebook
    at a time (``--only``) add up to one table. Each row says when its notebook finished (UTC)."""
    import pandas as pd

    from .storage import atomic_write
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    new = pd.DataFrame([{**t, "finished": finished} for t in timings],
                       columns=["notebook", "seconds", "peak_memory_gb", "finished"])
    if path.exists():
        old = pd.read_csv(path)
        new = pd.concat([old[~old["notebook"].isin(new["notebook"])], new]) if len(old) else new
    table = new.sort_values("notebook", kind="stable")
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="auto", help="smoke, cpu, paper or auto (paper with a GPU, else cpu)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--figures-dir", default=None, help="default: figures/ for cpu, figures/<preset>/ otherwise")
    ap.add_argument("--out-dir", default=None, help="where executed notebooks go (default runs/<preset>)")
    ap.add_argument("--analysis-only", action="store_true", help="train nothing: figures from what is trained")
    ap.add_argument("--results", help="a results file (data/results/<preset>/results.pt): figures and claims "
                    "from it alone, without checkpoints")
    ap.add_argument("--only", nargs="*", help="notebook stems to run, e.g. 02_spatial_eigenvectors")
    ap.add_argument("--jobs", type=int, help="networks trained at once, and notebooks run at once after the "
                    "training (default: univenc.runner.default_jobs())")
    ap.add_argument("--max-steps", type=int, help="a dry run: every network of the preset N optimiser steps, then "
                    "every notebook (figures in runs/<preset>-steps<N>/figures)")
    args = ap.parse_args(argv)
    try:
        run(args.preset, args.data_root, args.figures_dir, args.out_dir, args.analysis_only, args.only, args.jobs,
            args.results, args.max_steps)
    except (MissingDatasetsError, CorruptDatasetError) as err:  # one message, no traceback: it says what to do
        print(f"[reproduce] stopped before any training.\n{err}", file=sys.stderr)
        raise SystemExit(2) from None
    except (PresetError, ReproduceError) as err:
        print(f"[reproduce] error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
