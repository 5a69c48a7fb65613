"""``serve-bench validate``: replay a capacity plan's traffic against the fleet it asks for, and say predicted
against observed (claim.py: what the report claims; traffic.py: the replay; judge.py: the verdict and the
scaling efficiency; render.py: the files).

A validation directory (default ``<run>/validations/<time>-<checkpoint>``) holds ``validation.json``,
``validation.md``, the replay's profile and its run directories (the fleet; with ``fewer``, one replica less),
which ``summarize``, ``report`` and ``compare`` read as any run. ``serve-bench report`` of the plan's run finds
the validations under ``validations/`` and shows their scaling efficiency beside the linear assumption."""
