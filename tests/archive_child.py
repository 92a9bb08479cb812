"""Writes the archive of a store directory, for the kill -9 test of
``metricstore.archive.write``: ``python archive_child.py STORE ROOT``."""

from __future__ import annotations

import sys

import metricstore
from metricstore import archive

if __name__ == "__main__":
    with metricstore.open(sys.argv[1], readonly=True) as store:
        archive.write(store, sys.argv[2], until=10**10)
