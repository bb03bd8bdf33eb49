"""Experiments that train and evaluate grids of runs: :mod:`rssd.experiments.crowd` (``rssd experiment crowd``).

This layer sits above :mod:`rssd.train`, :mod:`rssd.inference` and :mod:`rssd.viz` and below :mod:`rssd.cli`.
"""
