"""Runners that reproduce the seeds' results: demo, junction densities, pruning, SSL, fixed point, search,
kernel benchmarks. They use the run store (``sparseforge.runs``) and report through callbacks."""
