import pytest

from streams.model_artifacts import ArtifactError, ArtifactStore, data_hash, new_version


def test_written_artifact_loads_with_verified_hashes(tmp_path):
    store = ArtifactStore(tmp_path)
    written = store.write("v1", {"popular.json": b'{"all": []}', "ranker.joblib": b"x"}, {"data_hash": "abc"})
    loaded = store.load("latest")
    assert loaded.version == "v1" and loaded.manifest["data_hash"] == "abc"
    assert loaded.json("popular.json") == {"all": []}
    assert set(loaded.manifest["files"]) == {"popular.json", "ranker.joblib"} == set(written.manifest["files"])
    assert store.versions() == ["v1"]


def test_tampered_file_is_refused_before_it_is_read(tmp_path):
    store = ArtifactStore(tmp_path)
    store.write("v1", {"ranker.joblib": b"trusted"}, {})
    (tmp_path / "v1" / "ranker.joblib").write_bytes(b"evil pickle")
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        store.load("v1")


def test_unlisted_files_links_and_paths_outside_the_store_are_refused(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    artifact = store.write("v1", {"a.json": b"{}"}, {})
    with pytest.raises(ArtifactError, match="not listed"):
        artifact.read_bytes("../../etc/passwd")
    real = store.write("v2", {"a.json": b"{}"}, {})
    (tmp_path / "store" / "v3").symlink_to(real.path)  # a link inside the store, to a real version
    assert store.load("v2").version == "v2"
    for version in ("../elsewhere", "..", "v1/../../x", "v3"):
        with pytest.raises(ArtifactError, match="not a version directory inside"):
            store.load(version)
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    (tmp_path / "store" / "v1" / "a.json").unlink()
    (tmp_path / "store" / "v1" / "a.json").symlink_to(outside)
    with pytest.raises(ArtifactError, match="is a link"):
        artifact.read_bytes("a.json")


def test_empty_store_says_how_to_fill_it(tmp_path):
    with pytest.raises(ArtifactError, match="run `recsys train`"):
        ArtifactStore(tmp_path).load()


def test_versions_combine_time_and_data_hash():
    import pandas as pd
    frame = pd.DataFrame({"a": [1, 2]})
    assert data_hash(frame) == data_hash(frame.copy()) != data_hash(frame.assign(a=[1, 3]))
    version = new_version(data_hash(frame))
    assert version.endswith(data_hash(frame)[:8]) and version[8] == "T"
