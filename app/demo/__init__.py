"""Demo data and generated sample photos: for `gridproof demo`, the tests and the benchmarks."""
