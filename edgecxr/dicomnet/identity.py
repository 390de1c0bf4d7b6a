"""edgecxr's DICOM implementation identity: one UID root, one Implementation Class UID, one version name.

A PACS administrator reads these in the association log (A-ASSOCIATE-RQ/AC user information)
and in each file's meta header (0002,0012)/(0002,0013) to tell which software sent or wrote
an object. pynetdicom and pydicom would otherwise put their own UIDs there, which names the
library, not the product. The root is a UUID-derived UID (PS3.5 B.2): no registration needed,
and no other organisation can hold the same one. Everything that opens or accepts an association,
or writes a file meta header, takes its identity from here (new_ae, stamp).
"""

from __future__ import annotations

import re
import uuid

from edgecxr import __version__

# Generated once (uuid4) for the edgecxr project and never changed: the root of every UID
# edgecxr assigns to itself (as opposed to UIDs derived for objects, see sr.derived_uid).
EDGECXR_UUID = uuid.UUID("16880e44-076a-4c2f-be0e-e423b5a8b0bf")
UID_ROOT = f"2.25.{EDGECXR_UUID.int}"
IMPLEMENTATION_CLASS_UID = f"{UID_ROOT}.1"  # arc 1 under the root: the implementation (PS3.7 D.3.3.2)
VERSION_NAME_MAX = 16  # SH, and the A-ASSOCIATE item's limit


def implementation_version_name(version: str = __version__) -> str:
    """"EDGECXR_" + the version, in the characters an SH and the association item allow, 16 at most."""
    return ("EDGECXR_" + re.sub(r"[^A-Za-z0-9._-]", "_", version))[:VERSION_NAME_MAX]


IMPLEMENTATION_VERSION_NAME = implementation_version_name()


def new_ae(ae_title: str):
    """A pynetdicom AE that announces edgecxr's identity on every association it opens or accepts."""
    from pynetdicom import AE

    ae = AE(ae_title=ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    return ae


def stamp(file_meta) -> None:
    """Name edgecxr as the implementation that wrote the file (PS3.10 7.1), in place."""
    file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME


def stamp_dataset(ds) -> None:
    """stamp() for a data set about to be saved: creates its file meta when it has none yet."""
    from pydicom.dataset import FileMetaDataset

    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    stamp(ds.file_meta)
