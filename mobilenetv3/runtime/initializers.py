"""Keras' initializers computed on the host, bit for bit, on the JAX backend.

On JAX, Keras draws every initial weight with `jax.random.uniform` run
eagerly, and XLA compiles one program per distinct weight shape: building
a MobileNetV3-Small compiled 57 programs and took 14 s on 2 CPU cores, 80%
of it in XLA's compiler. `host_initializer` computes the same values in NumPy instead:
JAX's default generator (Threefry-2x32, keyed `[seed, 0]` as Keras keys an
integer seed) and `jax.random.uniform`'s bits-to-float mapping, so the
weights are identical to Keras' own, including under
`keras.utils.set_random_seed`. JAX's configuration is read, never changed;
anything this module does not reproduce exactly (another generator, a
`SeedGenerator` seed, a normal distribution, a distribution's layout,
another dtype) runs Keras' own initializer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from mobilenetv3.core import keras_internals as internals

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KEY_PARITY = 0x1BD11BDA


def threefry_2x32(key: tuple[int, int], x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Threefry-2x32 hash (20 rounds) of counter pairs `(x0, x1)`, as JAX computes it.

    Example:

    ```python
    counts = np.arange(4, dtype="uint32")
    threefry_2x32((42, 0), np.zeros(4, "uint32"), counts)  # two uint32 arrays
    ```
    """
    keys = (key[0], key[1], key[0] ^ key[1] ^ _KEY_PARITY)
    x0, x1 = x0 + np.uint32(keys[0]), x1 + np.uint32(keys[1])
    for step in range(5):
        for rotation in _ROTATIONS[step % 2]:
            x0 += x1
            x1 = (x1 << np.uint32(rotation)) | (x1 >> np.uint32(32 - rotation))
            x1 ^= x0
        x0 += np.uint32(keys[(step + 1) % 3])
        x1 += np.uint32((keys[(step + 2) % 3] + step + 1) & 0xFFFFFFFF)
    return x0, x1


def random_bits(key: tuple[int, int], size: int, partitionable: bool) -> np.ndarray:
    """`size` uint32 words of `jax.random.bits(key, (size,))` for a Threefry key.

    `partitionable` is JAX's `jax_threefry_partitionable` setting, which
    changes how counters are laid out.

    Example:

    ```python
    random_bits((42, 0), 5, partitionable=True)  # uint32, (5,)
    ```
    """
    if partitionable:  # counter i is the 64-bit pair (i >> 32, i & 0xffffffff)
        counts = np.arange(size, dtype=np.uint64)
        high, low = (counts >> np.uint64(32)).astype(np.uint32), counts.astype(np.uint32)
        bits0, bits1 = threefry_2x32(key, high, low)
        return bits0 ^ bits1
    counts = np.arange(size + size % 2, dtype=np.uint32)
    counts[size:] = 0
    half = len(counts) // 2
    bits0, bits1 = threefry_2x32(key, counts[:half], counts[half:])
    return np.concatenate([bits0, bits1])[:size]


def uniform(key: tuple[int, int], shape: tuple[int, ...], minval: float, maxval: float,
            partitionable: bool) -> np.ndarray:
    """float32 `jax.random.uniform(key, shape, minval=minval, maxval=maxval)`,
    bit for bit for symmetric bounds (`minval == -maxval`).

    Example:

    ```python
    uniform((42, 0), (3, 3, 8, 1), -0.5, 0.5, partitionable=True)  # float32, (3, 3, 8, 1)
    ```
    """
    bits = random_bits(key, math.prod(shape), partitionable)
    floats = ((bits >> np.uint32(9)) | np.uint32(0x3F800000)).view(np.float32) - np.float32(1)
    low, high = np.float32(minval), np.float32(maxval)
    # XLA on CPU computes `floats * (high - low) + low` as one fused multiply-add (one
    # rounding). In float64 both the product (24 x 24 bits) and, for symmetric bounds
    # (ulp(low) >= ulp(high - low) / 2), the sum are exact, so the cast is the one rounding.
    fused = (floats.astype(np.float64) * np.float64(high - low) + np.float64(low)).astype(np.float32)
    return np.maximum(low, fused).reshape(shape)


