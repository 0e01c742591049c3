"""The zoo as jobs (submitit's local executor): real processes sharing one list of networks, a job killed with
kill -9 mid-run and resumed to the weights of an uninterrupted run, a run interrupted or killed that stops its jobs,
a failing network named, the per-network lock."""
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import assert_resumed_to_the_uninterrupted_weights, needs
from univenc import zoo as Z
from univenc.presets import PRESETS
from univenc.data import data_root
from univenc.runner import JobOptions, Task, estimated_seconds, longest_first, run_zoo, zoo_tasks
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
    assert sorted(ref.status) == ["trained", "trained"]
    pids = {int((Z.checkpoint_path(n, PRESET, ref_root).parent / ".lock").read_text()) for n in NETS}
    assert os.getpid() not in pids  # each network trained in a job process (one job may take both under load)

    # one job trains both networks one after the other; it is killed during the first (the longest)
    first, second = [t.name for t in longest_first([Task(n) for n in NETS], PRESET)]
    folder = Z.checkpoint_path(first, PRESET, root).parent
    killed = {}
    runner = threading.Thread(target=lambda: killed.update(table=run_zoo(
        PRESET, root, JobOptions(jobs=1, threads=1), NETS, progress=False, check=False)))
    runner.start()
    _wait_for(lambda: (folder / "log.csv").exists() and (folder / ".lock").read_text().strip())
    pid = int((folder / ".lock").read_text())
    assert pid != os.getpid()  # the network trains in a job process of its own
    os.kill(pid, signal.SIGKILL)
    runner.join()
    assert not (folder / "final.pt").exists()
    assert 1 <= load_checkpoint(folder / "last.pt")["epoch"] < PRESET.epochs  # killed mid-run
    status = dict(zip(killed["table"].network, killed["table"].status))
    assert status[first].startswith("failed: its job died") and status[second].startswith("failed: not trained")

    again = run_zoo(PRESET, root, OPTIONS, only=NETS, progress=False)
    assert sorted(again.status) == ["trained", "trained"]
    assert_resumed_to_the_uninterrupted_weights(NETS, PRESET, ref_root, root)


def _ended(pid):
    import psutil
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@needs("cifar10")
@pytest.mark.parametrize("how", ["interrupted", "killed"])
def test_a_run_interrupted_or_killed_stops_the_local_jobs_it_started(tmp_path, how):
    """Real processes: a run (as in a notebook's kernel) trains one long network in a local job; Ctrl-C (SIGINT) or
    kill -9 of the run ends the job within seconds, mid-training, instead of leaving it to train on beside the next
    run's jobs."""
    root = _root(tmp_path, "root")
    epochs = 10_000  # far longer than the test: only a stopped job leaves the network unfinished
    script = ("import dataclasses\n"
              "from univenc.presets import PRESETS\n"
              "from univenc.runner import JobOptions, run_zoo\n"
              f"p = dataclasses.replace(PRESETS['smoke'], epochs={epochs}, checkpoint_epochs=(), eval_every={epochs})\n"
              f"run_zoo(p, {str(root)!r}, JobOptions(jobs=1, threads=1), only=['vgg_k3_cifar10'], progress=False)\n")
    run = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    folder = Z.checkpoint_path("vgg_k3_cifar10", "smoke", root).parent
    job = None
    try:
        _wait_for(lambda: (folder / "log.csv").exists() and (folder / ".lock").read_text().strip())
        job = int((folder / ".lock").read_text())
        assert job != run.pid  # it trains in a job process
        sent = signal.SIGINT if how == "interrupted" else signal.SIGKILL
        run.send_signal(sent)
        _, err = run.communicate(timeout=60)
        assert run.returncode == -sent  # the interrupt is not swallowed
        _wait_for(lambda: _ended(job), timeout=30)
    finally:
        run.kill()
        if job is not None and not _ended(job):
            os.kill(job, signal.SIGKILL)
    if how == "interrupted":
        assert "KeyboardInterrupt: stopped 1 local job(s)" in err
    assert not (folder / "final.pt").exists()
    assert 1 <= load_checkpoint(folder / "last.pt")["epoch"] < epochs  # stopped mid-run, resumable


