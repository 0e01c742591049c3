"""Results that travel without checkpoints: everything the figures and the claims read, in one file per preset.

Every analysis function of :mod:`univenc.experiments` that reads checkpoints is :func:`recorded`: when it
computes, its value is also stored in ``<data root>/results/<preset>/results.pt`` under a key made of its name
and arguments; when a results file is given (``UNIVENC_RESULTS=path``, ``make figures RESULTS=path``), the
value is read from that file and no checkpoint or dataset is touched. A GPU or cluster run sends back this
file (a few MB), not gigabytes of weights, and ``make figures RESULTS=path`` rebuilds every figure and the
claims report from it. Large float64 arrays (cosine matrices) are kept in float32, in both cases, so that
figures made from the file and from the checkpoints are the same. Any number of processes may record into one
file at once (a notebook in JupyterLab while ``make figures`` runs, jobs on a cluster's shared disk): each write
re-reads and merges under a lock (:func:`record`).

A recorded value is also reused instead of computed again while nothing it may depend on has changed: each entry
keeps a digest of its inputs (:func:`inputs_digest`: the library's source, the torch version, the preset's
settings and every file of the preset's zoo, with the zoos of its variants where a function reads them, by name,
size and modification time). A notebook then reads what an earlier one computed (the claims of notebook 06 reuse
the comparisons of 04 and 05); any retrained network or changed line of the library's code (not its comments or
docstrings) makes it compute again.
``UNIVENC_RECOMPUTE=1`` computes every value again.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import hashlib
import inspect
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data import data_root
from .presets import get_preset, is_variant
from .storage import LockUnavailable, file_lock, file_locks, load_checkpoint, save_torch

__all__ = ["RESULTS_ENV", "RECOMPUTE_ENV", "recorded", "record", "lookup", "results_file", "results_source",
           "code_digest", "source_digest", "settings_digest", "inputs_digest", "MissingResultError", "same_value"]

RESULTS_ENV = "UNIVENC_RESULTS"
RECOMPUTE_ENV = "UNIVENC_RECOMPUTE"  # "1": compute every recorded value again, even where its inputs are unchanged
_SKIPPED_ARGUMENTS = ("preset", "root", "progress", "batches")
_loaded: dict = {}


class MissingResultError(KeyError):
    """The results file has no entry for what a notebook asks."""

    def __str__(self):
        return self.args[0]


def results_file(preset, root=None) -> Path:
    """Where a preset's results are recorded: ``<data root>/results/<preset>/results.pt``."""
    return data_root(root) / "results" / get_preset(preset).name / "results.pt"


def results_source() -> Path | None:
    """The results file to read from instead of computing (``$UNIVENC_RESULTS``), or None."""
    path = os.environ.get(RESULTS_ENV)
    return Path(path) if path else None


