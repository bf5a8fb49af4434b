"""The one-command GPU check behind ``segrecipes bench gpu`` (run.py: :func:`~segrecipes.bench.gpu.run.run_gpu`):
the correctness checks (checks.py), the training throughput cells (speed.py), the data pipeline on files
written on the spot (data.py), what each of them trains (workload.py), and the record and tables it leaves
behind (report.py)."""
