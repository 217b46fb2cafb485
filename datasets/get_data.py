"""Download and unpack the data sets of the paper's tables, checked against what the loaders read.

    bash scripts/get_data.sh --out /data                    # CelebA + MAFL, AFLW, MTFL
    python -m datasets.get_data --out /data --only celeba,aflw

For each data set, in order, each step skipped when its result is already there:

1. download the archive to `<out>/downloads/<file>.part` (continuing an interrupted one where the
   server allows), then check it: as many bytes as the server announced (and as `--bytes` says), the
   `--sha256` digest when one is given, a readable zip directory. Only then is it renamed to
   `<out>/downloads/<file>`; a `.part` file is never taken for a finished archive;
2. unpack into `<out>/.unpack-<name>/` and move the folder that holds the data set's marker file
   (`Anno/list_landmarks_align_celeba.txt`, `aflw_train_images.txt`, `training.txt`) to
   `<out>/<folder>` in one rename, so `<out>/<folder>` is either whole or absent;
3. check it with the loaders of `datasets/`: every split loads (each listed image present, each
   annotation line parses), and the counts match the official release when its URL is used;
4. write `<out>/.get_data/<name>.json` (atomically): the data set is finished. The archive is then
   deleted unless `--keep-archives`.

A folder `<out>/<folder>` that is already there (a copy you made) is checked, never overwritten.
Before anything is fetched the plan is printed with the number of bytes, and the run stops if the
disk at `--out` has less free space than the downloads plus the unpacked data need.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from datasets.aflw import load_aflw_records
from datasets.celeba import (LANDMARK_FILE, MAFL_TEST_FILE, MAFL_TRAIN_FILE, celeba_image_dir,
                             load_celeba_records, read_celeba_landmarks)
from datasets.mtfl import load_mtfl_records, read_mtfl_annotations
from datasets.records import read_name_list
from utils.errors import UserError, exit_code_of
from utils.files import atomic_write, update_with_file

VGG_RESOURCES = "http://www.robots.ox.ac.uk/~vgg/research/unsupervised_landmarks/resources"
GB = 1e9
CHUNK_BYTES = 1 << 20
REPORT_EVERY_BYTES = 256 << 20
CONNECT_TIMEOUT_S = 30
# Unpacked size relative to the archive: the archives hold JPEGs, which zip does not shrink.
UNPACKED_PER_ARCHIVE_BYTE = 1.05


@dataclass(frozen=True)
class Source:
    """One data set archive and where its contents go.

    approx_bytes: archive size for the disk-space plan (an estimate unless `exact_bytes` is set).
    exact_bytes, sha256: checked against the download when known (`--bytes`, `--sha256`).
    marker: a file whose folder inside the archive is the data set root, moved to `<out>/<folder>`.
    official_counts: what `check_*` must find when the official URL is used (else only reported).
    """

    name: str
    url: str
    folder: str
    marker: str
    approx_bytes: int
    official_counts: tuple[tuple[str, int], ...] = ()
    exact_bytes: int | None = None
    sha256: str | None = None
    official: bool = True

    @property
    def archive(self) -> str:
        """The file name under `<out>/downloads`: the URL's last path part (query left out)."""
        return Path(urllib.parse.urlparse(self.url).path).name or f"{self.name}.zip"


SOURCES = (
    # The archives the reference repositories' READMEs point to (IMM's VGG mirror of CelebA with the
    # MAFL lists, hq images; AFLW as re-cropped by Zhang et al. 2018), and MTFL from its authors' page.
    Source("celeba", f"{VGG_RESOURCES}/celeba.zip", "celeba", str(LANDMARK_FILE), int(7.8 * GB),
           (("annotated faces", 202599), ("images", 202599), ("MAFL train", 19000), ("MAFL test", 1000))),
    Source("aflw", f"{VGG_RESOURCES}/aflw_release-2.zip", "aflw_release-2", "aflw_train_images.txt",
           int(1.1 * GB)),
    Source("mtfl", "http://mmlab.ie.cuhk.edu.hk/projects/TCDCN/data/MTFL.zip", "MTFL", "training.txt",
           int(0.3 * GB), (("training faces", 10000), ("testing faces", 2995))),
)


def parse_assignments(items: list[str], names: set[str], what: str) -> dict[str, str]:
    """`["celeba=VALUE", ...]` -> {"celeba": "VALUE"}; a bad item raises a one-line `UserError`."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in names or not value:
            raise UserError(f"--{what} {item!r}: expected NAME=VALUE with NAME one of {sorted(names)}")
        out[name] = value
    return out


def local_size(url: str) -> int | None:
    """The size of a `file://` URL's file, or None for other URLs and missing files."""
    if not url.startswith("file:"):
        return None
    path = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    return path.stat().st_size if path.is_file() else None


