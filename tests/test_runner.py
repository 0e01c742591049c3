"""The zoo as jobs (submitit's local executor): real processes, a job killed with kill -9 mid-run and resumed
to the weights of an uninterrupted run, and the per-network lock."""
import dataclasses
import os
import signal
import threading
import time

import pytest
import torch

from conftest import needs
from univenc import zoo as Z
from univenc.presets import PRESETS
from univenc.data import data_root
from univenc.runner import JobOptions, Task, run_zoo, zoo_tasks
from univenc.storage import exclusive_lock, load_checkpoint

PRESET = dataclasses.replace(PRESETS["smoke"], epochs=12, checkpoint_epochs=(), eval_every=12)
NETS = ["vgg_k3_cifar10", "fac_cifar10"]
OPTIONS = JobOptions(jobs=2, threads=1)


def _root(tmp_path, name):
    root = tmp_path / name
    root.mkdir()
    (root / "cifar-10-batches-py").symlink_to(data_root() / "cifar-10-batches-py")  # the real data, own zoo
    return root


def _wait_for(condition, timeout=120):
    t0 = time.time()
    while not condition():
        if time.time() - t0 > timeout:
            raise TimeoutError
        time.sleep(0.02)


@needs("cifar10")
def test_a_job_killed_mid_run_is_resumed_to_the_uninterrupted_weights(tmp_path):
    ref_root, root = _root(tmp_path, "uninterrupted"), _root(tmp_path, "killed")
    ref = run_zoo(PRESET, ref_root, OPTIONS, only=NETS, progress=False)
    assert ref.status.tolist() == ["trained", "trained"]

    folder = Z.checkpoint_path("fac_cifar10", PRESET, root).parent
    runner = threading.Thread(target=run_zoo, args=(PRESET, root, OPTIONS, NETS), kwargs=dict(progress=False))
    runner.start()
    _wait_for(lambda: (folder / "log.csv").exists() and (folder / ".lock").read_text().strip())
    pid = int((folder / ".lock").read_text())
    assert pid != os.getpid()  # the network trains in a job process of its own
    os.kill(pid, signal.SIGKILL)
    runner.join()
    assert not (folder / "final.pt").exists()
    assert 1 <= load_checkpoint(folder / "last.pt")["epoch"] < PRESET.epochs  # killed mid-run

    again = run_zoo(PRESET, root, OPTIONS, only=NETS, progress=False)
    assert again.status.tolist() == ["trained"]  # only the killed network was left to train
    for name in NETS:
        a = load_checkpoint(Z.checkpoint_path(name, PRESET, ref_root))
        b = load_checkpoint(Z.checkpoint_path(name, PRESET, root))
        assert [r["epoch"] for r in b["log"]] == list(range(1, PRESET.epochs + 1))
        for k, v in a["state_dict"].items():
            assert torch.equal(v, b["state_dict"][k]), (name, k)


@needs("cifar10")
def test_two_runners_never_train_the_same_network(tmp_path):
    root = _root(tmp_path, "root")
    folder = Z.checkpoint_path("vgg_k3_cifar10", PRESET, root).parent
    with exclusive_lock(folder) as mine:  # another runner holds it
        assert mine
        status = Z.train_zoo(PRESET, only=["vgg_k3_cifar10"], root=root, progress=False)
        with exclusive_lock(folder) as second:
            assert not second
    assert status.status.tolist() == ["skipped: another runner is training it"]
    assert not (folder / "last.pt").exists()


def test_job_options_and_the_task_list(tmp_path):
    assert JobOptions(jobs=2, threads=None).threads_per_job() == max(1, (os.cpu_count() or 1) // 2)
    with pytest.raises(ValueError, match="executor must be"):
        JobOptions("sge")
    with pytest.raises(ValueError, match="jobs must be"):
        JobOptions(jobs=0)
    (tmp_path / "cifar-10-batches-py").mkdir()  # nothing trained yet; CIFAR-10 present, others absent
    for f in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
              "batches.meta"):
        (tmp_path / "cifar-10-batches-py" / f).touch()
    tasks = zoo_tasks("cpu", tmp_path)
    zoo = [t.name for t in tasks if t.setting is None]
    assert "fac_cifar10" in zoo and "fac_mnist" not in zoo and "fac_cifar100" not in zoo
    sweep = [t for t in tasks if t.setting is not None]
    assert len(sweep) == 6 * 3 - 1  # the baseline's random partner is the zoo's own network
    assert Task("fac_cifar10_random_a", "baseline", "random") not in sweep
    assert len({t.checkpoint("cpu", tmp_path) for t in tasks}) == len(tasks)


def test_a_jobs_work_is_its_images_over_all_epochs():
    """What the throughput projection (benchmarks/bench_throughput.py) counts, zoo and sweep networks alike."""
    assert Task("fac_cifar10").images("cpu") == 10000 * 15
    assert Task("fac_cifar10", "epochs x3", "twin_a").images("cpu") == 250 * 10 * 45  # the sweep's 250 per class
    assert Task("fac_cifar10", "AdamW", "twin_a").images("paper") == 50000 * 90


def test_zoo_tasks_lists_what_is_trained_only_when_asked(tmp_path):
    done = Task("fac_cifar10", "epochs x3", "twin_a")
    done.checkpoint("smoke", tmp_path).parent.mkdir(parents=True)
    done.checkpoint("smoke", tmp_path).write_bytes(b"")
    assert done not in zoo_tasks("smoke", tmp_path) and done in zoo_tasks("smoke", tmp_path, missing_only=False)
    assert len(zoo_tasks("smoke", tmp_path, missing_only=False)) == len(zoo_tasks("smoke", tmp_path)) + 1
