"""Damaged copies of a dataset file, for the reader's tests, and digests of a folder."""

import hashlib
from pathlib import Path

import h5py


def copy_and_edit(source, target, edit):
    """Copy the HDF5 file ``source`` to ``target`` and apply ``edit(file)`` to the copy."""
    target.write_bytes(Path(source).read_bytes())
    with h5py.File(target, "r+") as file:
        edit(file)
    return target


def replace_item(name, data):
    """An edit that replaces the item ``name`` by a dataset holding ``data``."""
    def edit(file):
        del file[name]
        file.create_dataset(name, data=data)
    return edit


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file in ``folder``: a refused command must leave it unchanged."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.iterdir()) if path.is_file()}
