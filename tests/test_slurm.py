"""The zoo on a real Slurm: a one-node cluster on localhost (``tests/slurm/cluster.sh``: Debian's slurmd, slurmctld and
munge), two networks trained through ``sbatch`` with ``--executor slurm``, then one job cancelled with ``scancel``
mid-run and resumed by the next run to the weights of an uninterrupted run. Runs where ``sbatch`` is installed and
this process may start the daemons (root); ``.ci/run`` installs them."""
import dataclasses
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import assert_resumed_to_the_uninterrupted_weights, needs
from univenc import zoo as Z
from univenc.data import data_root
from univenc.presets import PRESETS
from univenc.runner import JobOptions, run_zoo
from univenc.storage import exclusive_lock, load_checkpoint

CLUSTER = Path(__file__).parent / "slurm" / "cluster.sh"
PRESET = dataclasses.replace(PRESETS["smoke"], name="smoke-slurm", epochs=30, checkpoint_epochs=(), eval_every=30)
NETS = ["fac_cifar10", "vgg_k3_cifar10"]

pytestmark = [
    pytest.mark.skipif(shutil.which("sbatch") is None,
                       reason="Slurm is not installed (tests/slurm/cluster.sh install)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting slurmctld and slurmd here needs root"),
]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slurm")
    out = subprocess.run([str(CLUSTER), "start", str(folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = out.stdout.strip()
    yield folder
    subprocess.run([str(CLUSTER), "stop", str(folder)], timeout=60)
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before


def _root(tmp_path, name):
    root = tmp_path / name
    root.mkdir()
    (root / "cifar-10-batches-py").symlink_to(data_root() / "cifar-10-batches-py")
    return root


def _lock_freed(folder, timeout: float) -> bool:
    """Whether the network lock of ``folder`` becomes free within ``timeout`` seconds."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        with exclusive_lock(folder) as free:
            if free:
                return True
        time.sleep(0.2)
    return False


def _running_jobs():
    return subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True).stdout.split()


@needs("cifar10")
def test_the_zoo_through_slurm_and_a_cancelled_job_resumed(slurm, tmp_path):
    options = JobOptions("slurm", jobs=2, threads=1, partition="debug", time_min=10)
    ref_root, root = _root(tmp_path, "uninterrupted"), _root(tmp_path, "cancelled")
    ref = run_zoo(PRESET, ref_root, options, only=NETS, progress=False)
    assert sorted(ref.status) == ["trained", "trained"]
    for log in map(Path, ref.log):  # each network trained in a job that sbatch started
        job_id = log.parent.name
        assert "#SBATCH" in (log.parent / f"{job_id}_submission.sh").read_text()
        assert f"JobEnvironment(job_id={job_id}," in log.with_suffix(".out").read_text()
    ref_jobs = {Path(log).parent.name for log in ref.log}
    assert 1 <= len(ref_jobs) <= 2  # the first job may take both before the other

    # one job trains both networks; it is cancelled while it trains the first. It is suspended first (SIGSTOP, at
    # once): scancel alone let it run on for seconds, in which a width-1/16 network finished all its epochs
    folder = Z.checkpoint_path(NETS[0], PRESET, root).parent
    first = {}
    runner = threading.Thread(target=lambda: first.update(table=run_zoo(
        PRESET, root, dataclasses.replace(options, jobs=1), NETS, progress=False, check=False)))
    runner.start()
    t0 = time.time()
    while not (folder / "log.csv").exists() or len((folder / "log.csv").read_text().splitlines()) < 2:
        assert time.time() - t0 < 180, "the job did not start"
        time.sleep(0.05)
    (job_id,) = set(_running_jobs()) - ref_jobs  # a job of the first run may still be listed as it ends
    subprocess.run(["scontrol", "suspend", job_id], check=True)
    subprocess.run(["scancel", job_id], check=True)
    runner.join(timeout=180)
    assert not runner.is_alive(), "run_zoo did not notice that its Slurm job ended"
    assert not (folder / "final.pt").exists()
    assert 1 <= load_checkpoint(folder / "last.pt")["epoch"] < PRESET.epochs  # cancelled mid-run
    status = dict(zip(first["table"].network, first["table"].status))
    assert status[NETS[0]].startswith("failed: its job died"), status

    # The cancelled job's process holds the network's lock until the OS has ended it, which on a loaded machine came
    # after run_zoo saw the job end; a runner started before then is rightly refused ("another runner is training it").
    assert _lock_freed(folder, timeout=120), "the cancelled job's process still holds the network's lock"
    again = run_zoo(PRESET, root, options, only=NETS, progress=False)
    assert sorted(again.status) == ["trained", "trained"]
    assert_resumed_to_the_uninterrupted_weights(NETS, PRESET, ref_root, root)
