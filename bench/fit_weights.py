"""Benchmark `soups ask` / `soups fit-weights`: how well do 5, 10, 20 answers recover a user's weights?

Simulated users with known weights w_true answer pairwise questions with Bradley-Terry noise,
P(A) = sigmoid(w_true . (phi(A) - phi(B))). Features phi are real: the shipped candidate pool
(soups/data/ask_pool.jsonl) scored by the rule rewards and standardized on the pool; with
`--features synthetic` (or if the rewards cannot be loaded) they are Gaussian, and the table says so.

Per seed the pool's prompts are split: questions come from 2/3 of them, held-out choices from
the rest. For each user and strategy (random vs. active = expected information gain, the
selection `soups ask` uses, new prompt per question) we fit the Laplace posterior after each
answer and report at 5, 10, 20 answers:
  * cosine(w_true, w_hat) in the fitted dimension space;
  * cosine of the per-pair net preference (w_a - w_b per opposing pair), what the merge weights use;
  * held-out choice accuracy: expected agreement of sign(w_hat . x) with the user's noisy choices,
    next to the true weights' own accuracy (the ceiling).

Run: `.venv/bin/python bench/fit_weights.py` (about 3 minutes on 2 shared CPU cores); writes docs/fit_weights.png.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from soups.prefs.active import select_pair
from soups.prefs.fit import cosine, fit_bt, opposing_pairs, sigmoid
from soups.prefs.pool import candidate_pairs, load_pool
from soups.prefs.population import fit_population

log = logging.getLogger("bench.fit_weights")


def load_features(kind: str, seed: int = 0) -> tuple[np.ndarray, list, list[str], dict, str]:
    """(phi, pool, dims, opposites, description): real rule-reward features or a synthetic stand-in."""
    pool = load_pool()
    if kind in ("auto", "pool"):
        try:
            from soups.prefs.features import default_dimensions, pool_phi

            dims, opp = default_dimensions()
            phi, _ = pool_phi(pool, dims)
            return phi, pool, dims, opp, f"real: shipped pool ({len(pool)} responses) scored by the rule rewards"
        except Exception as e:
            if kind == "pool":
                raise
            log.warning("rule rewards unavailable (%s); using synthetic features", e)
    dims = ["elementary", "expert", "concise", "informative", "friendly", "unfriendly"]
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(len(pool), 3))  # three latent axes; each pair of dims reads one axis, noisily
    phi = np.stack([s * base[:, k] + 0.5 * rng.normal(size=len(pool)) for k in range(3) for s in (1, -1)], axis=1)
    phi = (phi - phi.mean(0)) / phi.std(0)
    from soups.prefs.features import opposites_for

    return phi, pool, dims, opposites_for(dims), f"synthetic Gaussian features ({len(pool)} responses)"


def net_vector(w: np.ndarray, dims: list[str], opp: dict) -> np.ndarray:
    idx = {d: i for i, d in enumerate(dims)}
    return np.array([w[idx[a]] - (w[idx[b]] if b else 0.0) for a, b in opposing_pairs(dims, opp)])


def expected_accuracy(w: np.ndarray, X: np.ndarray, p_true: np.ndarray) -> float:
    """Expected agreement of sign(X w) with choices drawn with P(A) = p_true (ties count half)."""
    s = np.sign(X @ w)
    return float(np.mean(np.where(s > 0, p_true, np.where(s < 0, 1 - p_true, 0.5))))


def draw_user(rng, population: str, dims: list[str], opp: dict, scale: float) -> np.ndarray:
    """A true weight vector with |w| = scale.

    isotropic: a uniform direction in the dims space. paper: like the paper's users, one side of
    each opposing pair (random side and strength, w_a = -w_b), plus 20% off-axis noise.
    """
    d = len(dims)
    if population == "isotropic":
        u = rng.normal(size=d)
    else:
        idx = {name: i for i, name in enumerate(dims)}
        u = np.zeros(d)
        for a, b in opposing_pairs(dims, opp):
            n = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0)
            u[idx[a]] += n / 2
            if b is not None:
                u[idx[b]] -= n / 2
        u += 0.2 * np.linalg.norm(u) / np.sqrt(d) * rng.normal(size=d)
    return scale * u / np.linalg.norm(u)


def run_user(rng, w_true, phi, pairs, groups, train, X_test, checkpoints, strategy, prior, dims, opp, any_prompt):
    """Simulate one user answering up to max(checkpoints) questions; metrics at each checkpoint."""
    p_test = sigmoid(X_test @ w_true)
    asked: set[int] = {int(k) for k in np.flatnonzero(~train)}  # held-out pairs are never asked
    used: set[int] = set()
    X, y, out = [], [], {}
    mu, prec = prior
    post = fit_bt(np.zeros((0, phi.shape[1])), np.zeros(0), prior_mean=mu, prior_prec=prec)
    for n in range(1, max(checkpoints) + 1):
        k = select_pair(pairs, phi, post, asked, strategy, rng, None if any_prompt else groups, used)
        if k is None:
            break
        x = phi[pairs[k, 0]] - phi[pairs[k, 1]]
        X.append(x)
        y.append(float(rng.random() < sigmoid(x @ w_true)))
        asked.add(k)
        used.add(int(groups[k]))
        post = fit_bt(np.array(X), np.array(y), prior_mean=mu, prior_prec=prec)
        if n in checkpoints:
            net_cos = cosine(net_vector(w_true, dims, opp), net_vector(post.mean, dims, opp))
            out[n] = (cosine(w_true, post.mean), net_cos, expected_accuracy(post.mean, X_test, p_test))
    return out, expected_accuracy(w_true, X_test, p_test)


def learn_population_prior(rng, population, phi, pairs, train, dims, opp, args) -> tuple[np.ndarray, np.ndarray]:
    """EM population prior from separate simulated users' answers (random questions on the train prompts)."""
    cand = np.flatnonzero(train)
    data = []
    for _ in range(args.pop_users):
        w = draw_user(rng, population, dims, opp, args.scale)
        ks = rng.choice(cand, size=args.pop_answers, replace=False)
        X = phi[pairs[ks, 0]] - phi[pairs[ks, 1]]
        data.append((X, (rng.random(len(ks)) < sigmoid(X @ w)).astype(float)))
    mu, cov = fit_population(data, prior_prec=args.prior_strength, n_iter=30)
    return mu, np.linalg.inv(cov)


