"""``serve-bench compare``: is a candidate run different from a baseline, figure by figure, and is it worse by
more than a gate allows?

    sides         what a side is (a run, a directory of trial runs, a report), and what must match
    figures       the headline figures, read from a stage's requests the same way for the point and each draw
    significance  the tests (Welch across trials, block bootstrap within a stage, z for accuracy), Holm
    build         the comparison: alignment, tests, the gate's verdict
    render        terminal/Markdown table and JSON
"""
