"""Damaged copies of a dataset file, for the reader's tests."""

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
