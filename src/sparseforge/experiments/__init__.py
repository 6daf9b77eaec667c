"""The face: recipes that reproduce the seeds' results, reports, benchmarks (these may print)."""