def configure_sources(sources: tuple[Source, ...], only: list[str], urls: dict[str, str],
                      sizes: dict[str, str], digests: dict[str, str]) -> list[Source]:
    """The selected sources with the user's URL, size and digest overrides applied."""
    chosen = []
    for source in sources:
        if source.name not in only:
            continue
        if source.name in urls:
            url = urls[source.name]
            source = replace(source, url=url, official=False, approx_bytes=local_size(url) or source.approx_bytes)
        if source.name in sizes:
            try:
                size = int(float(sizes[source.name]))
            except ValueError:
                raise UserError(f"--bytes {source.name}={sizes[source.name]!r}: expected a number of bytes") from None
            source = replace(source, exact_bytes=size, approx_bytes=size)
        if source.name in digests:
            source = replace(source, sha256=digests[source.name].lower())
        chosen.append(source)
    return chosen


def done_marker(out: Path, source: Source) -> Path:
    return out / ".get_data" / f"{source.name}.json"


def archive_path(out: Path, source: Source) -> Path:
    return out / "downloads" / source.archive


def size_text(num_bytes: float) -> str:
    """'7.80 GB', '12.3 MB', '512 B': decimal units, as download pages give them."""
    for unit, scale in (("GB", GB), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.{2 if unit == 'GB' else 1}f} {unit}"
    return f"{int(num_bytes)} B"


def bytes_needed(source: Source, *, downloaded: bool, unpacked: bool) -> tuple[int, int]:
    """(bytes to fetch, bytes of disk needed) for one source, given what is already on disk."""
    if unpacked:
        return 0, 0
    fetch = 0 if downloaded else source.approx_bytes
    return fetch, fetch + int(source.approx_bytes * UNPACKED_PER_ARCHIVE_BYTE)


def plan_lines(sources: list[Source], out: Path, free_bytes: int) -> tuple[list[str], int]:
    """Lines saying what will be fetched and from where, and the disk bytes needed.

    Reads only which files exist under `out`: finished markers, unpacked folders, downloaded archives.
    """
    lines, total_fetch, total_disk = [], 0, 0
    for source in sources:
        finished = done_marker(out, source).exists()
        unpacked = finished or (out / source.folder).exists()
        downloaded = archive_path(out, source).exists()
        fetch, disk = bytes_needed(source, downloaded=downloaded, unpacked=unpacked)
        total_fetch, total_disk = total_fetch + fetch, total_disk + disk
        state = ("finished earlier" if finished else "present, will be checked" if unpacked
                 else "downloaded, will be unpacked" if downloaded
                 else f"{'' if source.exact_bytes else 'about '}{size_text(source.approx_bytes)} from {source.url}")
        lines.append(f"  {source.name:7s} -> {out / source.folder}: {state}")
    lines.insert(0, f"will fetch {size_text(total_fetch)}; needs about {size_text(total_disk)} free "
                    f"at {out} (downloads + unpacked), {size_text(free_bytes)} free")
    return lines, total_disk


def check_free_space(needed_bytes: int, free_bytes: int, out: Path) -> None:
    """Raise a one-line `UserError` when `free_bytes` at `out` is less than `needed_bytes`."""
    if needed_bytes > free_bytes:
        raise UserError(f"not enough free disk space at {out}: need about {size_text(needed_bytes)} "
                        f"(downloads + unpacked data), {size_text(free_bytes)} free; free some space "
                        f"or choose another --out")


def total_length(response, offset: int) -> int | None:
    """The full file size a urllib response announces, or None when the server gives none.

    offset: bytes already held, when the response answers a Range request with 206 (Content-Range
    "bytes START-END/TOTAL"); 0 for a whole-file response (Content-Length).
    """
    if offset:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def verify_download(path: Path, got: int, announced: int | None, source: Source, digest: str) -> None:
    """Raise `UserError` unless the downloaded file is complete and matches what is known of it."""
    for what, expected in (("the server announced", announced), ("--bytes gives", source.exact_bytes)):
        if expected is not None and got != expected:
            raise UserError(f"{path}: incomplete download, {got} bytes where {what} {expected}; "
                            f"run the command again")
    if source.sha256 and digest != source.sha256:
        raise UserError(f"{path}: sha256 {digest} differs from the expected {source.sha256}; "
                        f"delete it and run the command again")
    verify_zip(path)


