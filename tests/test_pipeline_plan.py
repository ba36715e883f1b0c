"""Planning large native inputs from a streamed Parquet index (issue 16): the same records
as the in-memory plan, index reuse, and partition slices read by the workers."""
from __future__ import annotations

import json

from test_pipeline_lift import _files, _records, lifted, scenes  # noqa: F401 (fixtures)


def test_large_native_input_is_planned_from_a_streamed_index(scenes, lifted, tmp_path):
    """Above --plan-in-memory-mb (0 here: always) the native annotations become a Parquet
    index in OUT/_index, the units are slices of its partitions read by the workers, and the
    result is the in-memory plan's records and counts; a re-run reuses the index and resumes."""
    from pipelines import cli

    out = tmp_path / "via_index"
    argv = ["lift", "--source", "omni3d", "--annotations", str(scenes), "--images", str(scenes.parent / "images"),
            "--out", str(out), "--samples-per-shard", "2", "--workers", "1", "--no-progress",
            "--plan-in-memory-mb", "0"]
    assert cli.main(argv) == 0
    assert (out / "_index" / "_SUMMARY.json").is_file() and list((out / "_index").glob("part-*.parquet"))
    native = json.loads((lifted / "repository" / "stats.json").read_text())
    via_index = json.loads((out / "repository" / "stats.json").read_text())
    for k in ("images", "objects", "objects_rejected_by_reason", "images_failed_by_reason", "samples",
              "objects_accounting"):
        assert via_index[k] == native[k], k
    assert _records(out / "repository") == _records(lifted / "repository")
    first = _files(out / "repository")
    summary = (out / "_index" / "_SUMMARY.json").read_bytes()
    assert cli.main(argv) == 0
    assert _files(out / "repository") == first and (out / "_index" / "_SUMMARY.json").read_bytes() == summary


def test_a_unit_reads_only_its_slice_of_a_partition(tmp_path):
    """Partition slices [start, stop) of lifting.sources.index.read_partition_slice, across row
    groups, are exactly the partition's records in order."""
    from lifting.sources.index import build_index, list_partitions, read_partition, read_partition_slice
    from lifting.synthetic import write_dataset

    ann = write_dataset(tmp_path / "s", n_scenes=7, seed=1)
    idx = tmp_path / "idx"
    build_index("omni3d", annotations=str(ann), images=str(ann.parent / "images"), out_dir=idx, row_group_images=3)
    (part,) = list_partitions(idx)
    keys = [r.key for r in read_partition(part) if hasattr(r, "objects")]
    assert len(keys) == 7
    for start, stop in ((0, 2), (2, 5), (3, 4), (5, 7), (6, None), (0, None)):
        assert [r.key for r in read_partition_slice(part, start, stop)] == keys[start:stop]
