"""Course recommendations: Surprise SVD trained for ranking, served from numpy factors.

Import the modules themselves (`recommender.service`, `recommender.signals`, …): this package
imports nothing eagerly, so reading a signal name does not load numpy, scipy and Surprise.
"""