def verify_zip(path: Path) -> None:
    """Raise `UserError` unless `path` opens as a zip archive (a truncated zip has no directory)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if not archive.namelist():
                raise UserError(f"{path}: empty zip archive; expected the data set's files")
    except (zipfile.BadZipFile, OSError) as error:
        raise UserError(f"{path}: not a complete zip archive ({error}); delete it and run again") from None


def download(source: Source, dest: Path, progress: Callable[[str], None]) -> Path:
    """Fetch `source.url` into `dest` through `dest.part`; `dest` appears only when verified.

    A `.part` left by an interrupted run is continued when the server honours a Range request
    (HTTP 206) and started again otherwise; either way the whole file is checked before the rename.
    """
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    held = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(source.url, headers={"Range": f"bytes={held}-"} if held else {})
    start = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S) as response:
            offset = held if held and getattr(response, "status", None) == 206 else 0
            total = total_length(response, offset)
            if offset:
                progress(f"  {source.name}: continuing {part} after {size_text(offset)}")
            # a running SHA-256: the bytes already held, then the rest as it arrives
            hasher, got = (update_with_file(hashlib.sha256(), part) if offset else hashlib.sha256()), offset
            next_report = got + REPORT_EVERY_BYTES
            with open(part, "ab" if offset else "wb") as f:
                while chunk := response.read(CHUNK_BYTES):
                    f.write(chunk)
                    hasher.update(chunk)
                    got += len(chunk)
                    if got >= next_report:
                        next_report += REPORT_EVERY_BYTES
                        progress(f"  {source.name}: {size_text(got)} of {size_text(total or source.approx_bytes)}")
    except urllib.error.HTTPError as error:
        if error.code != 416 or not held:
            raise UserError(f"cannot download {source.url} (HTTP {error.code} {error.reason}); pass --url "
                            f"{source.name}=URL for another source") from None
        part.unlink()  # 416: the server has no bytes past the .part's end; fetch the whole file again
        return download(source, dest, progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        raise UserError(f"cannot download {source.url} ({getattr(error, 'reason', error)}); run the command "
                        f"again, put the file at {dest} by hand, or pass --url {source.name}=URL") from None
    verify_download(part, got, total, source, hasher.hexdigest())
    part.replace(dest)
    progress(f"  {source.name}: {size_text(got)} in {time.monotonic() - start:.0f} s -> {dest}")
    return dest


def find_root(tree: Path, marker: str) -> Path:
    """The shallowest folder under `tree` that holds `marker` (a relative path)."""
    depth = len(Path(marker).parts)
    hits = sorted(tree.rglob(Path(marker).name), key=lambda p: len(p.parts))
    for hit in hits:
        if len(hit.relative_to(tree).parts) < depth:
            continue  # too shallow to sit at the end of `marker`
        root = hit.parents[depth - 1]
        if (root / marker).is_file():
            return root
    raise UserError(f"the archive has no {marker}; expected the data set's original layout")


def unpack(archive: Path, source: Source, out: Path) -> Path:
    """Extract `archive` and move its data set root to `<out>/<folder>` in one rename."""
    staging, target = out / f".unpack-{source.name}", out / source.folder
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(staging)  # checks each member's CRC; strips absolute and '..' paths
        find_root(staging, source.marker).replace(target)
    except (zipfile.BadZipFile, OSError) as error:
        raise UserError(f"{archive}: cannot unpack ({error}); delete it and run the command again") from None
    finally:  # what the archive held besides the data set, or all of it after a failure
        shutil.rmtree(staging, ignore_errors=True)
    return target


def check_counts(found: dict[str, int], source: Source) -> None:
    """Raise `UserError` when an official archive's counts differ from the release's."""
    if not source.official:
        return
    for what, expected in source.official_counts:
        if found.get(what) != expected:
            raise UserError(f"{source.name}: {found.get(what, 0)} {what} where the official release has "
                            f"{expected}; the download or the unpacking is incomplete")


def first_line(path: Path, skip: int = 0) -> str:
    """Line `skip` (0-based) of a text file, stripped; for the summary."""
    with open(path, errors="replace") as f:
        for _ in range(skip):
            f.readline()
        return f.readline().strip()


def check_celeba(root: Path) -> tuple[dict[str, int], list[str]]:
    """Counts of a CelebA root and its first annotation lines, after loading every split."""
    landmarks = read_celeba_landmarks(root / LANDMARK_FILE)  # count line, header and every row
    for split in ("celeba", "mafl-train", "mafl-test"):
        load_celeba_records(root, split)  # every listed image annotated and present
    counts = {"annotated faces": len(landmarks),
              "images": sum(1 for p in celeba_image_dir(root).iterdir() if p.suffix == ".jpg"),
              "MAFL train": len(read_name_list(root / MAFL_TRAIN_FILE)),
              "MAFL test": len(read_name_list(root / MAFL_TEST_FILE))}
    return counts, [f"{LANDMARK_FILE} line 3: {first_line(root / LANDMARK_FILE, 2)}",
                    f"{MAFL_TEST_FILE} line 1: {first_line(root / MAFL_TEST_FILE)}"]


def check_aflw(root: Path) -> tuple[dict[str, int], list[str]]:
    """Counts of an aflw_release-2 root (train/test faces, each with keypoints and an image)."""
    counts = {f"{part} faces": len(load_aflw_records(root, f"aflw-{part}")) for part in ("train", "test")}
    return counts, [f"aflw_train_images.txt line 1: {first_line(root / 'aflw_train_images.txt')}"]


def check_mtfl(root: Path) -> tuple[dict[str, int], list[str]]:
    """Counts of an MTFL root: training.txt (every image present) and testing.txt when there."""
    counts = {"training faces": sum(len(load_mtfl_records(root, s)) for s in ("mtfl-train", "mtfl-val"))}
    if (root / "testing.txt").exists():
        counts["testing faces"] = len(read_mtfl_annotations(root / "testing.txt"))
        load_mtfl_records(root, "mtfl-test")
    return counts, [f"training.txt line 1: {first_line(root / 'training.txt')}"]


CHECKS = {"celeba": check_celeba, "aflw": check_aflw, "mtfl": check_mtfl}


def fetch_one(source: Source, out: Path, keep_archive: bool, say: Callable[[str], None]) -> None:
    """Bring one data set to `<out>/<folder>`, checked, skipping the steps already done."""
    marker, target, archive = done_marker(out, source), out / source.folder, archive_path(out, source)
    if marker.exists():
        say(f"{source.name}: finished earlier ({marker}), skipped")
        return
    if not target.exists():
        if not archive.exists():
            download(source, archive, say)
        say(f"{source.name}: unpacking {archive}")
        unpack(archive, source, out)
    counts, lines = CHECKS[source.name](target)
    check_counts(counts, source)
    say(f"{source.name}: {target} checked with the loaders: "
        + ", ".join(f"{n:,} {what}" for what, n in counts.items()))
    for line in lines:
        say(f"  {line}")
    record = {"url": source.url, "folder": str(target), "counts": counts,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(marker, lambda f: f.write((json.dumps(record, indent=2) + "\n").encode()))
    if archive.exists() and not keep_archive:
        archive.unlink()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder that receives celeba/, aflw_release-2/ and MTFL/ "
                   "(pass these as data.root / --data-root)")
    p.add_argument("--only", default="celeba,aflw,mtfl",
                   help="comma-separated data sets to get (default: %(default)s; reproduce.sh needs celeba,aflw)")
    p.add_argument("--url", action="append", default=[], metavar="NAME=URL",
                   help="another source for a data set (a mirror, or file:///path/x.zip); repeatable")
    p.add_argument("--bytes", action="append", default=[], metavar="NAME=N",
                   help="exact archive size in bytes: checked after download and used for the disk plan")
    p.add_argument("--sha256", action="append", default=[], metavar="NAME=HEX",
                   help="expected SHA-256 of an archive, checked after download (the sources publish none)")
    p.add_argument("--keep-archives", action="store_true",
                   help="keep the zip files in <out>/downloads after unpacking (default: delete them)")
    return p


def run(args: argparse.Namespace) -> None:
    names = {s.name for s in SOURCES}
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(only) - names)
    if unknown or not only:
        raise UserError(f"--only {args.only!r}: expected names from {sorted(names)}")
    sources = configure_sources(SOURCES, only, parse_assignments(args.url, names, "url"),
                                parse_assignments(args.bytes, names, "bytes"),
                                parse_assignments(args.sha256, names, "sha256"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out).free
    lines, needed = plan_lines(sources, out, free)
    print("\n".join(lines), flush=True)
    check_free_space(needed, free, out)
    for source in sources:
        fetch_one(source, out, args.keep_archives, lambda line: print(line, flush=True))
    print(f"done: data sets in {out}")


def main(argv: list[str] | None = None) -> int:
    return exit_code_of(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
