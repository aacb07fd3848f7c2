"""The experiments, by name. Each module defines ``Config`` (a frozen, validated dataclass with a
``quick()`` preset), ``cells(config)``, ``run_cell(config, cell) -> list[dict]`` and
``summarize(config, records) -> dict``; :func:`simulations.run.run_experiment` runs them through
the sweep runner."""

EXPERIMENTS: dict[str, tuple[str, str]] = {
    "bounds": ("simulations.experiments.bounds", "every bound against its measured quantity"),
    "convergence": ("simulations.experiments.convergence", "convergence to the population minimiser vs t"),
    "tradeoff": ("simulations.experiments.tradeoff", "adherence/preservation over a grid of lam and mu"),
    "retention": ("simulations.experiments.retention", "first cohort's residual as later edits arrive, all editors"),
    "cost": ("simulations.experiments.cost", "per-edit cost vs history length and vs batch size"),
    "grid": ("simulations.experiments.grid", "general sweep over generator, editor, lam, mu, d_k, d_v, u, seed"),
    "realsize": ("simulations.experiments.realsize", "real layer sizes in float32: bounds and recursion vs float64"),
    "minilm": ("simulations.experiments.minilm", "a real pretrained layer (MiniLM output.dense) with real text keys"),
}
