"""Run the numbered notebooks headless with papermill: ``python -m univenc.reproduce --preset cpu``.

Executed copies go to ``runs/<preset>/`` (git-ignored). On a failure the runner names the notebook and the
failing cell, keeps the partial output notebook, and exits non-zero. ``--analysis-only`` trains nothing (notebook
01 only redraws the training curves and the zoo table); with ``--results FILE`` it reads everything from a
results file (:mod:`univenc.results`) and needs no checkpoint and no dataset.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from .data import REPO_ROOT, MissingDatasetsError, ensure_datasets
from .results import RESULTS_ENV
from .presets import get_preset

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DATA_NOTEBOOK, TRAINING_NOTEBOOK = "00_data", "01_train_zoo"


def notebooks(analysis_only: bool = False) -> list[Path]:
    nbs = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    return [nb for nb in nbs if not (analysis_only and nb.stem == DATA_NOTEBOOK)]


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
def _reading_results(results):
    """While the notebooks run, their kernels (which inherit the environment) read from ``results``."""
    if results is None:
        yield
        return
    before = os.environ.get(RESULTS_ENV)
    os.environ[RESULTS_ENV] = str(Path(results).resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RESULTS_ENV, None)
        else:
            os.environ[RESULTS_ENV] = before


def _execute(nbs, p, params, out_dir, analysis_only, only, jobs):
    import papermill as pm

    for nb in nbs:
        if only and nb.stem not in only:
            continue
        out = out_dir / nb.name
        t0 = time.perf_counter()
        print(f"[reproduce] {nb.name} (preset {p}) ...", flush=True)
        nb_params = params
        if nb.stem == TRAINING_NOTEBOOK:
            nb_params = {**params, "train": not analysis_only, **({"jobs": jobs} if jobs else {})}
        try:
            pm.execute_notebook(str(nb), str(out), parameters=nb_params, cwd=str(NOTEBOOKS_DIR), progress_bar=False,
                                kernel_name="python3")
        except pm.PapermillExecutionError as err:
            print(f"[reproduce] FAILED in {nb.name}, {_failing_cell(out)}\n"
                  f"[reproduce] partial output kept at {out}", file=sys.stderr)
            raise SystemExit(1) from err
        print(f"[reproduce] {nb.name} done in {time.perf_counter() - t0:.0f}s", flush=True)


def run(preset: str = "auto", data_root=None, figures_dir=None, out_dir=None, analysis_only: bool = False,
        only=None, jobs: int | None = None, results=None) -> float:
    """Execute the notebooks in order; returns the total wall time. Raises SystemExit(1) on a failure.

    Before any notebook (unless ``analysis_only``), every dataset is fetched into the data root; a required one
    that cannot be had stops the run with :class:`univenc.data.MissingDatasetsError` before any training. With
    ``results`` (a results file) nothing is trained and every notebook reads from that file."""
    p = get_preset(preset).name
    if results is not None and not Path(results).is_file():
        raise FileNotFoundError(f"no results file at {results}")
    analysis_only = analysis_only or results is not None
    if not analysis_only:
        status = ensure_datasets(root=data_root)
        print("[reproduce] data: " + ", ".join(f"{n} {s}" for n, s in status.items()), flush=True)
    out_dir = Path(out_dir or REPO_ROOT / "runs" / p)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"preset": p}
    if data_root is not None:
        params["data_root"] = str(data_root)
    if figures_dir is not None:
        params["figures_dir"] = str(figures_dir)
    total = time.perf_counter()
    with _reading_results(results):
        _execute(notebooks(analysis_only), p, params, out_dir, analysis_only, only, jobs)
    total = time.perf_counter() - total
    print(f"[reproduce] all notebooks done in {total:.0f}s; figures in {figures_dir or REPO_ROOT / 'figures'}")
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="auto", help="smoke, cpu, paper or auto (paper with a GPU, else cpu)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--figures-dir", default=None)
    ap.add_argument("--out-dir", default=None, help="where executed notebooks go (default runs/<preset>)")
    ap.add_argument("--analysis-only", action="store_true", help="train nothing: figures from what is trained")
    ap.add_argument("--results", help="a results file (data/results/<preset>/results.pt): figures and claims "
                    "from it alone, without checkpoints")
    ap.add_argument("--only", nargs="*", help="notebook stems to run, e.g. 02_spatial_eigenvectors")
    ap.add_argument("--jobs", type=int, help="networks trained at once (default: univenc.runner.default_jobs())")
    args = ap.parse_args(argv)
    try:
        run(args.preset, args.data_root, args.figures_dir, args.out_dir, args.analysis_only, args.only, args.jobs,
            args.results)
    except MissingDatasetsError as err:  # one message, no traceback: it says what to do
        print(f"[reproduce] stopped before any training.\n{err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