def source_digest(folder) -> str:
    """A digest of what the source files under ``folder`` (``*.py``, ``*.c``) compute: of each Python file its
    syntax tree without docstrings (comments, docstrings and layout change nothing), of a C file its bytes; each
    named by its path relative to ``folder``."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".py", ".c")):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        if path.suffix == ".py":
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                body = getattr(node, "body", None)
                if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                        and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                        and isinstance(body[0].value.value, str)):
                    node.body = body[1:] or [ast.Pass()]
            h.update(ast.dump(tree).encode())
        else:
            h.update(path.read_bytes())
    return h.hexdigest()


@functools.cache
def code_digest() -> str:
    """The library as loaded (:func:`source_digest` of the package, read once per process) and the torch version."""
    return hashlib.sha256(f"{torch.__version__}\0{source_digest(Path(__file__).parent)}".encode()).hexdigest()


def settings_digest(preset) -> str:
    """The library's code (:func:`code_digest`) and the preset's settings (its probe images, draws, recipes, ...):
    what every value computed at ``preset`` depends on besides the files it reads."""
    return hashlib.sha256(f"{code_digest()}\0{get_preset(preset)!r}".encode()).hexdigest()


def inputs_digest(preset, root=None, variants: bool = False) -> str:
    """What a recorded value of ``preset`` may depend on besides its arguments: :func:`settings_digest`, and the
    name, size and modification time of every file in the preset's zoo (``zoo/<name>``), and with ``variants`` also
    in its variants' zoos (``zoo/<name>-*``: the scaling study's points). Retraining, resuming or moving any network
    changes it."""
    preset = get_preset(preset)
    h = hashlib.sha256(settings_digest(preset).encode())
    zoo = data_root(root) / "zoo"
    dirs = [zoo / preset.name] + ([d for d in sorted(zoo.glob(f"{preset.name}-*")) if is_variant(d.name, preset.name)]
                                   if variants else [])  # not a benchmark's zoo such as cpu-fp32
    for d in dirs:
        for path in sorted(d.rglob("*")) if d.is_dir() else ():
            if path.is_file() and not path.name.startswith("."):  # lock files change nothing
                st = path.stat()
                h.update(f"{path.relative_to(zoo)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _compact(value):
    """float64 arrays of 4096 entries or more become float32 (cosine matrices: 4x smaller files)."""
    if isinstance(value, np.ndarray) and value.dtype == np.float64 and value.size >= 4096:
        return value.astype(np.float32)
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_compact(v) for v in value)
    return value


_MISSING = object()


def same_value(old, new) -> bool:
    """True when ``new`` equals the recorded ``old`` exactly (NaN equal to NaN): arrays, tensors, DataFrames,
    Series, dicts, lists, tuples, dataclasses and plain values, nested. Anything else counts as changed.
    A value recorded already is not written again: later notebooks recompute much of what earlier ones
    recorded, and every write rewrites the whole file."""
    if type(old) is not type(new):
        return False
    if isinstance(new, np.ndarray):
        if old.shape != new.shape or old.dtype != new.dtype:
            return False
        try:
            return bool(np.array_equal(old, new, equal_nan=new.dtype.kind in "fc"))
        except TypeError:  # object arrays
            return False
    if isinstance(new, torch.Tensor):
        return same_value(old.detach().cpu().numpy(), new.detach().cpu().numpy())
    if isinstance(new, pd.DataFrame):
        return (list(old.columns) == list(new.columns) and old.index.equals(new.index)
                and all(same_value(old[c], new[c]) for c in new.columns) and same_value(old.attrs, new.attrs))
    if isinstance(new, pd.Series):
        if old.dtype != new.dtype or not old.index.equals(new.index):
            return False
        if new.dtype == object:  # lists, arrays, NaN in cells: compared as values (pandas' equals says [nan] != [nan])
            return all(same_value(a, b) for a, b in zip(old.tolist(), new.tolist()))
        return bool(old.equals(new)) and same_value(old.attrs, new.attrs)
    if isinstance(new, dict):
        return list(old) == list(new) and all(same_value(old[k], new[k]) for k in new)
    if isinstance(new, (list, tuple)):
        return len(old) == len(new) and all(same_value(a, b) for a, b in zip(old, new))
    if dataclasses.is_dataclass(new):
        return same_value(vars(old), vars(new))
    if isinstance(new, float):
        return old == new or (math.isnan(old) and math.isnan(new))
    if isinstance(new, (str, int, bool, bytes, type(None), np.generic)):
        return bool(old == new) or (isinstance(new, np.floating) and bool(np.isnan(old) and np.isnan(new)))
    return False


def _stamp(path: Path) -> tuple:
    """What changes whenever the file is replaced: every write renames a new file over it (a new inode)."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def _read(path: Path) -> dict:
    stamp = _stamp(path)
    if path not in _loaded or _loaded[path][0] != stamp:
        _loaded[path] = (stamp, load_checkpoint(path))
    return _loaded[path][1]


def _write(store: dict, path: Path):
    """Write the whole store atomically, and keep it as the file's in-memory copy (no re-read)."""
    save_torch(store, path)
    _loaded[path] = (_stamp(path), store)


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _computing_lock(path: Path, key: str) -> Path:
    """The lock held while the value of ``key`` of the results file ``path`` is computed: one file per key."""
    return path.parent / "locks" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.lock"


_warned_unlocked: set = set()


