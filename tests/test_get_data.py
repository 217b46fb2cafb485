"""datasets/get_data.py and scripts/get_data.sh with local file:// archives; no network."""

import hashlib
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from data_archives import all_archives, url_args
from datasets import get_data
from datasets.aflw import load_aflw_records
from datasets.celeba import load_celeba_records
from datasets.mtfl import load_mtfl_records
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def archives(synthetic_root, tmp_path_factory) -> dict[str, Path]:
    return all_archives(synthetic_root, tmp_path_factory.mktemp("archives"))


def run_script(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", str(REPO / "scripts" / "get_data.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_fetches_unpacks_and_checks_all_three(archives, tmp_path, capsys):
    assert get_data.main(["--out", str(tmp_path), *url_args(archives)]) == 0
    out = capsys.readouterr().out
    assert "120 annotated faces, 120 images, 108 MAFL train, 12 MAFL test" in out
    assert "80 train faces, 40 test faces" in out
    assert "Anno/list_landmarks_align_celeba.txt line 3: 000001.jpg" in out
    # The layouts the loaders read, whatever the archive's top folder (celeba/, aflw_release-2/, none).
    assert len(load_celeba_records(tmp_path / "celeba", "mafl-test")) == 12
    assert len(load_aflw_records(tmp_path / "aflw_release-2", "aflw-test")) == 40
    assert len(load_mtfl_records(tmp_path / "MTFL", "mtfl-val")) == 12
    assert sorted(p.name for p in (tmp_path / ".get_data").iterdir()) == ["aflw.json", "celeba.json", "mtfl.json"]
    assert list((tmp_path / "downloads").iterdir()) == []  # archives deleted once checked
    assert not list(tmp_path.glob(".unpack-*"))


def test_rerun_skips_finished_data_sets(archives, tmp_path, capsys):
    args = ["--out", str(tmp_path), "--only", "aflw", *url_args(archives)]
    assert get_data.main(args) == 0
    capsys.readouterr()
    args[-1] = "aflw=file:///nonexistent/aflw_release-2.zip"  # nothing may be fetched again
    assert get_data.main(args) == 0
    assert "aflw: finished earlier" in capsys.readouterr().out


def test_stale_part_file_is_never_taken_for_the_archive(archives, tmp_path, capsys):
    whole = archives["celeba"].read_bytes()
    part = tmp_path / "downloads" / "celeba.zip.part"
    part.parent.mkdir()
    part.write_bytes(whole[: len(whole) // 2])  # an interrupted earlier download
    assert get_data.main(["--out", str(tmp_path), "--only", "celeba", *url_args(archives)]) == 0
    assert len(load_celeba_records(tmp_path / "celeba", "celeba")) == 108
    assert not part.exists()


def test_short_download_stays_a_part_file(archives, tmp_path, capsys):
    size = archives["aflw"].stat().st_size
    args = ["--out", str(tmp_path), "--only", "aflw", "--bytes", f"aflw={size + 1}", *url_args(archives)]
    assert get_data.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "incomplete download" in err and f"{size} bytes" in err
    assert (tmp_path / "downloads" / "aflw_release-2.zip.part").exists()
    assert not (tmp_path / "downloads" / "aflw_release-2.zip").exists()
    assert not (tmp_path / "aflw_release-2").exists() and not (tmp_path / ".get_data").exists()


def test_sha256_is_checked(archives, tmp_path, capsys):
    good = hashlib.sha256(archives["aflw"].read_bytes()).hexdigest()
    base = ["--out", str(tmp_path), "--only", "aflw", *url_args(archives)]
    assert get_data.main(base + ["--sha256", "aflw=" + "0" * 64]) == 2
    assert "differs from the expected" in capsys.readouterr().err
    assert get_data.main(base + ["--sha256", f"aflw={good.upper()}"]) == 0


@pytest.mark.slow
def test_disk_space_shortfall_stops_with_one_line_before_fetching(archives, tmp_path):
    result = run_script(["--out", str(tmp_path), "--bytes", "celeba=1e18", *url_args(archives)])
    assert result.returncode == 2
    assert result.stderr.startswith("error: not enough free disk space at") and result.stderr.count("\n") == 1
    assert "will fetch 1000000" in result.stdout  # the plan comes first: 1e18 B = 1,000,000,000 GB
    assert not (tmp_path / "downloads").exists()


@pytest.mark.slow
def test_unreachable_source_is_one_line(tmp_path):
    result = run_script(["--out", str(tmp_path), "--only", "mtfl", "--url", "mtfl=file:///nonexistent/MTFL.zip"])
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot download file:///nonexistent/MTFL.zip")
    assert result.stderr.count("\n") == 1


def test_existing_folder_is_checked_not_downloaded(synthetic_root, tmp_path, capsys):
    (tmp_path / "celeba").symlink_to(synthetic_root, target_is_directory=True)
    args = ["--out", str(tmp_path), "--only", "celeba", "--url", "celeba=file:///nonexistent/celeba.zip"]
    assert get_data.main(args) == 0
    assert "present, will be checked" in capsys.readouterr().out


def test_archive_without_the_layout_is_refused(tmp_path, capsys):
    from data_archives import zip_tree

    bad = zip_tree({"readme.txt": b"not a data set"}, tmp_path / "bad.zip")
    assert get_data.main(["--out", str(tmp_path / "out"), "--only", "aflw", "--url", f"aflw={bad.as_uri()}"]) == 2
    assert "has no aflw_train_images.txt" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob(".unpack-*")) and not (tmp_path / "out" / "aflw_release-2").exists()


def test_official_counts_are_enforced_only_for_the_official_source():
    celeba = get_data.SOURCES[0]
    found = {"annotated faces": 202599, "images": 202598, "MAFL train": 19000, "MAFL test": 1000}
    with pytest.raises(UserError, match="202598 images where the official release has 202599"):
        get_data.check_counts(found, celeba)
    get_data.check_counts(found, get_data.configure_sources((celeba,), ["celeba"], {"celeba": "file:///x.zip"},
                                                           {}, {})[0])


def test_disk_plan_counts_downloads_and_unpacked_data():
    source = get_data.Source("x", "http://h/x.zip", "x", "m", approx_bytes=1000)
    assert get_data.bytes_needed(source, downloaded=False, unpacked=False) == (1000, 2050)
    assert get_data.bytes_needed(source, downloaded=True, unpacked=False) == (0, 1050)
    assert get_data.bytes_needed(source, downloaded=True, unpacked=True) == (0, 0)
    with pytest.raises(UserError, match="need about 2.0 kB .* 1.0 kB free"):
        get_data.check_free_space(2000, 1000, Path("/data"))


def test_bad_override_is_one_line():
    with pytest.raises(UserError, match="--url 'celba=x': expected NAME=VALUE"):
        get_data.parse_assignments(["celba=x"], {"celeba"}, "url")


class RangeServer(http.server.BaseHTTPRequestHandler):
    """Serves `blob` at any path, honours `Range: bytes=N-` (416 past the end), cuts one answer after `cut` bytes."""

    blob, cut, ranges = b"", 0, []

    def do_GET(self):
        start = int(self.headers.get("Range", "bytes=0-")[6:].rstrip("-"))
        type(self).ranges.append(start)
        if start >= len(self.blob):
            self.send_error(416)
            return
        body = self.blob[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(self.blob) - 1}/{len(self.blob)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.cut:
            body, type(self).cut = body[:self.cut], 0  # the connection drops mid-transfer, once
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(blob: bytes, cut: int = 0):
    """A local HTTP server for `blob` in a thread; returns (server, handler class with its `ranges`)."""
    handler = type("Handler", (RangeServer,), {"blob": blob, "cut": cut, "ranges": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


@pytest.mark.slow
def test_interrupted_http_download_continues_from_the_part_file(archives, tmp_path, capsys):
    blob = archives["aflw"].read_bytes()
    server, handler = serve(blob, cut=len(blob) // 3)
    try:
        args = ["--out", str(tmp_path), "--only", "aflw", "--url",
                f"aflw=http://127.0.0.1:{server.server_port}/aflw_release-2.zip"]
        assert get_data.main(args) == 2
        assert "incomplete download" in capsys.readouterr().err
        assert (tmp_path / "downloads" / "aflw_release-2.zip.part").stat().st_size == len(blob) // 3
        assert get_data.main(args + ["--sha256", f"aflw={hashlib.sha256(blob).hexdigest()}"]) == 0
    finally:
        server.shutdown()
    assert handler.ranges == [0, len(blob) // 3]
    assert "continuing" in capsys.readouterr().out
    assert len(load_aflw_records(tmp_path / "aflw_release-2", "aflw-train")) == 80


@pytest.mark.slow
def test_part_file_the_server_cannot_continue_is_fetched_again(archives, tmp_path):
    blob = archives["aflw"].read_bytes()
    part = tmp_path / "downloads" / "aflw_release-2.zip.part"
    part.parent.mkdir()
    part.write_bytes(blob + b"junk")  # longer than the file: the server answers 416
    server, handler = serve(blob)
    try:
        url = f"aflw=http://127.0.0.1:{server.server_port}/aflw_release-2.zip"
        assert get_data.main(["--out", str(tmp_path), "--only", "aflw", "--url", url]) == 0
    finally:
        server.shutdown()
    assert handler.ranges == [len(blob) + 4, 0]
