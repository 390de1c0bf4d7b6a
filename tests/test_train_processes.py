"""Training in two processes on the CPU (gloo) through a real `accelerate launch`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.tools import require_module

torch = require_module("torch")
require_module("transformers")
require_module("accelerate")

from safetensors.numpy import load_file  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from edgecxr.cli.app import app  # noqa: E402
from edgecxr.core.errors import EdgecxrError  # noqa: E402
from edgecxr.training.dataset import EpochSampler, ShardedEpochBatches  # noqa: E402
from edgecxr.training.distributed import cpu_launch_request  # noqa: E402
from tests.orthanc import free_port  # noqa: E402

FAST = ["--arch", "swinv2-nano-64", "--batch-size", "4", "--workers", "0", "--val-fraction", "0.25",
        "--epochs", "2"]
TIMING = ("seconds", "images_per_s", "data_wait_share")


def launch(how: str, data, out, *extra, timeout: float = 300):
    """`accelerate launch --num_processes 2 --cpu|--multi_gpu -m edgecxr.cli train ...`."""
    command = [sys.executable, "-m", "accelerate.commands.launch", how, "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()),
               "-m", "edgecxr.cli", "train", str(data), "--out", str(out), *FAST, *extra]
    if how == "--multi_gpu":
        command += ["--torch-device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout


def _stop(process) -> None:
    """SIGTERM to the launcher's group: torchrun then stops the training processes it started
    (each in a session of its own); SIGKILL if that takes over a minute."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


# Four trainings, three of them real two-process launches: 68 s of setup on 2 cores (--durations),
# so each test that reads `runs` is marked slow; the shard and launch-parsing tests stay fast.
@pytest.fixture(scope="module")
def runs(mini, tmp_path_factory):
    """One process (in-process CLI), two processes straight, and two interrupted + resumed."""
    root = tmp_path_factory.mktemp("processes")
    one = CliRunner().invoke(app, ["train", str(mini), "--out", str(root / "one"), *FAST])
    assert one.exit_code == 0, one.output
    straight = launch("--cpu", mini, root / "two")
    launch("--multi_gpu", mini, root / "broken", "--stop-after-epoch", "1")
    refused = CliRunner().invoke(app, ["train", str(mini), "--out", str(root / "broken"), *FAST,
                                       "--resume"])
    launch("--multi_gpu", mini, root / "broken", "--resume")
    return {"one": root / "one", "two": root / "two", "broken": root / "broken",
            "stdout": straight, "refused": refused}


def _json(path):
    return json.loads(path.read_text())


def _history(folder):
    rows = _json(folder / "checkpoint" / "trainer_state.json")["history"]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


@pytest.mark.slow
def test_two_processes_really_ran_and_wrote_one_set_of_files(runs):
    one, two = _json(runs["one"] / "run.json"), _json(runs["two"] / "run.json")
    assert (one["num_processes"], two["num_processes"]) == (1, 2)
    assert two["status"] == "finished"
    files = {p.relative_to(runs["two"]).as_posix() for p in runs["two"].rglob("*") if p.is_file()}
    reference = {p.relative_to(runs["one"]).as_posix() for p in runs["one"].rglob("*") if p.is_file()}
    assert files == reference | {"checkpoint/random_states_1.pkl"}  # one RNG state per process
    assert runs["stdout"].count("best epoch") == 1  # the result printed once, by the main process


@pytest.mark.slow
def test_same_report_structure_and_split_as_one_process(runs):
    one, two = _json(runs["one"] / "run.json"), _json(runs["two"] / "run.json")
    assert one.keys() == two.keys() and one["result"].keys() == two["result"].keys()
    assert one["split"] == two["split"] and one["data"] == two["data"]  # the seed's split
    a, b = _json(runs["one"] / "report.json"), _json(runs["two"] / "report.json")
    assert a.keys() == b.keys() and a["metrics"].keys() == b["metrics"].keys()
    assert b["n_images"] == len(b["rows"]) == 20
    header = (runs["one"] / "history.csv").read_text().splitlines()[0]
    assert (runs["two"] / "history.csv").read_text().splitlines()[0] == header


@pytest.mark.slow
def test_every_image_counted_once_per_epoch(runs):
    record = _json(runs["two"] / "run.json")
    rows = _history(runs["two"])
    assert [(r["train_images"], r["val_images"]) for r in rows] == \
        [(len(record["split"]["train"]), len(record["split"]["val"]))] * 2 == [(18, 6)] * 2


@pytest.mark.slow
def test_resume_in_two_processes_equals_the_straight_run(runs):
    assert _json(runs["broken"] / "run.json")["status"] == "finished"
    a = load_file(runs["two"] / "checkpoint" / "model.safetensors")
    b = load_file(runs["broken"] / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert _history(runs["two"]) == _history(runs["broken"])


@pytest.mark.slow
def test_resume_with_another_process_count_is_refused(runs):
    result = runs["refused"]
    assert result.exit_code == 2, result.output
    assert "started with 2 training process(es), this is 1" in result.stderr


@pytest.mark.parametrize("n,batch,world", [(18, 4, 2), (17, 8, 2), (9, 4, 2), (5, 2, 4), (7, 3, 3)])
def test_shards_partition_the_epoch_in_equal_step_counts(n, batch, world):
    epochs = EpochSampler(n, seed=3)
    epochs.for_epoch(2)
    shards = [list(ShardedEpochBatches(epochs, batch, rank, world)) for rank in range(world)]
    assert len({len(s) for s in shards}) == 1  # DDP: every process takes the same steps
    assert all(batch_keys for s in shards for batch_keys in s)  # none of them empty
    keys = [key for s in shards for batch_keys in s for key in batch_keys]
    assert sorted(keys) == sorted(epochs)  # each image once, no padding repeats


def test_accelerate_cpu_launch_is_read_from_its_command_line():
    env = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}
    argv = ["python", "/venv/bin/accelerate", "launch", "--num_processes", "4", "--cpu",
            "--num_machines", "2", "--machine_rank", "1", "-m", "edgecxr.cli", "train", "D"]
    args = cpu_launch_request(env, argv)
    assert args[:10] == ["--nnodes", "2", "--node_rank", "1", "--nproc_per_node", "2",
                         "--master_addr", "127.0.0.1", "--master_port", "29999"]
    assert cpu_launch_request({**env, "WORLD_SIZE": "2"}, argv) is None  # already started
    assert cpu_launch_request({"ACCELERATE_USE_CPU": "True"}, argv) is None  # one process asked
    with pytest.raises(EdgecxrError, match="could not read how many"):
        cpu_launch_request(env, ["python", "somewhere-else"])
    plain = {"MASTER_ADDR": "127.0.0.1"}  # no --cpu: the same on a machine without GPUs only
    assert cpu_launch_request(plain, argv, gpus=0)[4:6] == ["--nproc_per_node", "2"]
    assert cpu_launch_request(plain, argv, gpus=1) is None
    assert cpu_launch_request(plain, ["bash"], gpus=0) is None  # MASTER_ADDR set elsewhere
