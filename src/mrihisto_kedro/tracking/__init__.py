"""Experiment tracking (MLflow) and hyper-parameter search (Optuna); no Kedro imports."""
