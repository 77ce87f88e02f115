"""What the real google-cloud-storage client sends for the paths the emulator cannot check.

The emulator ignores ``ifGenerationMatch`` and answers 501 to XML multipart uploads, so these tests put a
recording proxy between the client and the emulator and assert on the requests themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recording_proxy import RecordingProxy
from savflow.common import storage, storage_gcs


@pytest.fixture()
def proxy(gcs_emulator: str, monkeypatch):
    with RecordingProxy(gcs_emulator) as rec:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", rec.url)
        monkeypatch.setattr(storage_gcs, "_clients", {})  # a fresh client that sees the proxy
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
    monkeypatch.setattr(storage_gcs, "CHUNKED_UPLOAD_THRESHOLD", 1024)
    monkeypatch.setattr(storage_gcs, "CHUNK_SIZE", 5 * 1024 * 1024)
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


class _Refusing:
    """An HTTP server that answers every request as GCS answers a caller without permission (403)."""

    def __init__(self, status: int) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        body = json.dumps({"error": {"code": status, "message": "savflow-test does not have storage.objects.get "
                                                                "access", "errors": []}}).encode()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.mark.parametrize("status", [403, 400])
def test_every_gcs_call_fails_as_a_storage_error_naming_the_uri(status: int, monkeypatch) -> None:
    """exists(), listings (whose pages are fetched while iterating) and the rest map the client's errors."""
    server = _Refusing(status)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    monkeypatch.setattr(storage_gcs, "_clients", {})
    uri = "gs://locked-bucket/exp/checkpoints/latest.json"
    calls = [lambda: storage.exists(uri), lambda: storage.list_prefix("gs://locked-bucket/exp"),
             lambda: storage.list_prefix("gs://locked-bucket/exp", recursive=False),
             lambda: storage.list_stats("gs://locked-bucket/exp"), lambda: storage.list_children("gs://locked-bucket"),
             lambda: storage.stat(uri),
             lambda: storage.read_bytes(uri), lambda: storage.write_bytes(uri, b"x"), lambda: storage.delete(uri)]
    try:
        for call in calls:
            with pytest.raises(storage.StorageError, match="gs://locked-bucket"):
                call()
    finally:
        server.httpd.shutdown()
