"""netvirt's benchmarks against their anchors (see BENCHMARKS.md).

Each module runs on its own from the repository root, as root::

    python -m benchmarks.build  [--sizes 10 100 200 1000] [--runs 3] [--smoke] [--json]
    python -m benchmarks.wire   [--runs 3] [--seconds 5] [--smoke] [--json]
    python -m benchmarks.startup [--runs 10] [--smoke] [--json]

netvirt and its anchor are measured alternately, run by run, in the same
process, and every figure is printed next to the anchor's and their ratio.
"""