def record(path: Path, preset_name: str, key: str, value, inputs: str | None = None):
    """Store ``value`` under ``key`` in the results file ``path``, with the digest ``inputs`` of what it was
    computed from (:func:`inputs_digest`; None: not reusable), safe with any number of writers (processes,
    notebooks, jobs on a cluster's shared disk): the file is re-read, merged and written under an exclusive lock
    beside it (``results.pt.lock``), so that an entry another writer has just added is never lost. A value and
    digest equal to the recorded ones are not written (no lock taken). Where the file system has no working
    ``flock``, a warning says so and the write goes ahead unlocked: concurrent writers may then lose each other's
    entries."""
    if path.exists() and _unchanged(_read(path), key, value, inputs):
        return
    try:
        with file_lock(_lock_path(path)):
            _merge(path, preset_name, key, value, inputs)
    except LockUnavailable as err:
        if path not in _warned_unlocked:
            _warned_unlocked.add(path)
            warnings.warn(f"univenc.results: {err}; recording without a lock, so writers running at the same time "
                          f"may lose each other's entries (run them one after another on this disk)")
        _merge(path, preset_name, key, value, inputs)


def _unchanged(store: dict, key: str, value, inputs) -> bool:
    return store.get("inputs", {}).get(key) == inputs and same_value(store["entries"].get(key, _MISSING), value)


def _merge(path: Path, preset_name: str, key: str, value, inputs):
    store = _read(path) if path.exists() else {"preset": preset_name, "entries": {}}
    if not _unchanged(store, key, value, inputs):
        store["entries"][key] = copy.deepcopy(value)  # the caller may change its value; the store must not
        store.setdefault("inputs", {})[key] = inputs
        _write(store, path)


def _reusable(path: Path, key: str, inputs: str):
    """The value recorded under ``key`` from the same inputs, or ``_MISSING``."""
    if os.environ.get(RECOMPUTE_ENV, "") not in ("", "0") or not path.exists():
        return _MISSING
    store = _read(path)
    if store.get("inputs", {}).get(key) != inputs:
        return _MISSING
    return copy.deepcopy(store["entries"].get(key, _MISSING))  # the caller may change it; the store must not


def _key(fn, bound) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in bound.arguments.items() if k not in _SKIPPED_ARGUMENTS)
    return f"{fn.__name__}({args})"


def recorded(fn=None, *, variants: bool = False):
    """Record ``fn``'s value in the preset's results file, or read it from ``$UNIVENC_RESULTS``; reuse the
    recorded value where its inputs are unchanged (:func:`inputs_digest`; ``variants=True`` for a function that
    also reads the zoos of the preset's variants). ``fn`` takes ``preset`` (and optionally ``root``) among its
    arguments. Use as ``@recorded`` or ``@recorded(variants=True)``."""
    if fn is None:
        return functools.partial(recorded, variants=variants)
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        preset = get_preset(bound.arguments["preset"])
        key = _key(fn, bound)
        source = results_source()
        if source is not None:
            store = _read(source)
            if store["preset"] != preset.name:
                raise ValueError(f"the results file {source} is of preset {store['preset']!r}, not {preset.name!r}")
            if key not in store["entries"]:
                raise MissingResultError(f"{key} is not in the results file {source}: rerun the analysis where the "
                                         f"checkpoints are (make figures PRESET={preset.name}) to record it")
            return store["entries"][key]
        root = bound.arguments.get("root")
        path, inputs = results_file(preset, root), inputs_digest(preset, root, variants)
        value = _reusable(path, key, inputs)
        if value is _MISSING:
            # Processes asking for one value at once (a notebook in JupyterLab beside make figures) compute it once:
            # the others wait for the first, then read what it recorded.
            with file_locks([_computing_lock(path, key)], required=False):
                value = _reusable(path, key, inputs)
                if value is _MISSING:
                    value = _compact(fn(*args, **kwargs))
                    record(path, preset.name, key, value, inputs)
        return value
    return wrapper


def lookup(fn, *args, **kwargs):
    """What the :func:`recorded` function ``fn`` recorded for these arguments (in ``$UNIVENC_RESULTS`` when set,
    else in the preset's results file), or None where it has not been recorded: nothing is computed."""
    inner = fn.__wrapped__
    bound = inspect.signature(inner).bind(*args, **kwargs)
    bound.apply_defaults()
    preset = get_preset(bound.arguments["preset"])
    path = results_source() or results_file(preset, bound.arguments.get("root"))
    if not path.exists():
        return None
    store = _read(path)
    return store["entries"].get(_key(inner, bound)) if store["preset"] == preset.name else None
