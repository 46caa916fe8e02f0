"""Labelled data sets that install offline (from Debian packages), loaded as numpy arrays."""
