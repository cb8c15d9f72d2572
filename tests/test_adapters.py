"""jinit.adapters: linen and NNX models (BatchNorm, Dropout) as pure init / apply functions."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jinit import adapters

KI = jax.nn.initializers.he_normal()
BI = jax.nn.initializers.zeros
STEPS = 4


def _data(n=16, d=6, classes=3, seed=0):
    kx, ky = jax.random.split(jax.random.PRNGKey(seed))
    return jax.random.normal(kx, (n, d)), jax.random.randint(ky, (n,), 0, classes)


def _loss(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _tree_equal(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _train_with_fns(fns, key, x, y, tx):
    """A plain Python loop of jitted steps through ModelFns; step t's dropout key is fold_in(key, 100 + t)."""
    params, state = fns.init(key, x)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, state, opt_state, rng):
        def loss_fn(p):
            out, new_state = fns.apply(p, state, x, True, rng)
            return _loss(out, y), new_state

        grads, new_state = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, opt_state

    for t in range(STEPS):
        params, state, opt_state = step(params, state, opt_state, jax.random.fold_in(key, 100 + t))
    return params, state


# ------------------------------------------------------------------------------------------------- linen


class LinenNet(nn.Module):
    kernel_init: object
    bias_init: object
    width: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(16, kernel_init=self.kernel_init, bias_init=self.bias_init)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
        x = nn.relu(x)
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(self.width, kernel_init=self.kernel_init, bias_init=self.bias_init)(x)


def test_linen_batchnorm_dropout_training_equals_plain_flax():
    x, y = _data()
    key = jax.random.PRNGKey(7)
    tx = optax.adam(1e-2)
    fns = adapters.model_fns(LinenNet, KI, BI, x=x)
    params, state = _train_with_fns(fns, key, x, y, tx)

    # The same loop written with plain Flax.
    model = LinenNet(KI, BI)
    variables = model.init(key, x)
    p, bs = {"params": variables["params"]}, variables["batch_stats"]
    opt_state = tx.init(p)

    @jax.jit
    def step(p, bs, opt_state, rng):
        def loss_fn(p):
            out, mutated = model.apply(
                {"params": p["params"], "batch_stats": bs},
                x,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": rng},
            )
            return _loss(out, y), mutated["batch_stats"]

        grads, bs = jax.grad(loss_fn, has_aux=True)(p)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), bs, opt_state

    for t in range(STEPS):
        p, bs, opt_state = step(p, bs, opt_state, jax.random.fold_in(key, 100 + t))

    assert set(state) == {"batch_stats"}
    _tree_equal(params, p)
    _tree_equal(state["batch_stats"], bs)
    # The running statistics moved away from their initial values (mean 0, var 1): the forward pass updated them.
    assert float(jnp.abs(bs["BatchNorm_0"]["mean"]).max()) > 1e-3

    # Evaluation uses the running averages, Dropout off: plain Flax eval, and not the training-mode output.
    ev, ev_state = fns.apply(params, state, x, False, None)
    ref = model.apply({"params": p["params"], "batch_stats": bs}, x, train=False)
    np.testing.assert_array_equal(np.asarray(ev), np.asarray(ref))
    _tree_equal(ev_state, state)
    tr, _ = fns.apply(params, state, x, True, jax.random.PRNGKey(1))
    assert not np.allclose(np.asarray(tr), np.asarray(ev))
    # Without dropout, training mode still differs (batch statistics, not running averages).
    model_no_dropout = LinenNet(KI, BI)
    no_drop, _ = model_no_dropout.apply(
        {"params": p["params"], "batch_stats": bs},
        x,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": key},
    )
    assert not np.allclose(np.asarray(no_drop), np.asarray(ev))


