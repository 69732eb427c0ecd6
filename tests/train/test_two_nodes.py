"""Two nodes on one host (gloo, one process each), as ``--nnodes 2 --node-rank N`` runs them on two
machines: the run equals one node with two processes exactly; node 0 alone writes; node 1 prints
its own ``--json`` document; SIGKILL of either node stops the other within a bounded time (with
the error document under ``--json``), and the run resumes on two nodes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, subprocess_env, write
from spec_texts import TINY_MLP_RUN

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(spec, out, rank: int, port: int, *extra) -> subprocess.Popen:
    args = [sys.executable, "-m", "nncli", "train", *([str(spec), "--out", str(out)] if spec else []), "--json"]
    args += ["--device", "cpu", "--nnodes", "2", "--node-rank", str(rank), "--master-port", str(port), *extra]
    env = subprocess_env(OMP_NUM_THREADS="1")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, dict]:
    out, err = proc.communicate(timeout=timeout)
    assert out.strip(), err[-2000:]  # every exit path under --json prints one document
    return proc.returncode, json.loads(out)


def test_two_nodes_equal_one_node_with_two_processes(tmp_path):
    spec = write(tmp_path / "spec.yaml", TINY_MLP_RUN.replace("epochs: 1", "epochs: 3"))
    port = _free_port()
    node0 = _node(spec, tmp_path / "run", 0, port)
    node1 = _node(spec, tmp_path / "other", 1, port)
    (code0, doc0), (code1, doc1) = _finish(node0), _finish(node1)
    assert code0 == 0 and code1 == 0
    assert doc1["node_rank"] == 1 and doc1["status"] == "workers_finished" and doc1["run_dir"] is None
    assert not (tmp_path / "other").exists()  # node 0 alone writes
    single = subprocess.run(
        [sys.executable, "-m", "nncli", "train", str(spec), "--out", str(tmp_path / "one"), "--json"]
        + ["--device", "cpu", "--nproc-per-node", "2", "--master-port", str(_free_port())],
        cwd=ROOT,
        env=subprocess_env(OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    one = json.loads(single.stdout)
    assert doc0["world_size"] == one["world_size"] == 2
    assert doc0["val"]["loss"] == one["val"]["loss"]  # the same run, bit for bit
    assert [r["train_loss"] for r in doc0["history"]] == [r["train_loss"] for r in one["history"]]


def _wait_for(path, procs, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not path.exists():
        assert all(p.poll() is None for p in procs), [p.stderr.read()[-2000:] for p in procs if p.poll() is not None]
        time.sleep(0.2)
    assert path.exists()


@pytest.mark.parametrize("killed", [0, 1])
def test_sigkill_of_one_node_stops_the_other_and_the_run_resumes(tmp_path, killed):
    spec = write(
        tmp_path / "spec.yaml",
        TINY_MLP_RUN.replace("epochs: 1", "epochs: 40")
        .replace("n: 200", "n: 2000")
        .replace("seed: 3}", "seed: 3, checkpoint_seconds: 0}"),
    )
    port = _free_port()
    nodes = [_node(spec, tmp_path / "run", 0, port), _node(spec, tmp_path / "other", 1, port)]
    try:
        _wait_for(tmp_path / "run" / "checkpoints" / "last.pt", nodes)
        os.kill(nodes[killed].pid, signal.SIGKILL)
        started = time.monotonic()
        code, doc = _finish(nodes[1 - killed], timeout=120)
        assert time.monotonic() - started < 60  # gloo sees the peer gone; no collective waits forever
        assert code == 1 and "distributed training failed" in doc["message"]
    finally:
        for p in nodes:
            if p.poll() is None:
                p.kill()
                p.wait()
    time.sleep(2)  # the killed node's rank follows its launcher (parent-death signal)
    # both nodes resume the run from node 0's folder (on one host here, as on a shared file system)
    port = _free_port()
    resumed = [_node(None, None, rank, port, "--resume", str(tmp_path / "run")) for rank in (0, 1)]
    (code0, doc0), (code1, doc1) = _finish(resumed[0], timeout=300), _finish(resumed[1], timeout=60)
    assert code0 == 0 and code1 == 0, (doc0, doc1)
    assert doc0["status"] == "completed" and doc0["epochs"] == 40
    assert doc1["status"] == "workers_finished"
