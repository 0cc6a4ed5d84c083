"""A throwaway PostgreSQL server for tests: Debian's binaries, a temp cluster, a free port on loopback."""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

START_TIMEOUT_S = 30  # seconds for a started server to accept connections


def find_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server as the 'postgres' user Debian creates."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PostgresServer:
    def __init__(self):
        initdb, self.pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        if not initdb or not self.pg_ctl:
            raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.dir = tempfile.mkdtemp(prefix="pg-test-")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        data = os.path.join(self.dir, "data")
        subprocess.run(_as_postgres([initdb, "-D", data, "-U", "postgres", "-A", "trust"]), check=True,
                       capture_output=True)
        subprocess.run(_as_postgres([self.pg_ctl, "-D", data, "-l", os.path.join(self.dir, "log"), "-w", "-o",
                                     f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start"]),
                       check=True, capture_output=True)
        self.data = data
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"  # the plain form the README shows
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        log = self.log_tail()
        self.stop()
        raise RuntimeError(f"PostgreSQL did not accept connections on 127.0.0.1:{self.port} within "
                           f"{START_TIMEOUT_S:g} s of pg_ctl start; the end of its log:\n{log}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            with open(os.path.join(self.dir, "log"), errors="replace") as f:
                return f.read()[-chars:] or "(the log is empty)"
        except OSError as err:
            return f"(no log: {err})"

    def stop(self):  # immediate: no shutdown checkpoint, since the data is removed next
        subprocess.run(_as_postgres([self.pg_ctl, "-D", self.data, "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
