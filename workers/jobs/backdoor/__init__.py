"""The backdoor scan job: bias maps (Borji), trigger reverse-engineering, scores, figures.

Importing the package imports no torch; the scan lives in :mod:`workers.jobs.backdoor.job`.
"""
