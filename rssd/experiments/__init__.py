"""Experiments that train and evaluate grids of runs: :mod:`rssd.experiments.crowd` (``rssd experiment crowd``).

This layer sits above :mod:`rssd.train` and :mod:`rssd.evaluate` and below :mod:`rssd.cli`.
"""