def _variance_scaling_limit(initializer: Any, shape: tuple[int, ...]) -> float | None:
    """The bound of a Keras uniform variance-scaling initializer (Glorot, He,
    LeCun uniform, ...), or None for any other initializer."""
    variance_scaling = keras.initializers.VarianceScaling
    if type(initializer).__call__ is not variance_scaling.__call__ or initializer.distribution != "uniform":
        return None
    axes = {name: getattr(initializer, name) for name in ("input_axes", "output_axes") if hasattr(initializer, name)}
    fan_in, fan_out = internals.compute_fans(shape, **axes)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[initializer.mode]
    return math.sqrt(3.0 * initializer.scale / max(1.0, fan))


def _jax_threefry() -> bool | None:
    """JAX's `jax_threefry_partitionable` when its default generator is Threefry-2x32, else None."""
    import jax

    if jax.config.jax_default_prng_impl != "threefry2x32":
        return None
    return bool(jax.config.jax_threefry_partitionable)


def host_value(initializer: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray | None:
    """What Keras' `initializer(shape, dtype)` returns on JAX, computed in NumPy, or
    None where this module does not reproduce it exactly (then call Keras').

    Example:

    ```python
    host_value(keras.initializers.GlorotUniform(seed=1), (3, 3, 8, 16), "float32")  # on JAX: float32 array
    host_value(keras.initializers.GlorotNormal(seed=1), (3, 3, 8, 16), "float32")  # None: not reproduced
    ```
    """
    if keras.backend.backend() != "jax" or keras.backend.standardize_dtype(dtype) != "float32":
        return None
    if keras.distribution.distribution() is not None:  # Keras shards the initializer's output
        return None
    shape = tuple(int(d) for d in shape)
    if math.prod(shape) >= 2**31:  # JAX splits such draws into blocks; not reproduced here
        return None
    init = keras.initializers
    for kind, value in ((init.Zeros, 0.0), (init.Ones, 1.0)):
        if type(initializer).__call__ is kind.__call__:
            return np.full(shape, value, np.float32)
    limit = _variance_scaling_limit(initializer, shape)
    seed = getattr(initializer, "seed", None)
    if limit is None or isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        return None
    partitionable = _jax_threefry()
    if partitionable is None:
        return None
    return uniform((seed, 0), shape, -limit, limit, partitionable=partitionable)


def host_initializer(initializer: Any) -> Callable[..., Any]:
    """A callable `(shape, dtype)` giving `initializer`'s values, computed on the
    host where `host_value` can (see the module's docstring), else by Keras.

    Example:

    ```python
    init = host_initializer(keras.initializers.GlorotUniform(seed=1))
    init((3, 3, 8, 16), "float32")  # the values GlorotUniform(seed=1) gives
    ```
    """
    initializer = keras.initializers.get(initializer)

    def initialize(shape: tuple[int, ...], dtype: Any = None) -> Any:
        value = host_value(initializer, shape, dtype or keras.config.floatx())
        if value is None:
            return initializer(shape, dtype=dtype)
        import jax  # `jax.device_put`, unlike `jnp.asarray`, compiles nothing per shape

        return jax.device_put(value)

    return initialize


class HostInitializedWeights:
    """Layer mixin: `add_weight` initializes through `host_initializer`, so that a
    layer's weights cost no XLA compilation on JAX. Configs and values are unchanged.

    Example:

    ```python
    class Dense(HostInitializedWeights, keras.layers.Dense):
        pass

    Dense(4).build((None, 8))  # on JAX: kernel drawn in NumPy, as Keras would draw it
    ```
    """

    def add_weight(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("initializer") is not None:
            kwargs["initializer"] = host_initializer(kwargs["initializer"])
        return super().add_weight(*args, **kwargs)  # type: ignore[misc]
