"""One file-system layer for every input and output: local paths and fsspec URLs.

    from lifting import storage
    storage.read_bytes("s3://bucket/coco/instances.json")
    with storage.atomic_write("gs://bucket/out/repository/shard-000000.tar") as f:
        f.write(data)                       # appears under its name whole, or not at all
    storage.glob("s3://bucket/out/repository/_parts/shard-*.stats.json")

A path is either a local path (str or os.PathLike; `file://` URLs are local too) or a URL
that fsspec understands: `s3://` (s3fs), `gs://` (gcsfs), `az://`/`abfs://` (adlfs),
`hdfs://` (pyarrow), `memory://` ... The protocol's package must be installed (extra
`[cloud]` of lift3d installs s3fs and gcsfs). Credentials and endpoints come from the
store's usual environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, ...) or fsspec's own
configuration (`FSSPEC_S3_ENDPOINT_URL=...`, ~/.config/fsspec/), so worker processes and
machines see the same settings as the driver without any lift3d option.

Commit semantics (what holds on object stores, which have no atomic rename):
- `atomic_write(path)` writes to a local temporary file first. Local target: the temporary
  is a sibling of `path`, fsync'd and renamed over it (`os.replace`). URL: the finished file
  is uploaded once (`put_file`): an object store makes an object visible only when its
  upload (single PUT or completed multipart upload) is complete, so no reader ever sees a
  partial object under its name, and a failed write uploads nothing.
- A unit of work is done only when its done-marker exists; the marker is written last
  (pipelines/sinks.py). Files of a unit without a marker are simply written again.
- Listings are never served from fsspec's listing cache (`fresh=True` calls invalidate it),
  because workers on other machines write the files the driver then lists.

Local paths keep using the operating system directly (os / open), so local runs behave and
perform exactly as before; only URLs go through fsspec.
"""
from __future__ import annotations

import contextlib
import fnmatch
import glob as _glob
import os
import posixpath
import shutil
import tempfile
import uuid
from typing import IO, Iterator


def is_url(path) -> bool:
    """True for a store URL handled by fsspec ('s3://b/k', 'gs://...'); False for local
    paths and `file://` URLs."""
    p = os.fspath(path) if not isinstance(path, str) else path
    return isinstance(p, str) and "://" in p and not p.startswith("file://")


def local(path) -> str:
    """A local path as str (`file://` prefix removed)."""
    p = os.fspath(path)
    return p[7:] if p.startswith("file://") else p


def filesystem(path):
    """(fsspec filesystem, path inside it) for URL `path`.

    ImportError (one line naming the package to install) when the protocol's package is
    missing: e.g. `pip install s3fs` for s3://.
    """
    import fsspec

    try:
        return fsspec.core.url_to_fs(path)
    except ImportError as e:
        proto = path.split("://", 1)[0]
        raise ImportError(f"{path}: the {proto}:// file system needs a package that is not installed "
                          f"({str(e).splitlines()[0]}); install lift3d[cloud] or the package named") from e


class StoreError(OSError):
    """An object store refused the whole job, not one file: missing credentials, permission
    denied, a bucket that does not exist. `str(e)` is one line saying what to fix.

    Raised by this module's URL functions (the store's own exception is the __cause__), so
    that readers do not mistake it for one missing file, and the CLI prints one line."""

    def __init__(self, code: int, line: str):
        super().__init__(code, line)
        self.line = line

    def __str__(self) -> str:
        return self.line


def _bucket(path: str) -> str:
    scheme, rest = path.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _store_error(path: str, e: BaseException) -> StoreError | None:
    """The StoreError for exception `e` of the store at `path`, or None when `e` concerns
    this file only (a missing object, a decoding error...)."""
    import errno

    names = {c.__name__ for c in type(e).__mro__}
    msg = (str(e).splitlines() or [type(e).__name__])[0]
    scheme = path.split("://", 1)[0]
    if any("Credential" in n or "Authentication" in n for n in names):
        hint = ("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE" if scheme.startswith("s3")
                else "GOOGLE_APPLICATION_CREDENTIALS" if scheme in ("gs", "gcs")
                else "the store's usual credentials")
        return StoreError(errno.EACCES, f"no usable credentials for {_bucket(path)} ({msg}); set {hint} "
                                        "and run the same command again: finished shards are kept")
    if isinstance(e, PermissionError):
        return StoreError(errno.EACCES, f"{path}: permission denied by the store ({msg}); grant access or "
                                        "choose another location and run the same command again")
    if isinstance(e, FileNotFoundError) and "bucket" in msg.lower():
        return StoreError(errno.ENOENT, f"{_bucket(path)}: the bucket does not exist ({msg}); create it or "
                                        "fix the URL")
    return None


@contextlib.contextmanager
def _translated(path: str):
    """Turn job-level store failures at `path` into StoreError (see `_store_error`)."""
    try:
        yield
    except StoreError:
        raise
    except Exception as e:
        err = _store_error(path, e)
        if err is None:
            raise
        raise err from e