@needs("cifar10")
def test_a_network_that_fails_fails_the_zoo_step_and_is_named(tmp_path):
    """Real processes: one network's resume point is corrupt; the other trains, and the step fails naming it."""
    root = _root(tmp_path, "root")
    broken = Z.checkpoint_path("fac_cifar10", "smoke", root).parent
    broken.mkdir(parents=True)
    (broken / "last.pt").write_bytes(b"not a checkpoint")
    out = subprocess.run([sys.executable, "-m", "univenc.runner", "--preset", "smoke", "--root", str(root),
                          "--only", "vgg_k3_cifar10", "fac_cifar10", "--jobs", "2", "--threads", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr
    message = out.stderr.split("univenc zoo: ", 1)[1]
    assert "1 of 2 networks failed to train" in message and "Traceback" not in message
    assert "fac_cifar10: ValueError: Checkpoint" in message and "is corrupt" in message and "log: " in message
    log = message.split("log: ", 1)[1].split(")")[0]
    assert "Traceback" in Path(log).read_text()  # the job's log holds the whole story
    assert Z.checkpoint_path("vgg_k3_cifar10", "smoke", root).exists()  # the other network trained


def test_the_networks_are_ordered_longest_first_from_measured_seconds():
    import pandas as pd
    measured = pd.DataFrame(dict(name=["fac_cifar10", "vgg_k3_cifar10"], arch=["factorized", "vgg"],
                                 train_images=[10000, 10000], epochs=[15, 15], seconds=[300.0, 150.0]))
    tasks = [Task("vgg_k3_cifar10"), Task("fac_cifar10_bis"), Task("resnet18_cifar10"), Task("vgg_k7_cifar10")]
    est = dict(zip([t.name for t in tasks], estimated_seconds(tasks, "cpu", measured)))
    assert est["fac_cifar10_bis"] == pytest.approx(300.0)  # by architecture
    assert est["vgg_k3_cifar10"] == pytest.approx(150.0)  # by name
    assert est["resnet18_cifar10"] == pytest.approx(225.0)  # the median rate
    assert [t.name for t in longest_first(tasks, "cpu", measured)][0] == "fac_cifar10_bis"


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
    assert len(sweep) == 6 * 3  # at 250 images per class, the baseline's networks are not the zoo's own
    assert Task("fac_cifar10_random_a", "baseline", "random") in sweep
    assert len({t.checkpoint("cpu", tmp_path) for t in tasks}) == len(tasks)


def test_a_jobs_work_is_its_images_over_all_epochs():
    """What the throughput projection (benchmarks/bench_throughput.py) counts, zoo and sweep networks alike."""
    assert Task("fac_cifar10").images("cpu") == 10000 * 15
    assert Task("fac_cifar10", "epochs x3", "twin_a").images("cpu") == 250 * 10 * 45  # the sweep's 250 per class
    assert Task("fac_cifar10", "AdamW", "twin_a").images("paper") == 50000 * 90


def test_zoo_tasks_lists_what_is_trained_only_when_asked(tmp_path):
    import torch
    from univenc.catalogue import ZOO_BY_NAME
    from univenc.presets import get_preset
    from univenc.zoo import sweep_per_class, train_images
    done = Task("fac_cifar10", "epochs x3", "twin_a")
    spec, p = ZOO_BY_NAME["fac_cifar10"], get_preset("smoke")
    done.checkpoint(p, tmp_path).parent.mkdir(parents=True)

    def fake_checkpoint(**change):  # what a trained network's final.pt says of its recipe
        config = {"train": {**dataclasses.asdict(done.config(p)), **change}, "model": {"width": p.width},
                  "train_images": train_images(spec, p, sweep_per_class(spec, p))}
        torch.save({"config": config}, done.checkpoint(p, tmp_path))
    fake_checkpoint()
    assert done not in zoo_tasks("smoke", tmp_path) and done in zoo_tasks("smoke", tmp_path, missing_only=False)
    fake_checkpoint(epochs=1)  # trained with another recipe: to train again
    assert done in zoo_tasks("smoke", tmp_path)
    fake_checkpoint()
    assert len(zoo_tasks("smoke", tmp_path, missing_only=False)) == len(zoo_tasks("smoke", tmp_path)) + 1
