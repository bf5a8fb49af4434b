"""Helpers the tests share: a tiny run configuration, fake models and datasets, broken files on purpose."""
