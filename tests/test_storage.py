"""lifting.storage on local paths and on fsspec's in-process memory:// store (no server)."""
from __future__ import annotations

import errno
import os

import pytest

from lifting import storage


def test_atomic_write_local_leaves_the_old_file_or_the_new_one(tmp_path):
    target = tmp_path / "d" / "f.bin"
    storage.write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with storage.atomic_write(target) as f:
            f.write(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]  # no temporary left
    with storage.atomic_write(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"


def test_memory_store_round_trip_listing_and_failed_write():
    base = "memory://lift3d-test-store/run"
    storage.remove_tree(base)
    storage.write_bytes(storage.join(base, "_parts", "shard-000001.stats.json"), b"{}")
    storage.write_bytes(storage.join(base, "shard-000001.tar"), b"tar")
    with pytest.raises(RuntimeError):
        with storage.atomic_write(storage.join(base, "shard-000002.tar")) as f:
            f.write(b"partial")
            raise RuntimeError("worker died")
    assert storage.glob(storage.join(base, "shard-*.tar")) == [storage.join(base, "shard-000001.tar")]
    assert not storage.exists(storage.join(base, "shard-000002.tar"))  # nothing uploaded
    assert storage.read_bytes(storage.join(base, "shard-000001.tar")) == b"tar"
    assert storage.getsize(storage.join(base, "shard-000001.tar")) == 3
    assert storage.isdir(storage.join(base, "_parts")) and storage.listdir(base) == ["_parts", "shard-000001.tar"]
    assert sorted(storage.walk_files(base)) == [storage.join(base, "_parts", "shard-000001.stats.json"),
                                                storage.join(base, "shard-000001.tar")]
    storage.remove_tree(base)
    assert not storage.exists(storage.join(base, "shard-000001.tar"))


def test_url_paths_join_and_normalise_like_posix_and_keep_their_scheme():
    assert storage.join("s3://b/in", "images", "x.jpg") == "s3://b/in/images/x.jpg"
    assert storage.normpath("s3://b/in/images/../x.jpg") == "s3://b/in/x.jpg"
    assert storage.basename("gs://b/out/") == "out" and storage.dirname("gs://b/out/x") == "gs://b/out"
    assert storage.is_url("s3://b/k") and not storage.is_url("/tmp/x") and not storage.is_url("file:///tmp/x")
    assert storage.local("file:///tmp/x") == "/tmp/x"


def test_sources_keep_file_names_inside_an_images_url():
    from lifting.sources import Source

    src = Source(images="s3://b/coco/val2017")
    assert src.image_path("000001.jpg") == "s3://b/coco/val2017/000001.jpg"
    assert src.path_problem("../../secret.jpg")[0] == "image_path_outside_root"
    assert src.path_problem("sub/ok.jpg") is None


def test_store_errors_are_one_line_in_every_form():
    """A StoreError raised here, chained, or as a worker's traceback text (multi-process
    runner) is the same one line."""
    from pipelines.options import os_error_line

    e = storage.StoreError(errno.EACCES, "no usable credentials for s3://b (Unable to locate credentials); set ...")
    assert os_error_line(e) == str(e)
    try:
        try:
            raise e
        except storage.StoreError as inner:
            raise RuntimeError("bundle failed") from inner
    except RuntimeError as outer:
        assert os_error_line(outer) == str(e)
    text = RuntimeError(f"Traceback (most recent call last):\n  ...\nlifting.storage.StoreError: {e}\n")
    assert os_error_line(text) == str(e)


def test_store_error_classification():
    perm = storage._store_error("s3://b/out/x", PermissionError("Access Denied"))
    assert perm is not None and perm.errno == errno.EACCES and "s3://b/out/x" in str(perm)
    nob = storage._store_error("s3://nob/out/x", FileNotFoundError("The specified bucket does not exist"))
    assert nob is not None and "s3://nob" in str(nob) and "does not exist" in str(nob)
    assert storage._store_error("s3://b/k.jpg", FileNotFoundError("k.jpg")) is None  # one missing object: data


def test_mirror_of_a_url_folder_is_a_local_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFT3D_CACHE_DIR", str(tmp_path))
    base = "memory://lift3d-test-mirror/repo"
    storage.remove_tree(base)
    storage.write_bytes(storage.join(base, "shard-000000.tar"), b"abc")
    storage.write_bytes(storage.join(base, "index", "objects.parquet"), b"pq")
    local = storage.mirror(base)
    assert open(os.path.join(local, "shard-000000.tar"), "rb").read() == b"abc"
    assert open(os.path.join(local, "index", "objects.parquet"), "rb").read() == b"pq"
    storage.write_bytes(storage.join(base, "shard-000000.tar"), b"abcd")  # changed: fetched again
    assert open(os.path.join(storage.mirror(base), "shard-000000.tar"), "rb").read() == b"abcd"
    storage.remove_tree(base)


def test_lift_into_a_store_url_gives_the_local_bytes(tmp_path):
    """The lift pipeline writing to memory:// (an in-process object store: no rename, no
    folders) produces the local run's shards, index and stats (the in-memory runner shares
    the process, hence the store)."""
    from test_pipeline_lift import _argv, _tp, simple_lift

    from lifting.synthetic import SceneConfig, write_dataset
    from pipelines import lift_pipeline

    ann = write_dataset(tmp_path / "s", n_scenes=3, seed=2, config=SceneConfig(width=160, height=120))
    url = "memory://lift3d-test-lift/out"
    storage.remove_tree(url)
    lift_pipeline.run(_argv(ann, tmp_path / "local"), test_pipeline=_tp(), lift_fn=simple_lift)
    stats = lift_pipeline.run(_argv(ann, url), test_pipeline=_tp(), lift_fn=simple_lift)
    assert stats["images"]["in"] == 3 and stats["balanced"]
    root = tmp_path / "local" / "repository"
    names = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file()
             and p.name.startswith(("shard-", "objects", "stats", "rejected", "errors")) and "_parts" not in p.parts]
    assert any(n.startswith("shard-") for n in names)
    for n in names:
        assert storage.read_bytes(f"{url}/repository/{n}") == (root / n).read_bytes(), n
    storage.remove_tree(url)
