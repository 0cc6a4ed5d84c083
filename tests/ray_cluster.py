"""A real Ray cluster for the tests: `ray start --head` as processes on 127.0.0.1, with 2 CPUs, its own ports and
temp folder (so it never meets another cluster on this machine), started with the environment the tests give it
(the lab folder, the quick timing settings). Stopped by ending its own `ray start --block` process, whose children
are the cluster: never `ray stop`, which stops every Ray process of this user."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RAY = Path(sys.executable).parent / "ray"


def free_port() -> int:
    """A port the OS has free now: in its ephemeral range, outside Ray's worker ports (10002-19999)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    def __init__(self, env: dict, cpus: int = 2, timeout: float = 90.0):
        self.temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
        self.client_port = free_port()
        self.url = f"ray://127.0.0.1:{self.client_port}"
        ports = {"--port": free_port(), "--ray-client-server-port": self.client_port,
                 "--dashboard-agent-listen-port": free_port(), "--metrics-export-port": free_port(),
                 "--runtime-env-agent-port": free_port(), "--node-manager-port": free_port(),
                 "--object-manager-port": free_port()}
        args = [str(RAY), "start", "--head", "--block", "--num-cpus", str(cpus), "--include-dashboard", "false",
                "--node-ip-address", "127.0.0.1", "--temp-dir", self.temp, "--disable-usage-stats",
                *[str(x) for flag, port in ports.items() for x in (flag, port)]]
        self.log = open(Path(self.temp) / "head.log", "w")
        started = time.monotonic()
        self.head = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        while time.monotonic() - started < timeout:
            if self.head.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.head.returncode}: "
                                   f"{(Path(self.temp) / 'head.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.client_port), 0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"the Ray head did not open its client port in {timeout:.0f} s")
        self.start_s = time.monotonic() - started

    def stop(self) -> float:
        """End the head process and every process under it (raylet, GCS, workers); returns the seconds it took."""
        started = time.monotonic()
        try:
            tree = [psutil.Process(self.head.pid), *psutil.Process(self.head.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for proc in tree:  # the whole tree at once: the head alone takes 20 s to wind its cluster down
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(tree, timeout=3)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        self.head.wait(10)
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)
        time.sleep(0.5)  # a process that was dying may still write its session folder: remove it again
        shutil.rmtree(self.temp, ignore_errors=True)
        return time.monotonic() - started

    @staticmethod
    def env_for(home) -> dict:
        env = dict(os.environ, COMPRESSION_LAB_HOME=str(home), OMP_NUM_THREADS="1")
        env.pop("COMPRESSION_LAB_DB", None)
        env.pop("COMPRESSION_LAB_CLUSTER", None)
        return env
