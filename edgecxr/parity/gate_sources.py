"""Image files that ship inside installed packages, found through the packages' own APIs, with
who made them and under which licence: the raw material of gate-check's photo and
other-modality sets (`edgecxr.parity.gate_sets`). Nothing is downloaded: a package that is not
installed gives no files and a note saying which package to install.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgecxr.core.optional import available, version_of

INSTALL_HINT = "pip install 'edgecxr[dev]'"

# scikit-image's sample loaders whose file ships in the wheel (the others are fetched with pooch,
# which gate-check never does): photographs and micrographs, no drawings or test patterns.
SKIMAGE_PHOTOS = {
    "astronaut": "astronaut.png", "brick": "brick.png", "camera": "camera.png", "cell": "cell.png",
    "chelsea": "chelsea.png", "clock": "clock_motion.png", "coffee": "coffee.png", "coins": "coins.png",
    "grass": "grass.png", "gravel": "gravel.png", "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png", "microaneurysms": "microaneurysms.png", "moon": "moon.png",
    "page": "page.png", "retina": "retina.jpg", "rocket": "rocket.jpg", "text": "text.png",
}
MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)
DICOM3TOOLS_EXAMPLES = Path("/usr/share/doc/dicom3tools/examples")


@dataclass(frozen=True)
class PackageFile:
    path: Path  # where the file is on this machine
    package: str  # distribution name (pip or Debian)
    version: str
    relpath: str  # the file inside the package, the same on every machine
    licence: str  # the package's licence
    file_licence: str  # what the package says about this file, where it says anything

    def attribution(self) -> dict:
        return {"package": self.package, "version": self.version, "path": self.relpath,
                "licence": self.licence, "file_licence": self.file_licence}

    @property
    def label(self) -> str:
        return f"{self.package} {self.version}: {self.relpath}"


def package_licence(dist: str) -> str:
    """The licence a distribution declares: its SPDX expression, else a short License field,
    else its trove classifier (some packages put the whole licence text in License)."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        meta = metadata(dist)
    except PackageNotFoundError:
        return "not stated"
    if meta["License-Expression"]:
        return str(meta["License-Expression"])
    text = (meta["License"] or "").strip()
    if text and "\n" not in text and len(text) <= 80:
        return text
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    return "; ".join(classifiers) or (text.splitlines()[0][:80] if text else "not stated")


def _licence_lines(doc: str | None) -> str:
    """The sentences of a loader's docstring that state the picture's copyright or licence."""
    lines = [line.strip() for line in (doc or "").splitlines()]
    hits = [line for line in lines if re.search(r"copyright|public domain|licen[cs]e|CC0|Creative Commons", line, re.I)]
    return " ".join(hits)[:300] or "not stated in the package"


def skimage_photos() -> tuple[list[PackageFile], str | None]:
    if not available("skimage"):
        return [], f"scikit-image is not installed: its sample photographs are left out ({INSTALL_HINT})"
    import skimage.data

    version = version_of("scikit-image") or "?"
    licence = package_licence("scikit-image")
    found = []
    for loader, name in SKIMAGE_PHOTOS.items():
        path = Path(skimage.data.data_dir) / name
        if path.is_file():
            found.append(PackageFile(path, "scikit-image", version, f"skimage/data/{name}", licence,
                                     _licence_lines(getattr(skimage.data, loader, None).__doc__)))
    return found, None


def matplotlib_photos() -> tuple[list[PackageFile], str | None]:
    if not available("matplotlib"):
        return [], f"matplotlib is not installed: its sample photograph is left out ({INSTALL_HINT})"
    from matplotlib import cbook

    version, licence = version_of("matplotlib") or "?", package_licence("matplotlib")
    found = []
    for name in MATPLOTLIB_PHOTOS:
        path = Path(cbook.get_sample_data(name, asfileobj=False))
        if path.is_file():
            found.append(PackageFile(path, "matplotlib", version, f"matplotlib/mpl-data/sample_data/{name}",
                                     licence, "not stated in the package (matplotlib's sample data)"))
    return found, None


