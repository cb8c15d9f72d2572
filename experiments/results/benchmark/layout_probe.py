"""Probe behind NOTES.md: does keeping the model axis inside the first-layer kernel ([784, N, 128]) instead of
in front ([N, 784, 128]) speed up the vmapped MLP step on this device? Times 100 scanned Adam steps (random data,
best of 3) of N stacked MNIST MLPs in both layouts.

Usage: python experiments/results/benchmark/layout_probe.py 1024,4096
"""

import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(128)(x))
        x = nn.relu(nn.Dense(64)(x))
        return nn.Dense(10)(x)


def probe(n, bs, steps, layout):
    m, tx = MLP(), optax.adam(1e-3)
    keys = jax.random.split(jax.random.key(0), n)
    p = jax.vmap(lambda k: m.init(k, jnp.zeros((1, 784))))(keys)
    axes = jax.tree.map(lambda _: 0, p)
    if layout == "inner":
        axes["params"]["Dense_0"]["kernel"] = 1
        p["params"]["Dense_0"]["kernel"] = jnp.moveaxis(p["params"]["Dense_0"]["kernel"], 0, 1)
    X = jax.random.normal(jax.random.key(1), (steps * bs, 784))
    Y = jax.random.randint(jax.random.key(2), (steps * bs,), 0, 10)

    def loss(q, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(m.apply(q, x), y).mean()

    g = jax.vmap(jax.grad(loss), in_axes=(axes, None, None), out_axes=axes)

    @jax.jit
    def epoch(p, o):
        def body(c, i):
            p, o = c
            x = jax.lax.dynamic_slice_in_dim(X, i * bs, bs)
            y = jax.lax.dynamic_slice_in_dim(Y, i * bs, bs)
            u, o = tx.update(g(p, x, y), o, p)
            return (optax.apply_updates(p, u), o), None

        return jax.lax.scan(body, (p, o), jnp.arange(steps))[0]

    o = tx.init(p)
    jax.block_until_ready(epoch(p, o))
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(epoch(p, o))
        best = min(best, time.perf_counter() - t)
    return best / steps


for n in [int(a) for a in sys.argv[1].split(",")]:
    for bs in (128, 32):
        r = {lay: probe(n, bs, 100, lay) for lay in ("outer", "inner")}
        print(
            f"N {n:5d} batch {bs:3d}: [N,784,128] {1e3 * r['outer']:.3f} ms/step, [784,N,128] {1e3 * r['inner']:.3f} ms/step, ratio {r['outer'] / r['inner']:.2f}",
            flush=True,
        )
