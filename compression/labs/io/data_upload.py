"""A zip of an image folder, uploaded as a data set: unpacked under the lab folder and named `imagefolder:PATH`.

An upload is untrusted input. Nothing in it is run or unpickled: only image files are written (other members,
such as macOS's __MACOSX/ and .DS_Store, are skipped). Before anything is written every member is checked: no
absolute path, no '..', no link, at most MAX_MEMBERS files and MAX_UNPACKED_BYTES unpacked by the zip's own
header -- and each member is copied with a byte count, in case the header lies (a zip bomb). The unpacked folder
must then load as an image folder (every image decodes, enough per split), or it is deleted and the reason given.
The same zip uploaded twice is the same data set (its folder is named by the zip's hash).

The page only runs the instant checks (`save_zip`: size, and the member list from the zip's central directory) and
saves the file; unpacking and decoding every image is a job (`run_import_data`), with progress and a Cancel.
"""
from __future__ import annotations

import hashlib
import io
import re
import shutil
import stat
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ...core.data import IMAGEFOLDER, describe_image_folder, load_image_folder
from ...errors import LabError
from ...paths import lab_home
from ..configs import ImportDataConfig
from ..context import RunContext

MAX_ZIP_BYTES = 1 * 2**30
MAX_UNPACKED_BYTES = 4 * 2**30
MAX_MEMBERS = 200_000
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}  # torchvision's
CHUNK = 1 << 20


def uploads_dir() -> Path:
    return lab_home() / "datasets"


def uploaded_datasets() -> list[str]:
    """The data sets unpacked from earlier uploads, as imagefolder names, newest first."""
    folders = [d for d in uploads_dir().glob("*/") if d.is_dir() and not d.name.endswith(".partial")]
    folders.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    return [f"{IMAGEFOLDER}{_data_root(d)}" for d in folders]


def upload_label(name: str) -> str:
    """'upload: flowers (3a9c...)' for a data set unpacked from a zip; the name itself for anything else."""
    path = Path(name[len(IMAGEFOLDER):]) if name.startswith(IMAGEFOLDER) else None
    if path is None or uploads_dir() not in path.parents:
        return name
    folder = path.relative_to(uploads_dir()).parts[0]
    stem, _, digest = folder.rpartition("-")
    return f"upload: {stem} ({digest[:6]})"


def save_zip(blob: bytes, filename: str) -> str:
    """The page's part: refuse what the zip's own listing already shows is bad, else save it for an import job;
    returns the saved path."""
    _checked_images(_opened(blob, filename), filename)
    folder = lab_home() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.zip"
    path.write_bytes(blob)
    return str(path)


def run_import_data(config: ImportDataConfig, ctx: RunContext | None = None) -> dict:
    """The job's part: unpack and check a saved zip; the saved zip is removed either way."""
    path = Path(config.path)
    if not path.is_file():
        raise LabError(f"{config.filename} is no longer in the lab folder; upload it again.")
    try:
        name = import_image_zip(path.read_bytes(), config.filename, ctx)
    finally:
        path.unlink(missing_ok=True)
    return {"dataset": name, "label": upload_label(name), **describe_image_folder(name)}


def import_image_zip(blob: bytes, filename: str, ctx: RunContext | None = None) -> str:
    """Unpack an uploaded zip of class subfolders (or train/, val/ and test/ holding them) and check that it loads;
    returns its data set name, imagefolder:PATH. A bad zip raises LabError and leaves nothing behind."""
    ctx = ctx or RunContext()
    archive = _opened(blob, filename)
    target = uploads_dir() / f"{_safe_stem(filename)}-{hashlib.sha256(blob).hexdigest()[:16]}"
    if target.is_dir():
        return f"{IMAGEFOLDER}{_data_root(target)}"  # the same zip again: the same data set
    images = _checked_images(archive, filename)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _unpack(archive, images, partial, filename, ctx.slice(0.0, 0.5))
        ctx.report(0.5, f"Decoding each of the {len(images):,} images once")
        name = f"{IMAGEFOLDER}{_data_root(partial)}"
        try:
            load_image_folder(name)  # not cached: the folder moves next
        except LabError as err:
            raise LabError(f"{filename} does not hold a usable image folder: {err}") from None
        partial.rename(target)
    except BaseException:  # a refusal, a cancel or a crash: nothing half-unpacked stays
        shutil.rmtree(partial, ignore_errors=True)
        raise
    ctx.report(1.0, f"Added {upload_label(f'{IMAGEFOLDER}{target}')}")
    return f"{IMAGEFOLDER}{_data_root(target)}"


