"""What the real google-cloud-storage client sends for the paths the emulator cannot check.

The emulator ignores ``ifGenerationMatch`` and answers 501 to XML multipart uploads, so these tests put a
recording proxy between the client and the emulator and assert on the requests themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recording_proxy import RecordingProxy
from savflow.common import storage


@pytest.fixture()
def proxy(gcs_emulator: str, monkeypatch):
    with RecordingProxy(gcs_emulator) as rec:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", rec.url)
        monkeypatch.setattr(storage, "_clients", {})
        yield rec


def test_create_only_sends_generation_precondition(gcs_bucket: str, proxy: RecordingProxy) -> None:
    storage.write_bytes(storage.join(gcs_bucket, "m.json"), b"{}", create_only=True)
    storage.write_bytes(storage.join(gcs_bucket, "plain.json"), b"{}")
    uploads = [r for r in proxy.requests if r.method == "POST" and "/upload/" in r.path]
    assert [r.query.get("ifGenerationMatch") for r in uploads] == [["0"], None]


def test_create_only_file_upload_sends_generation_precondition(gcs_bucket: str, proxy: RecordingProxy,
                                                               tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 1000)
    storage.upload_file(src, storage.join(gcs_bucket, "f.bin"), create_only=True)
    uploads = [r for r in proxy.requests if r.method == "POST" and "/upload/" in r.path]
    assert uploads and uploads[-1].query.get("ifGenerationMatch") == ["0"]


def test_large_file_goes_up_as_xml_multipart(gcs_bucket: str, proxy: RecordingProxy, tmp_path: Path,
                                             monkeypatch) -> None:
    monkeypatch.setattr(storage, "CHUNKED_UPLOAD_THRESHOLD", 1024)
    monkeypatch.setattr(storage, "CHUNK_SIZE", 5 * 1024 * 1024)
    src = tmp_path / "big.bin"
    src.write_bytes(b"y" * 4096)
    bucket = gcs_bucket.removeprefix("gs://")
    # The emulator answers 501 to the XML multipart API: the upload fails, but the request must be the
    # initiation of a multipart upload of exactly this object.
    with pytest.raises(Exception):
        storage.upload_file(src, storage.join(gcs_bucket, "big.bin"))
    initiations = [r for r in proxy.requests if r.method == "POST" and "uploads" in r.query]
    assert [r.path for r in initiations] == [f"/{bucket}/big.bin"]
    assert initiations[0].status == 501
