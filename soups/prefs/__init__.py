"""Infer a user's weights from a few pairwise choices (`soups ask`, `soups fit-weights`).

fit.py: Bradley-Terry fit with L2 toward a prior, Laplace posterior, merge-weight mapping (pure numpy);
active.py: expected-information-gain question selection; population.py: empirical-Bayes population prior;
pool.py / poolgen.py: the candidate pool; features.py: phi from the rewards; answers.py: answer files;
ask.py: the interactive session; user.py: user.json.
"""