def sklearn_photos() -> tuple[list[PackageFile], str | None]:
    if not available("sklearn"):
        return [], f"scikit-learn is not installed: its sample photographs are left out ({INSTALL_HINT})"
    from sklearn.datasets import load_sample_images

    version, licence = version_of("scikit-learn") or "?", package_licence("scikit-learn")
    readme = ""
    found = []
    for filename in sorted(load_sample_images().filenames):
        path = Path(filename)
        if not readme and (path.parent / "README.txt").is_file():
            readme = (path.parent / "README.txt").read_text(errors="replace")
        # The README gives each picture a paragraph: "Image: NAME", its licence and attribution.
        block = re.search(rf"Image: {re.escape(path.name)}\n(.*?)(?:\n\n|$)", readme, re.S)
        note = " ".join(block.group(1).split()) if block else "not stated in the package"
        found.append(PackageFile(path, "scikit-learn", version, f"sklearn/datasets/images/{path.name}",
                                 licence, note + " (see sklearn/datasets/images/README.txt)"))
    return found, None


def photo_files() -> tuple[list[PackageFile], list[str]]:
    files, notes = [], []
    for finder in (skimage_photos, matplotlib_photos, sklearn_photos):
        found, note = finder()
        files += found
        if note:
            notes.append(note)
    return files, notes


def _debian_version(package: str) -> str:
    if not shutil.which("dpkg-query"):
        return "?"
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True,
                          text=True, timeout=10, check=False)
    return done.stdout.strip() or "?"


def dicom_files() -> tuple[list[PackageFile], list[str]]:
    """DICOM test objects of pydicom and pynetdicom (in their wheels) and dicom3tools' example
    (Debian). Only pydicom's own test_files folder: its external store would need a download."""
    files: list[PackageFile] = []
    notes: list[str] = []
    if available("pydicom"):
        from pydicom.data.data_manager import DATA_ROOT

        # Not get_testdata_files: it also tries to download pydicom's external store.
        version, licence = version_of("pydicom") or "?", package_licence("pydicom")
        for path in sorted((Path(DATA_ROOT) / "test_files").glob("*.dcm")):
            files.append(PackageFile(path, "pydicom", version, f"pydicom/data/test_files/{path.name}", licence,
                                         "see pydicom/data/test_files/README.txt (NEMA WG04 and other public "
                                         "samples, downsized and anonymised by pydicom)"))
    else:
        notes.append(f"pydicom is not installed: other-modality DICOM files are left out ({INSTALL_HINT})")
    if available("pynetdicom"):
        import pynetdicom

        root = Path(pynetdicom.__file__).parent / "tests" / "dicom_files"
        version, licence = version_of("pynetdicom") or "?", package_licence("pynetdicom")
        for path in sorted(root.glob("*.dcm")):
            files.append(PackageFile(path, "pynetdicom", version, f"pynetdicom/tests/dicom_files/{path.name}",
                                     licence, "not stated in the package (pynetdicom's test files)"))
    else:
        notes.append("pynetdicom is not installed: its test DICOM files are left out")
    examples = sorted(DICOM3TOOLS_EXAMPLES.glob("*.dcm")) if DICOM3TOOLS_EXAMPLES.is_dir() else []
    if not examples:
        notes.append("dicom3tools' example (Debian package dicom3tools) is not on this machine")
    for path in examples:
        files.append(PackageFile(path, "dicom3tools", _debian_version("dicom3tools"),
                                 f"/usr/share/doc/dicom3tools/examples/{path.name}", "BSD-3-Clause",
                                 "Copyright David A. Clunie; see /usr/share/doc/dicom3tools/copyright"))
    return files, notes


def matplotlib_mr_slice() -> PackageFile | None:
    """matplotlib's s1045.ima.gz: one 256x256 16-bit MR slice of a head, stored raw (its image
    demo reads it as little-endian uint16)."""
    if not available("matplotlib"):
        return None
    from matplotlib import cbook

    path = Path(cbook.get_sample_data("s1045.ima.gz", asfileobj=False))
    if not path.is_file():
        return None
    return PackageFile(path, "matplotlib", version_of("matplotlib") or "?",
                       "matplotlib/mpl-data/sample_data/s1045.ima.gz", package_licence("matplotlib"),
                       "not stated in the package (matplotlib's sample data)")