def test_linen_init_is_module_init_with_the_key():
    """The sweep's init has always been module.init(key, x): kept, so earlier results stay bitwise the same."""
    x, _ = _data()
    key = jax.random.PRNGKey(3)

    class Plain(nn.Module):
        kernel_init: object
        bias_init: object

        @nn.compact
        def __call__(self, x):
            return nn.Dense(4, kernel_init=self.kernel_init, bias_init=self.bias_init)(x)

    fns = adapters.model_fns(lambda k, b: Plain(k, b), KI, BI, x=x)
    params, state = fns.init(key, x)
    assert state == {}
    _tree_equal(params, Plain(KI, BI).init(key, x))
    out, new_state = fns.apply(params, state, x, True, key)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(Plain(KI, BI).apply(params, x)))
    assert new_state == {}


def test_linen_deterministic_flag():
    x, _ = _data()

    class Det(nn.Module):
        kernel_init: object
        bias_init: object

        @nn.compact
        def __call__(self, x, *, deterministic: bool = True):
            return nn.Dropout(0.5, deterministic=deterministic)(
                nn.Dense(4, kernel_init=self.kernel_init)(x)
            )

    fns = adapters.model_fns(Det, KI, BI, x=x)
    params, state = fns.init(jax.random.PRNGKey(0), x)
    ev, _ = fns.apply(params, state, x, False, None)
    tr, _ = fns.apply(params, state, x, True, jax.random.PRNGKey(1))
    plain = Det(KI, BI).apply(
        params, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)}
    )
    np.testing.assert_array_equal(np.asarray(tr), np.asarray(plain))
    np.testing.assert_array_equal(np.asarray(ev), np.asarray(Det(KI, BI).apply(params, x)))
    assert np.mean(np.asarray(tr) == 0) > 0.2  # dropout active in training


# --------------------------------------------------------------------------------------------------- NNX


class NnxNet(nnx.Module):
    """The usual NNX way: mode through model.train() / model.eval(), Dropout keeps its RNG stream."""

    def __init__(self, kernel_init, bias_init, rngs, width=3):
        self.l1 = nnx.Linear(6, 16, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)
        self.bn = nnx.BatchNorm(16, momentum=0.5, rngs=rngs)
        self.drop1 = nnx.Dropout(0.3, rngs=rngs)
        self.l2 = nnx.Linear(16, 16, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)
        self.drop2 = nnx.Dropout(0.3, rngs=rngs)
        self.out = nnx.Linear(16, width, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)

    def __call__(self, x):
        x = self.drop1(nnx.relu(self.bn(self.l1(x))))
        return self.out(self.drop2(nnx.relu(self.l2(x))))


class NnxFlagNet(nnx.Module):
    """NNX with a `train` call argument instead of modes."""

    def __init__(self, kernel_init, bias_init, *, rngs):
        self.l1 = nnx.Linear(6, 16, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)
        self.bn = nnx.BatchNorm(16, momentum=0.5, rngs=rngs)
        self.drop = nnx.Dropout(0.3, rngs=rngs)
        self.out = nnx.Linear(16, 3, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)

    def __call__(self, x, train: bool = False):
        x = nnx.relu(self.bn(self.l1(x), use_running_average=not train))
        return self.out(self.drop(x, deterministic=not train))


def _nnx_rngs(key):
    # What adapters documents that init gives the factory.
    return nnx.Rngs(jax.random.fold_in(key, 2), params=key, dropout=jax.random.fold_in(key, 1))


@pytest.mark.parametrize("cls", [NnxNet, NnxFlagNet], ids=["modes", "train_arg"])
def test_nnx_batchnorm_dropout_training_equals_plain_nnx(cls):
    x, y = _data()
    key = jax.random.PRNGKey(11)
    tx = optax.adam(1e-2)
    fns = adapters.model_fns(cls, KI, BI)
    params, state = _train_with_fns(fns, key, x, y, tx)

    # The same loop written the usual NNX way: nnx.Optimizer, model.train(), dropout keyed per step by reseed.
    model = cls(KI, BI, rngs=_nnx_rngs(key))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    flag = {"train": True} if cls is NnxFlagNet else {}

    @nnx.jit
    def step(model, optimizer, rng):
        nnx.reseed(model, dropout=rng)
        model.train()

        def loss_fn(model):
            return _loss(model(x, **flag), y)

        grads = nnx.grad(loss_fn)(model)
        optimizer.update(model, grads)

    for t in range(STEPS):
        step(model, optimizer, jax.random.fold_in(key, 100 + t))

    assert set(state) == {"batch_stats"}
    _tree_equal(params, {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))})
    _tree_equal(state["batch_stats"], nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))
    assert (
        float(jnp.abs(state["batch_stats"]["bn"]["mean"]).max()) > 1e-3
    )  # the running statistics moved

    model.eval()
    ref = model(x, **({"train": False} if flag else {}))
    ev, ev_state = fns.apply(params, state, x, False, None)
    np.testing.assert_array_equal(np.asarray(ev), np.asarray(ref))
    _tree_equal(ev_state, state)
    tr, _ = fns.apply(params, state, x, True, jax.random.PRNGKey(5))
    assert not np.allclose(np.asarray(tr), np.asarray(ev))


