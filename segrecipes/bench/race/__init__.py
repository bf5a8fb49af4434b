"""``segrecipes bench race``: race recipes to a target mIoU: wall time and images seen until each first reaches it.

Each entry (a preset, optionally with its own overrides and label: ``mild-literal=mild[recipe.transfer=none]``)
trains for its configured duration times ``scale`` with the same data, overrides and evaluation
interval (the shortest scaled duration split into ``evals`` parts, so evaluation costs every entry the
same per unit of training). Wall time is the trainer's ``elapsed_s`` at each evaluation: training,
earlier evaluations and checkpoints, as a user waits for them. Time constants that the recipes carry
over (``recipe.transfer: scaled``) follow the scaled duration; literal ones do not.

A run reaches the target at the first evaluation whose mIoU is at least the target: nothing is known
between two evaluations, so no interpolation. The target can be ``baseline``: the first entry's mean
final mIoU. "mIoU at the reference time" is each run's last evaluation no later than the first entry's
mean wall time (a run that ended earlier keeps its final model). Over several seeds each figure is
reported as mean and sample standard deviation; time to target over the seeds that reached it. The
final mIoU is scored on ``eval_data`` when given (another split or dataset), else on the run's own
validation split; the curves always use the latter.
"""
