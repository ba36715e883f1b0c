"""The restricted unpickler of third-party info files (mmdetection3d .pkl)."""
from __future__ import annotations

import collections
import os
import pickle

import numpy as np
import pytest

from lifting.sources.safe_pickle import UnsafePickleError, load_pickle


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_data_and_numpy_round_trip(protocol):
    data = {"data_list": [{"cam2img": np.eye(3), "depth": np.float32(59.0), "n": np.int64(3), "ok": np.bool_(True),
                           "path": "a.jpg", "raw": b"\x00\x01", "set": {1, 2}}],
            "metainfo": collections.OrderedDict(version="v1.0-mini")}
    out = load_pickle(pickle.dumps(data, protocol=protocol))
    d = out["data_list"][0]
    np.testing.assert_array_equal(d["cam2img"], np.eye(3))
    assert d["depth"] == np.float32(59.0) and d["n"] == 3 and d["raw"] == b"\x00\x01" and d["set"] == {1, 2}
    assert out["metainfo"]["version"] == "v1.0-mini"


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class _Eval:
    def __reduce__(self):
        return (eval, ("1+1",))


@pytest.mark.parametrize("payload", [_Exploit(), _Eval(), os.getcwd, collections.Counter])
def test_any_other_global_is_refused_without_running(payload, tmp_path):
    blob = pickle.dumps({"data_list": [payload]})
    with pytest.raises(UnsafePickleError, match="not allowed"):
        load_pickle(blob)
    path = tmp_path / "infos.pkl"
    path.write_bytes(blob)
    with pytest.raises(UnsafePickleError):
        load_pickle(path)


def test_corrupt_pickles_raise_the_usual_errors():
    with pytest.raises((pickle.UnpicklingError, EOFError, ValueError)):
        load_pickle(b"\x80\x04\x95garbage")
