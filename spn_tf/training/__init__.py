"""The training loop's parts: the distributed step, checkpoints, weight averaging, schedules."""
