"""Data: the sample schema, dataset readers (one small file each), mixing, sampling and collation."""
