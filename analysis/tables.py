"""Shared by the comparison-table scripts (fst_table.py, augfl_table.py,
pfedafm_table.py, lips_table.py, fedgc_table.py): grouping a sweep's run
folders by method over seeds, and printing a table as aligned text or Markdown."""

import os
import re


def seed_groups(out):
    """out: a folder of runs named <method>_s<seed> -> {method: [run folders]}
    (each run folder holds a metrics.h5; in name order)."""
    groups = {}
    for name in sorted(os.listdir(out)):
        m = re.fullmatch(r"(.+)_s(\d+)", name)
        if m and os.path.isfile(os.path.join(out, name, "metrics.h5")):
            groups.setdefault(m.group(1), []).append(os.path.join(out, name))
    return groups


def table(rows, header, markdown):
    """rows: lists of cells (any type) -> the table as one string: Markdown, or
    text with the first column left-aligned and the others right-aligned."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header)] + [fmt.format(*[str(c) for c in r]) for r in rows])