def test_nnx_dropout_is_keyed_by_rng():
    x, _ = _data()
    fns = adapters.model_fns(NnxNet, KI, BI)
    params, state = fns.init(jax.random.PRNGKey(0), x)
    a, _ = fns.apply(params, state, x, True, jax.random.PRNGKey(1))
    b, _ = fns.apply(params, state, x, True, jax.random.PRNGKey(1))
    c, _ = fns.apply(params, state, x, True, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))


def test_nnx_vmapped_init_and_apply_equal_per_model():
    x, _ = _data()
    fns = adapters.model_fns(NnxNet, KI, BI)
    keys = jax.random.split(jax.random.PRNGKey(4), 3)
    rngs = jax.random.split(jax.random.PRNGKey(9), 3)
    # jitted, as the sweep runs them (eager vmap of NNX is slow op by op)
    params, state = jax.jit(jax.vmap(fns.init, in_axes=(0, None)))(keys, x)
    out, new_state = jax.jit(jax.vmap(lambda p, s, r: fns.apply(p, s, x, True, r)))(
        params, state, rngs
    )
    ev, _ = jax.jit(jax.vmap(lambda p, s: fns.apply(p, s, x, False, None)))(params, new_state)
    init_one = jax.jit(fns.init)  # one compile each, reused for the three models
    train_one = jax.jit(lambda p, s, r: fns.apply(p, s, x, True, r))
    eval_one = jax.jit(lambda p, s: fns.apply(p, s, x, False, None))
    for i in range(3):
        p_i, s_i = init_one(keys[i], x)
        _tree_equal(jax.tree.map(lambda a, i=i: a[i], params), p_i)
        _tree_equal(jax.tree.map(lambda a, i=i: a[i], state), s_i)
        o_i, ns_i = train_one(p_i, s_i, rngs[i])
        np.testing.assert_allclose(np.asarray(out[i]), np.asarray(o_i), rtol=1e-5, atol=1e-6)
        for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(ns_i), strict=True):
            np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b), rtol=1e-5, atol=1e-6)
        e_i, _ = eval_one(p_i, ns_i)
        np.testing.assert_allclose(np.asarray(ev[i]), np.asarray(e_i), rtol=1e-5, atol=1e-6)
    # The models differ from each other (their own keys).
    assert not np.allclose(np.asarray(out[0]), np.asarray(out[1]))


def test_nnx_init_uses_the_documented_rngs():
    x, _ = _data()
    key = jax.random.PRNGKey(21)
    params, _ = adapters.model_fns(NnxNet, KI, BI).init(key, x)
    model = NnxNet(KI, BI, _nnx_rngs(key))
    _tree_equal(params, {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))})


def test_nnx_factory_lambda_and_kernel_init_used():
    x, _ = _data()
    fns = adapters.model_fns(
        lambda kernel_init, bias_init, rngs: NnxNet(kernel_init, bias_init, rngs), KI, BI
    )
    zeros = adapters.model_fns(
        lambda kernel_init, bias_init, rngs: NnxNet(kernel_init, bias_init, rngs),
        jax.nn.initializers.zeros,
        BI,
    )
    p, _ = fns.init(jax.random.PRNGKey(0), x)
    z, _ = zeros.init(jax.random.PRNGKey(0), x)
    assert float(jnp.abs(p["params"]["l1"]["kernel"]).sum()) > 0
    assert float(jnp.abs(z["params"]["l1"]["kernel"]).sum()) == 0


