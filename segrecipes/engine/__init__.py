"""The engine: the trainer loop (trainer.py) and what it stands on — the clock, checkpoints, the run's
record, distributed set-up, precision, graceful stops, skipped-step bookkeeping, microbatch sizing, and
the remote copy of a run folder on object storage (remote.py).

Host-device synchronizations left in a training run, and why:

* logging steps (every ``train.log_interval``) read the loss and the skipped-step streak: that is
  when a diverged run is stopped, so up to ``log_interval`` further steps may be skipped first;
* evaluations and checkpoints read metrics and check that the weights are finite, by nature;
* an optimizer that cannot skip a step on the device costs one read per step (SGDW and torch's fused
  SGD/AdamW skip on the device; see :func:`segrecipes.optim.optimizer_step`).

Everything else stays on the device: skipping a non-finite step and restoring the BatchNorm
statistics, the grad scaler's decision, SAM's checks, the skipped-step count. Under DDP the
between-steps agreement (any rank's stop signal, the slowest rank's wall time) is an all-reduce of two CPU
numbers per step (gloo), not a GPU synchronization, and a checkpoint gathers each rank's random states;
a test records every host read of device values inside steps (tests/engine/test_trainer.py).
"""