STRATEGIES = [  # (selection, label, prior)
    ("random", "random", "zero"),
    ("eig", "active (EIG)", "zero"),
    ("eig", "active + population prior", "pop"),
]


def run(args) -> dict:
    phi, pool, dims, opp, desc = load_features(args.features)
    pairs, groups = candidate_pairs(pool)
    n_groups = int(groups.max()) + 1
    checkpoints = sorted(int(c) for c in args.answers.split(","))
    out = {"desc": desc, "dims": dims, "checkpoints": checkpoints, "populations": {}}
    t0 = time.time()
    for population in args.populations.split(","):
        res = {label: {n: [] for n in checkpoints} for _, label, _ in STRATEGIES}
        true_acc = []
        for seed in range(args.seeds):
            rng = np.random.default_rng(1000 + seed)
            test_groups = rng.permutation(n_groups)[: n_groups // 3]
            train = ~np.isin(groups, test_groups)
            X_test = phi[pairs[~train, 0]] - phi[pairs[~train, 1]]
            priors = {"zero": (None, args.prior_strength),
                      "pop": learn_population_prior(rng, population, phi, pairs, train, dims, opp, args)}
            for _ in range(args.users):
                w_true = draw_user(rng, population, dims, opp, args.scale)
                user_seed = int(rng.integers(2**31))
                for strategy, label, prior in STRATEGIES:  # same user, same answer-noise stream (paired)
                    got, acc_true = run_user(np.random.default_rng(user_seed), w_true, phi, pairs, groups, train,
                                             X_test, checkpoints, strategy, priors[prior], dims, opp, args.any_prompt)
                    for n, v in got.items():
                        res[label][n].append(v)
                true_acc.append(acc_true)
        out["populations"][population] = {"res": res, "true_acc": float(np.mean(true_acc))}
        log.info("%s: %d users x %d seeds (%.0fs)", population, args.users, args.seeds, time.time() - t0)
    return out


def report(r: dict, args) -> str:
    lines = [
        f"features: {r['desc']}; dims: {', '.join(r['dims'])}",
        f"{args.users} users x {args.seeds} seeds per population, |w_true| = {args.scale}, zero-mean prior precision "
        f"{args.prior_strength}; population prior: EM on {args.pop_users} other users x {args.pop_answers} answers; "
        f"questions: {'any prompt' if args.any_prompt else 'a new prompt each time (as soups ask)'}",
    ]
    for population, pr in r["populations"].items():
        lines += [
            "",
            f"population `{population}`: true weights' own held-out accuracy {100 * pr['true_acc']:.1f}%",
            "",
            "| answers | selection | cosine(w) | cosine(net per pair) | held-out acc. | gap to true |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for n in r["checkpoints"]:
            for _, label, _ in STRATEGIES:
                a = np.array(pr["res"][label][n])
                se = a.std(0, ddof=1) / np.sqrt(len(a))
                lines.append(
                    f"| {n} | {label} | {a[:, 0].mean():.3f} ± {se[0]:.3f} | {a[:, 1].mean():.3f} ± {se[1]:.3f} | "
                    f"{100 * a[:, 2].mean():.1f}% | {100 * (pr['true_acc'] - a[:, 2].mean()):.1f} pts |"
                )
    return "\n".join(lines)


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns, pops = r["checkpoints"], list(r["populations"])
    fig, axes = plt.subplots(len(pops), 2, figsize=(10, 3.6 * len(pops)), squeeze=False)
    colors = ["tab:gray", "tab:blue", "tab:orange"]
    for row, population in enumerate(pops):
        pr = r["populations"][population]
        for (_, label, _), c in zip(STRATEGIES, colors):
            for ax, j in ((axes[row, 0], 0), (axes[row, 1], 2)):
                a = np.array([[v[j] for v in pr["res"][label][n]] for n in ns])
                k = 100 if j == 2 else 1
                m, se = a.mean(1), a.std(1, ddof=1) / np.sqrt(a.shape[1])
                ax.errorbar(ns, k * m, yerr=k * se, marker="o", color=c, label=label, capsize=3)
        axes[row, 0].axhline(0.9, ls=":", color="k", label="target 0.9")
        axes[row, 0].set(xlabel="answers", ylabel="cosine(true w, inferred w)", title=f"{population} users: weights")
        axes[row, 1].axhline(100 * pr["true_acc"], ls="--", color="tab:green", label="true weights")
        axes[row, 1].axhline(100 * pr["true_acc"] - 5, ls=":", color="tab:green", label="true - 5 pts")
        axes[row, 1].set(xlabel="answers", ylabel="held-out choice accuracy (%)",
                         title=f"{population} users: held-out choices")
        for ax in axes[row]:
            ax.set_xticks(ns)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
    fig.suptitle(f"soups ask on simulated users ({r['desc'].split(';')[0]})", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=100, help="simulated users per seed")
    ap.add_argument("--seeds", type=int, default=3, help="seeds (prompt splits and user draws)")
    ap.add_argument("--answers", default="5,10,20", help="checkpoints (number of answers)")
    ap.add_argument("--scale", type=float, default=3.0, help="|w_true|: larger = less noisy users")
    ap.add_argument("--prior-strength", type=float, default=1.0, help="L2 precision of the zero-mean prior")
    ap.add_argument("--features", choices=["auto", "pool", "synthetic"], default="auto")
    ap.add_argument("--populations", default="isotropic,paper", help="user populations: isotropic, paper")
    ap.add_argument("--pop-users", type=int, default=200, help="other users the population prior is learned from")
    ap.add_argument("--pop-answers", type=int, default=20, help="answers per user for the population prior")
    ap.add_argument("--any-prompt", action="store_true", help="allow several questions on one prompt")
    ap.add_argument("--png", default=str(Path(__file__).resolve().parents[1] / "docs" / "fit_weights.png"),
                    help="figure to write ('' for none)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    r = run(args)
    print(report(r, args))
    if args.png:
        plot(r, Path(args.png))
        print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
