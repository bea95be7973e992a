"""Parts shared by perturbation methods: mask generators × baselines (perturbers) × aggregators."""