# ---------------------------------------------------------------------------------------- no init arguments


class LinenDefaults(nn.Module):
    features: int = 3

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.features)(nn.relu(nn.Dense(8)(x)))


class NnxDefaults(nnx.Module):
    def __init__(self, *, rngs):
        self.l = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x):
        return self.l(x)


@pytest.mark.parametrize(
    "factory,kind",
    [
        (LinenDefaults, "linen"),
        (lambda: LinenDefaults(), "linen"),
        (NnxDefaults, "nnx"),
        (lambda rngs: NnxDefaults(rngs=rngs), "nnx"),
    ],
    ids=["linen_class", "linen_lambda", "nnx_class", "nnx_lambda"],
)
def test_factory_without_init_arguments(factory, kind):
    x, _ = _data()
    zeros = jax.nn.initializers.zeros
    fns = adapters.model_fns(factory, zeros, zeros, x=x)
    assert fns.info.kind == kind
    assert "takes no kernel_init/bias_init" in fns.info.description
    assert len(fns.info.description) <= 200
    params, state = fns.init(jax.random.PRNGKey(0), x)
    kernels = [
        a for path, a in jax.tree_util.tree_leaves_with_path(params) if "kernel" in str(path[-1])
    ]
    assert kernels and all(
        float(jnp.abs(k).sum()) > 0 for k in kernels
    )  # zeros kernel_init ignored
    out, _ = fns.apply(params, state, x, True, None)
    assert out.shape == (x.shape[0], 3)


def test_factory_with_init_arguments_says_nothing_about_them():
    x, _ = _data()
    description = adapters.model_fns(LinenNet, KI, BI, x=x).info.description
    assert "takes no" not in description and description.startswith("LinenNet(kernel_init=")


# ------------------------------------------------------------------------------------------------- errors


def _one_line_error(exc_type, fn, *match):
    with pytest.raises(exc_type) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg
    for m in match:
        assert m in msg, msg
    return msg


def test_error_linen_module_instance():
    _one_line_error(
        TypeError,
        lambda: adapters.model_fns(LinenNet(KI, BI), KI, BI),
        "pass a factory",
        "lambda kernel_init, bias_init: LinenNet(",
    )


def test_error_nnx_module_instance():
    inst = NnxNet(KI, BI, nnx.Rngs(0))
    _one_line_error(
        TypeError,
        lambda: adapters.model_fns(inst, KI, BI),
        "pass a factory",
        "lambda kernel_init, bias_init, rngs: NnxNet(..., rngs=rngs)",
    )


def test_error_call_with_extra_required_argument():
    class Mode(nn.Module):
        kernel_init: object
        bias_init: object

        @nn.compact
        def __call__(self, x, mode):
            return nn.Dense(3)(x)

    class NnxMode(nnx.Module):
        def __init__(self, kernel_init, bias_init, rngs):
            self.l = nnx.Linear(6, 3, rngs=rngs)

        def __call__(self, x, mode):
            return self.l(x)

    _one_line_error(
        TypeError, lambda: adapters.model_fns(Mode, KI, BI), "'mode'", "give 'mode' a default"
    )
    _one_line_error(
        TypeError, lambda: adapters.model_fns(NnxMode, KI, BI), "'mode'", "give 'mode' a default"
    )


def test_error_state_collections_without_train_flag():
    class NoFlag(nn.Module):
        kernel_init: object
        bias_init: object

        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(nn.BatchNorm(use_running_average=False)(x))

    x, _ = _data()
    _one_line_error(
        ValueError,
        lambda: adapters.model_fns(NoFlag, KI, BI, x=x),
        "batch_stats",
        "add `train: bool = False` to __call__",
    )
    fns = adapters.model_fns(
        NoFlag, KI, BI
    )  # without x the error comes at init's trace, before compiling
    _one_line_error(
        ValueError, lambda: jax.eval_shape(fns.init, jax.random.PRNGKey(0), x), "batch_stats"
    )