def join(base, *names: str) -> str:
    """`base` joined with `names` ('/' for URLs, os.path for local paths)."""
    base = os.fspath(base)
    if is_url(base):
        return posixpath.join(base, *names)
    return os.path.join(local(base), *names)


def normpath(path) -> str:
    """Normalised path (`..` and `.` resolved lexically), keeping a URL's scheme."""
    path = os.fspath(path)
    if is_url(path):
        scheme, rest = path.split("://", 1)
        return f"{scheme}://{posixpath.normpath(rest)}"
    return os.path.normpath(local(path))


def abspath(path) -> str:
    """Absolute local path, or the URL unchanged."""
    path = os.fspath(path)
    return path if is_url(path) else os.path.abspath(local(path))


def dirname(path) -> str:
    path = os.fspath(path)
    return posixpath.dirname(path.rstrip("/")) if is_url(path) else os.path.dirname(local(path))


def basename(path) -> str:
    path = os.fspath(path)
    return posixpath.basename(path.rstrip("/")) if is_url(path) else os.path.basename(local(path))


def exists(path) -> bool:
    path = os.fspath(path)
    if not is_url(path):
        return os.path.exists(local(path))
    fs, p = filesystem(path)
    fs.invalidate_cache(p)
    with _translated(path):
        return fs.exists(p)


def isfile(path) -> bool:
    path = os.fspath(path)
    if not is_url(path):
        return os.path.isfile(local(path))
    fs, p = filesystem(path)
    with _translated(path):
        return fs.isfile(p)


def isdir(path) -> bool:
    path = os.fspath(path)
    if not is_url(path):
        return os.path.isdir(local(path))
    fs, p = filesystem(path)
    fs.invalidate_cache(p)
    with _translated(path):
        return fs.isdir(p)


def getsize(path) -> int:
    """Size in bytes; FileNotFoundError when missing."""
    path = os.fspath(path)
    if not is_url(path):
        return os.path.getsize(local(path))
    fs, p = filesystem(path)
    with _translated(path):
        return int(fs.size(p))


def listdir(path) -> list[str]:
    """Names (not paths) of the entries of folder `path`, sorted; FileNotFoundError when missing."""
    path = os.fspath(path)
    if not is_url(path):
        return sorted(os.listdir(local(path)))
    fs, p = filesystem(path)
    fs.invalidate_cache(p)
    with _translated(path):
        return sorted(posixpath.basename(x.rstrip("/")) for x in fs.ls(p, detail=False))


def glob(pattern) -> list[str]:
    """Paths matching `pattern` (a folder plus a file-name pattern, e.g. 'DIR/shard-*.tar'),
    sorted; [] when the folder does not exist. Always a fresh listing."""
    pattern = os.fspath(pattern)
    if not is_url(pattern):
        return sorted(_glob.glob(local(pattern)))
    folder, name = posixpath.split(pattern)
    try:
        names = listdir(folder)
    except FileNotFoundError:
        return []
    return [posixpath.join(folder, n) for n in names if fnmatch.fnmatchcase(n, name)]


def walk_files(path) -> Iterator[str]:
    """Every file under folder `path`, recursively, as full paths (sorted per folder)."""
    path = os.fspath(path)
    if not is_url(path):
        for d, dirs, files in os.walk(local(path)):
            dirs.sort()
            for f in sorted(files):
                yield os.path.join(d, f)
        return
    fs, p = filesystem(path)
    fs.invalidate_cache(p)
    with _translated(path):
        found = sorted(fs.find(p))
    base, stripped = path.rstrip("/"), p.rstrip("/")
    for f in found:  # the URL as given, whatever form the store's own listing uses
        if f.startswith(stripped + "/"):
            yield base + f[len(stripped):]


#: Protocols of object stores: no folders (a key prefix exists once a key has it), no rename.
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"})


def makedirs(path) -> None:
    """Create folder `path`. No-op on object stores, whose folders are key prefixes (and
    where creating one would create a missing *bucket* instead of reporting it)."""
    path = os.fspath(path)
    if not is_url(path):
        os.makedirs(local(path), exist_ok=True)
        return
    if path.split("://", 1)[0].lower() in OBJECT_STORES:
        return
    fs, p = filesystem(path)
    with _translated(path):
        fs.makedirs(p, exist_ok=True)


def open(path, mode: str = "rb", **kw) -> IO:  # noqa: A001 - the module's open, like gzip.open
    """Open `path` for reading ('rb', 'r'); write through `atomic_write` instead."""
    path = os.fspath(path)
    if not is_url(path):
        import builtins

        return builtins.open(local(path), mode, **kw)
    fs, p = filesystem(path)
    with _translated(path):
        return fs.open(p, mode, **kw)


def read_bytes(path) -> bytes:
    path = os.fspath(path)
    if not is_url(path):
        with open(path, "rb") as f:
            return f.read()
    fs, p = filesystem(path)
    with _translated(path):
        return fs.cat_file(p)


def read_text(path, encoding: str = "utf-8") -> str:
    return read_bytes(path).decode(encoding)