def check_zip_size(size: int, filename: str) -> None:
    """The upload cap; the CLI calls it on the file's size before reading the file into memory."""
    if size > MAX_ZIP_BYTES:
        raise LabError(f"{filename} is {size / 2**20:.0f} MiB; the limit is {MAX_ZIP_BYTES // 2**20} MiB.")


def _opened(blob: bytes, filename: str) -> zipfile.ZipFile:
    if not blob:
        raise LabError(f"{filename} is empty.")
    check_zip_size(len(blob), filename)
    try:
        return zipfile.ZipFile(io.BytesIO(blob))
    except (zipfile.BadZipFile, ValueError):
        raise LabError(f"{filename} is not a zip file.") from None


def _safe_stem(filename: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", Path(filename).stem)[:40].strip("._") or "images"


def _checked_images(archive: zipfile.ZipFile, filename: str) -> list[zipfile.ZipInfo]:
    """The image members, after refusing the zip if any member could write outside its folder or the whole
    would be too big."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise LabError(f"{filename} holds {len(infos):,} files; the limit is {MAX_MEMBERS:,}.")
    images = []
    for info in infos:
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", info.filename):
            raise LabError(f"{filename} holds '{info.filename[:80]}', a path outside the folder; refused.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise LabError(f"{filename} holds a link, '{info.filename[:80]}'; refused.")
        hidden = any(part.startswith(".") or part == "__MACOSX" for part in path.parts)
        if not info.is_dir() and not hidden and path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(info)
    if not images:
        raise LabError(f"{filename} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    unpacked = sum(info.file_size for info in images)
    if unpacked > MAX_UNPACKED_BYTES:
        raise LabError(f"{filename} would unpack to {unpacked / 2**30:.1f} GiB; the limit is "
                       f"{MAX_UNPACKED_BYTES // 2**30} GiB.")
    return images


def _unpack(archive: zipfile.ZipFile, images: list[zipfile.ZipInfo], folder: Path, filename: str,
            ctx: RunContext) -> None:
    written = 0
    for done, info in enumerate(images):
        ctx.check_cancel()
        if done % 200 == 0:
            ctx.report(done / len(images), f"Unpacking image {done + 1:,} of {len(images):,}")
        dest = folder.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
        size = 0
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)  # fails where a file of that name came first
            with archive.open(info) as src, open(dest, "wb") as out:
                while chunk := src.read(CHUNK):
                    size += len(chunk)
                    written += len(chunk)
                    if size > info.file_size or written > MAX_UNPACKED_BYTES:  # the header lied
                        raise LabError(f"{filename}: '{info.filename[:80]}' unpacks to more than its header "
                                       "says; refused.")
                    out.write(chunk)
        except NotImplementedError:  # before RuntimeError, its base class
            raise LabError(f"{filename}: '{info.filename[:80]}' uses a compression method that cannot be read; "
                           "zip it with deflate.") from None
        except RuntimeError:  # zipfile's word for an encrypted member
            raise LabError(f"{filename}: '{info.filename[:80]}' is encrypted; unpack it without a password.") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError) as err:
            raise LabError(f"{filename}: '{info.filename[:80]}' cannot be unpacked "
                           f"({str(err).splitlines()[0][:80] or 'corrupt'}).") from None


def _data_root(folder: Path) -> Path:
    """The folder the classes (or train/ val/ test/) are in: a zip of 'flowers/' holds one folder, its root."""
    root = folder
    while True:
        entries = list(root.iterdir())
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        else:
            return root