def test_error_dropout_without_flag_in_evaluation():
    class DropNoFlag(nn.Module):
        kernel_init: object
        bias_init: object

        @nn.compact
        def __call__(self, x):
            return nn.Dropout(0.5, deterministic=False)(nn.Dense(3)(x))

    x, _ = _data()
    fns = adapters.model_fns(DropNoFlag, KI, BI, x=x)
    _one_line_error(
        ValueError,
        lambda: adapters.check_outputs(fns, x, (3,)),
        "nn.Dropout(deterministic=not train)",
    )


def test_error_wrong_output_width():
    x, _ = _data()
    fns = adapters.model_fns(lambda k, b: LinenNet(k, b, width=5), KI, BI, x=x)
    _one_line_error(
        ValueError,
        lambda: adapters.check_outputs(fns, x, (10,)),
        "outputs 5 values per example but the data has 10 classes",
    )
    nfns = adapters.model_fns(lambda k, b, rngs: NnxNet(k, b, rngs, width=5), KI, BI)
    _one_line_error(
        ValueError,
        lambda: adapters.check_outputs(nfns, x, (10,)),
        "NnxNet outputs 5 values per example but the data has 10 classes",
    )
    assert adapters.check_outputs(fns, x, (5,)) == (x.shape[0], 5)


def test_error_factory_raises():
    def bad(kernel_init, bias_init):
        raise RuntimeError("no GPU\nsecond line")

    def bad_nnx(kernel_init, bias_init, rngs):
        raise KeyError("width")

    _one_line_error(
        ValueError,
        lambda: adapters.model_fns(bad, KI, BI),
        "factory",
        "bad",
        "RuntimeError: no GPU",
    )
    _one_line_error(
        ValueError,
        lambda: adapters.model_fns(bad_nnx, KI, BI),
        "bad_nnx",
        "KeyError",
        "(kernel_init, bias_init, rngs)",
    )


def test_error_factory_wrong_arity_or_kind():
    _one_line_error(
        TypeError, lambda: adapters.model_fns(lambda a, b, c, d: None, KI, BI), "takes neither"
    )
    _one_line_error(
        TypeError,
        lambda: adapters.model_fns(lambda k, b: NnxNet(k, b, nnx.Rngs(0)), KI, BI),
        "not a flax.linen Module",
        "(kernel_init, bias_init, rngs)",
    )
    _one_line_error(TypeError, lambda: adapters.model_fns(42, KI, BI), "expected a factory")


# -------------------------------------------------------------------------------------------------- info


def test_model_info():
    x, _ = _data()
    fns = adapters.model_fns(LinenNet, KI, BI, x=x)
    params, _ = fns.init(jax.random.PRNGKey(0), x)
    n = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    assert n == 6 * 16 + 16 + 2 * 16 + 16 * 3 + 3
    assert fns.info == adapters.ModelInfo("linen", "LinenNet", n, fns.info.description)
    assert fns.info.description.startswith("LinenNet(") and len(fns.info.description) <= 200
    assert (
        adapters.model_fns(LinenNet, KI, BI).info is None
    )  # a linen model's size needs an example input

    nfns = adapters.model_fns(NnxNet, KI, BI, label="my NNX net")
    nparams, _ = nfns.init(jax.random.PRNGKey(0), x)
    nn_count = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(nparams))
    assert nn_count == 6 * 16 + 16 + 2 * 16 + 16 * 16 + 16 + 16 * 3 + 3
    assert nfns.info == adapters.ModelInfo("nnx", "NnxNet", nn_count, "my NNX net")

    long = adapters.model_fns(LinenNet, KI, BI, x=x, label="x" * 500).info.description
    assert len(long) == 200


# ------------------------------------------------------------------------------------- other call styles


