"""Run storage for Ray runs: a local directory standing in for shared storage, a file:// URI, and clear errors."""

from __future__ import annotations

import pytest

from pipeline.scale.storage import RunStorage, check_client_storage, require_shared_storage
from store.errors import TastebudError


def test_a_path_and_a_file_uri_name_the_same_run_folder(tmp_path):
    by_path = RunStorage.at(str(tmp_path), "run-1")
    by_uri = RunStorage.at(tmp_path.as_uri(), "run-1")
    assert by_path.uri("data", "train") == f"{tmp_path}/run-1/data/train"
    assert by_uri.uri("data", "train") == f"{tmp_path.as_uri()}/run-1/data/train"
    assert by_path.local_dir("data") == by_uri.local_dir("data") == tmp_path / "run-1" / "data"



def test_upload_exists_and_remove(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "part-00000.parquet").write_bytes(b"x")
    area = RunStorage.at((tmp_path / "shared").as_uri(), "run-2")
    assert not area.exists()
    area.upload(source, "data", "val")
    assert (tmp_path / "shared" / "run-2" / "data" / "val" / "part-00000.parquet").read_bytes() == b"x"
    assert area.exists("data", "val")
    area.remove()
    assert not area.exists() and (tmp_path / "shared").is_dir()
    area.remove()  # already gone: fine


def test_an_unknown_scheme_is_one_line():
    with pytest.raises(TastebudError, match=r"^--storage 'nosuch://bucket/x': "):
        RunStorage.at("nosuch://bucket/x", "run-3")


class _Cluster:
    def __init__(self, alive: int):
        self.alive = alive

    def nodes(self):
        return [{"Alive": True}] * self.alive + [{"Alive": False}]


def test_files_on_this_machine_are_refused_only_when_other_nodes_need_them():
    require_shared_storage(_Cluster(1), False, "training")  # one node: its own disk is enough
    require_shared_storage(_Cluster(3), True, "training")
    with pytest.raises(TastebudError, match="this Ray cluster has 3 nodes: training needs --storage"):
        require_shared_storage(_Cluster(3), False, "training")


def test_a_ray_client_driver_needs_shared_storage():
    check_client_storage("head:6379", None)  # a driver on a node of the cluster may use its own disk
    check_client_storage("ray://head:10001", "s3://bucket/tastebud")
    with pytest.raises(TastebudError, match=r"^a Ray Client address \(ray://\) needs --storage"):
        check_client_storage("ray://head:10001", None)
