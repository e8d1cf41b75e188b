"""Matrix factorization with sparsemb as a library: user and item Embeddings, any lazy optimizer.

Ratings come from a planted low-rank model, r = <u*, i*> + noise. Each step looks up a minibatch of
(user, item) pairs, computes the squared error by hand in NumPy, pushes the gradient back through
both layers and lets the optimizer update only the rows the batch saw.

    python scripts/example_matrix_factorization.py [--users 2000 --items 1000 --rank 8 --epochs 10]
"""
from __future__ import annotations

import argparse

import numpy as np

import sparsemb as sm

OPTIMIZERS = {
    "sgd": (sm.optim.SGD, {"lr": 0.2}),
    "adagrad": (sm.optim.Adagrad, {"lr": 0.5}),
    "rowwise_adagrad": (sm.optim.RowwiseAdagrad, {"lr": 0.5}),
    "sparse_adam": (sm.optim.SparseAdam, {"lr": 0.05}),
}


def planted_ratings(users, items, rank, n_ratings, noise, seed):
    """``(user_ids, item_ids, ratings)`` from a random rank-``rank`` model plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    pu = rng.standard_normal((users, rank)) / rank ** 0.25
    qi = rng.standard_normal((items, rank)) / rank ** 0.25
    u = rng.integers(0, users, n_ratings)
    i = rng.integers(0, items, n_ratings)
    r = np.einsum("nk,nk->n", pu[u], qi[i]) + noise * rng.standard_normal(n_ratings)
    return u, i, r.astype(np.float32)


def rmse(U, V, u, i, r):
    return float(np.sqrt(np.mean((np.einsum("nk,nk->n", U(u), V(i)) - r) ** 2)))


def train(optimizer="adagrad", users=2000, items=1000, rank=8, n_ratings=100_000, epochs=10,
          batch=1024, noise=0.1, seed=0):
    """Train and return the held-out RMSE after each epoch (the first entry: before training)."""
    u, i, r = planted_ratings(users, items, rank, n_ratings, noise, seed)
    n_test = n_ratings // 10
    test, train_ = slice(0, n_test), slice(n_test, None)
    U = sm.Embedding(users, rank, seed=seed + 1)
    V = sm.Embedding(items, rank, seed=seed + 2)
    U.weight *= 0.1
    V.weight *= 0.1
    opt_cls, kw = OPTIMIZERS[optimizer]
    opt = opt_cls([U, V], **kw)
    rng = np.random.default_rng(seed + 3)
    history = [rmse(U, V, u[test], i[test], r[test])]
    tu, ti, tr = u[train_], i[train_], r[train_]
    for _ in range(epochs):
        perm = rng.permutation(tu.size)
        for s in range(0, perm.size, batch):
            b = perm[s:s + batch]
            opt.zero_grad()
            eu, ev = U(tu[b]), V(ti[b])
            err = (np.einsum("nk,nk->n", eu, ev) - tr[b])[:, None]  # d(½ err²)/d(prediction)
            U.backward(err * ev)
            V.backward(err * eu)
            opt.step()
        history.append(rmse(U, V, u[test], i[test], r[test]))
    return history


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--ratings", type=int, default=100_000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), action="append")
    a = p.parse_args()
    for name in a.optimizer or sorted(OPTIMIZERS):
        hist = train(name, a.users, a.items, a.rank, a.ratings, a.epochs)
        print(f"{name:16s} held-out RMSE by epoch: " + " ".join(f"{h:.3f}" for h in hist))


if __name__ == "__main__":
    main()
