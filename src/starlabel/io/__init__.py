"""Readers and writers: spectra (GES, ESO Phase 3, text), catalogues, the HDF5 dataset."""