def test_jinit_models_unchanged():
    """jinit's own MLP / CNN through the adapter: init is module.init(key, x) and training apply is the sweep's
    module.apply(variables, x, rngs={"dropout": r}), bitwise."""
    from jinit import models

    x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 1))
    for make in (
        models.factory("mlp", hidden=(8,), num_classes=3),
        models.factory("cnn", num_classes=3),
    ):
        fns = adapters.model_fns(make, KI, BI, x=x)
        module = make(KI, BI)
        key, r = jax.random.PRNGKey(5), jax.random.PRNGKey(6)
        params, state = fns.init(key, x)
        assert state == {}
        _tree_equal(params, module.init(key, x))
        out, _ = fns.apply(params, state, x, True, r)
        np.testing.assert_array_equal(
            np.asarray(out), np.asarray(module.apply(params, x, rngs={"dropout": r}))
        )
        assert fns.info.param_count == sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))


def test_nnx_rngs_call_argument():
    class CallRngs(nnx.Module):
        def __init__(self, kernel_init, bias_init, rngs):
            self.l = nnx.Linear(6, 8, kernel_init=kernel_init, rngs=rngs)
            self.drop = nnx.Dropout(0.5)  # no stream of its own: the key comes with the call

        def __call__(self, x, *, rngs=None):
            return self.drop(self.l(x), rngs=rngs)

    x, _ = _data()
    fns = adapters.model_fns(CallRngs, KI, BI)
    params, state = fns.init(jax.random.PRNGKey(0), x)
    tr, _ = fns.apply(params, state, x, True, jax.random.PRNGKey(1))
    ev, _ = fns.apply(params, state, x, False, None)
    model = CallRngs(KI, BI, _nnx_rngs(jax.random.PRNGKey(0)))
    ref = model(x, rngs=nnx.Rngs(dropout=jax.random.PRNGKey(1)))
    np.testing.assert_array_equal(np.asarray(tr), np.asarray(ref))
    model.eval()
    np.testing.assert_array_equal(np.asarray(ev), np.asarray(model(x)))
    assert np.mean(np.asarray(tr) == 0) > 0.2


def test_nnx_description_and_state_written_in_evaluation():
    assert adapters.model_fns(NnxNet, KI, BI).info.description == (
        "NnxNet(bn=BatchNorm(16), drop1=Dropout(0.3), drop2=Dropout(0.3), l1=Linear(6, 16), l2=Linear(16, 16), "
        "out=Linear(16, 3))"
    )

    class AlwaysBatch(nnx.Module):
        def __init__(self, kernel_init, bias_init, rngs):
            self.bn = nnx.BatchNorm(6, rngs=rngs)
            self.l = nnx.Linear(6, 3, rngs=rngs)

        def __call__(self, x):
            return self.l(self.bn(x, use_running_average=False))

    x, _ = _data()
    fns = adapters.model_fns(AlwaysBatch, KI, BI)
    _one_line_error(
        ValueError, lambda: adapters.check_outputs(fns, x, (3,)), "batch_stats in evaluation"
    )


def test_error_nnx_dropout_without_stream():
    class NoStream(nnx.Module):
        def __init__(self, kernel_init, bias_init, rngs):
            self.l = nnx.Linear(6, 8, rngs=rngs)
            self.drop = nnx.Dropout(0.5)

        def __call__(self, x):
            return self.drop(self.l(x))

    x, _ = _data()
    fns = adapters.model_fns(NoStream, KI, BI)
    _one_line_error(
        ValueError, lambda: adapters.check_outputs(fns, x, (8,)), "nnx.Dropout(rate, rngs=rngs)"
    )


def test_nnx_class_with_other_positional_arguments_is_not_given_the_initializers():
    class Sized(nnx.Module):
        def __init__(self, din, dout, *, rngs):
            self.l = nnx.Linear(din, dout, rngs=rngs)

        def __call__(self, x):
            return self.l(x)

    _one_line_error(
        TypeError,
        lambda: adapters.model_fns(Sized, KI, BI),
        "cannot be built as Sized(rngs=rngs)",
        "lambda kernel_init, bias_init, rngs: Sized(..., rngs=rngs)",
    )
    fns = adapters.model_fns(lambda k, b, rngs: Sized(6, 3, rngs=rngs), KI, BI)
    assert fns.info.param_count == 6 * 3 + 3 and "takes no" not in fns.info.description
