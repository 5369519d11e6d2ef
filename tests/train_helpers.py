"""Shared by the trainer tests: the tiny config, a torchrun launcher and a W&B service that
another process started."""

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "launch/configs/tiny.yaml")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, script: list[str], env: dict, max_restarts: int = 0,
             timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--max-restarts={max_restarts}", "--rdzv-backend=c10d",
           f"--rdzv-endpoint=127.0.0.1:{free_port()}", *script]
    full_env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}",
                "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


@contextlib.contextmanager
def wandb_service_of_another_process(folder: Path) -> Iterator[str]:
    """A live W&B service started by another process, as `pose3d demo`'s evaluations (or a
    test process that ran them) leave one named in the environment of the workers they
    launch: yields its WANDB_SERVICE value; the service ends with the block."""
    code = ("import os, sys, wandb; wandb.init(mode='offline', dir=sys.argv[1], project='t'); "
            "print(os.environ['WANDB_SERVICE'], flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        token = proc.stdout.readline().strip()
        assert token, "the W&B service did not start"
        yield token
    finally:
        proc.stdin.close()
        proc.wait(timeout=120)
