"""Benchmarks of the cloud-mask engine against its peers: ``python -m benchmarks.run`` (see ``run.py``)."""
