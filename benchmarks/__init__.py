"""The benchmark suite of the solver: ``rlsedit bench-solver [--quick] [--long] --out DIR``.

Timings are not tests: the suite measures this machine's ceilings (matrix-multiply throughput and
memory bandwidth) in the same run as the solver and reports every solver figure as a fraction of
them. See ``benchmarks/README.md``.
"""
