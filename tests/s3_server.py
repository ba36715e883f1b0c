"""A real S3-compatible server on the loopback address for the tests (moto's stand-alone
server, as s3fs's own test suite uses), and the environment that points s3fs at it.

    with S3Server() as s3:            # or pytest.skip when moto[server]/s3fs is missing
        s3.make_bucket("data")
        s3.upload(local_folder, "s3://data/in")

The server runs in a thread of the test process and listens on 127.0.0.1 only; the
environment (AWS_ENDPOINT_URL_S3, test credentials, no shared config files) is inherited by
the subprocesses and Beam workers the tests start, like a real deployment's environment.
"""
from __future__ import annotations

import os
from pathlib import Path

#: What a skipped test says when the server cannot be started here.
MISSING = "moto[server] and s3fs are not installed (pip install -e '.[dev]'): S3 tests skipped"


def available() -> bool:
    try:
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError:
        return False
    return True


def clear_clients() -> None:
    """Forget cached s3fs clients, so the next use reads the environment again."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


class S3Server:
    """moto's ThreadedMotoServer on 127.0.0.1 (a free port) plus the client environment."""

    KEY, SECRET = "lift3d-test-key", "lift3d-test-secret"

    def __init__(self):
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._saved: dict[str, str | None] = {}
        self.endpoint = None

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_ACCESS_KEY_ID": self.KEY, "AWS_SECRET_ACCESS_KEY": self.SECRET,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}

    def set_env(self, **values: str | None) -> None:
        """Set (None: remove) environment variables, remembering the originals for stop()."""
        for k, v in values.items():
            self._saved.setdefault(k, os.environ.get(k))
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        clear_clients()

    def __enter__(self) -> "S3Server":
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.set_env(**self.env())
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        clear_clients()

    @staticmethod
    def fs():
        import s3fs

        return s3fs.S3FileSystem()

    def make_bucket(self, name: str) -> None:
        self.fs().mkdir(name)

    def upload(self, folder: Path, url: str) -> None:
        """Copy every file under local `folder` to `url` (same relative names)."""
        fs = self.fs()
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                fs.put_file(str(p), f"{url.rstrip('/')}/{p.relative_to(folder).as_posix()}")

    def files(self, url: str) -> dict[str, bytes]:
        """{relative name: bytes} of every object under `url`."""
        fs = self.fs()
        fs.invalidate_cache()
        base = url.split("://", 1)[1].rstrip("/") + "/"
        return {p[len(base):]: fs.cat_file(p) for p in sorted(fs.find(base))}