def remove(path, missing_ok: bool = True) -> None:
    """Delete file `path`."""
    path = os.fspath(path)
    try:
        if not is_url(path):
            os.unlink(local(path))
        else:
            fs, p = filesystem(path)
            with _translated(path):
                fs.rm_file(p)
    except FileNotFoundError:
        if not missing_ok:
            raise


def remove_tree(path) -> None:
    """Delete folder `path` and everything under it (no error when it is missing)."""
    path = os.fspath(path)
    if not is_url(path):
        shutil.rmtree(local(path), ignore_errors=True)
        return
    fs, p = filesystem(path)
    with contextlib.suppress(FileNotFoundError), _translated(path):
        fs.rm(p, recursive=True)


TMP_MARK = ".tmp-"


@contextlib.contextmanager
def atomic_write(path) -> Iterator[IO[bytes]]:
    """Binary file object whose content appears under `path` whole when the block ends
    without an exception, and nowhere otherwise (see the module docstring).

    The yielded file is a local temporary (its `.name` is a local path, so callers may
    re-read it, e.g. to hash it, or close it and let a library write to `.name`). Local targets: `PATH.tmp-<random>` in the same folder,
    fsync'd, then `os.replace`; left-over temporaries of a killed run are what
    `TMP_MARK` finds. URLs: a temporary in the system temp folder, uploaded with one
    `put_file` at the end and deleted.
    """
    path = os.fspath(path)
    if not is_url(path):
        target = local(path)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        tmp = f"{target}{TMP_MARK}{uuid.uuid4().hex[:12]}"
        try:
            with builtins_open(tmp, "wb") as f:
                yield f
            _fsync(tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return
    fs, p = filesystem(path)
    makedirs(dirname(path))
    fd, tmp = tempfile.mkstemp(prefix="lift3d-upload-")
    try:
        os.close(fd)
        with builtins_open(tmp, "wb") as f:  # a named file: callers may hash or rewrite f.name
            yield f
        with _translated(path):
            fs.put_file(tmp, p)
    finally:
        os.unlink(tmp)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def builtins_open(path, mode="rb"):
    import builtins

    return builtins.open(path, mode)


def write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` atomically (see atomic_write)."""
    with atomic_write(path) as f:
        f.write(data)


@contextlib.contextmanager
def local_copy(path) -> Iterator[str]:
    """A local file path holding the content of `path` (the path itself when local; for a
    URL, a downloaded temporary deleted when the block ends). For libraries that need a
    real file name (sqlite, some decoders)."""
    path = os.fspath(path)
    if not is_url(path):
        yield local(path)
        return
    fs, p = filesystem(path)
    fd, tmp = tempfile.mkstemp(prefix="lift3d-download-")
    os.close(fd)
    try:
        with _translated(path):
            fs.get_file(p, tmp)
        yield tmp
    finally:
        os.unlink(tmp)


def signature(path) -> list:
    """[path, size, version] of a file, changing whenever its content may have: the local
    mtime (ns), or the store's ETag / generation / modification time for a URL."""
    path = os.fspath(path)
    if not is_url(path):
        st = os.stat(local(path))
        return [os.path.abspath(local(path)), st.st_size, st.st_mtime_ns]
    fs, p = filesystem(path)
    with _translated(path):
        info = fs.info(p)
    version = next((str(info[k]) for k in ("ETag", "etag", "generation", "LastModified", "mtime", "last_modified")
                    if info.get(k) is not None), None)
    return [path, int(info.get("size") or 0), version]


def cache_dir() -> str:
    """lift3d's local cache folder: $LIFT3D_CACHE_DIR, default ~/.cache/lift3d."""
    return os.environ.get("LIFT3D_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lift3d")


def mirror(path) -> str:
    """A local path holding file or folder `path`: the path itself when local; for a URL, a
    copy under cache_dir()/mirror/<sha256 of the URL, 16 hex>/<name> (files whose size
    changed are fetched again, others kept), for readers that need local files (the
    `eval`, `viz` and `stats` commands read whole repositories). FileNotFoundError when
    `path` does not exist."""
    import hashlib

    path = os.fspath(path)
    if not is_url(path):
        return local(path)
    path = path.rstrip("/")
    dest = os.path.join(cache_dir(), "mirror", hashlib.sha256(path.encode()).hexdigest()[:16], basename(path))
    if isfile(path):
        _fetch_if_changed(path, dest)
        return dest
    files = list(walk_files(path))
    if not files:
        raise FileNotFoundError(path)
    for f in files:
        _fetch_if_changed(f, os.path.join(dest, *f[len(path) + 1:].split("/")))
    return dest


def _fetch_if_changed(url: str, dest: str) -> None:
    if os.path.isfile(dest) and os.path.getsize(dest) == getsize(url):
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    fs, p = filesystem(url)
    tmp = f"{dest}{TMP_MARK}{uuid.uuid4().hex[:12]}"
    try:
        with _translated(url):
            fs.get_file(p, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
