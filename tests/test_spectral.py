"""Reparametrised spectral norm (models/spectral.py): divides by the top singular value, keeps the raw kernel."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from mammo_tf.models.spectral import SNConv2D, SNDense  # noqa: E402


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_the_layer_computes_with_w_over_its_top_singular_value_and_leaves_the_kernel_raw(kind):
    keras.utils.set_random_seed(0)
    if kind == "conv":
        layer = SNConv2D(8, 3, padding="same", bias_initializer="ones")
        x = tf.random.normal([2, 6, 6, 4])
        plain = lambda w: tf.nn.conv2d(x, w, 1, "SAME") + layer.bias  # noqa: E731
    else:
        layer = SNDense(5, bias_initializer="ones")
        x = tf.random.normal([3, 7])
        plain = lambda w: tf.matmul(x, w) + layer.bias  # noqa: E731
    layer(x)
    layer.kernel.assign(layer.kernel * 3.0)  # a raw kernel far from norm 1
    layer.power_iterate(100)
    raw = layer.kernel.numpy().copy()
    top = np.linalg.svd(raw.reshape(-1, raw.shape[-1]), compute_uv=False)[0]
    assert layer.sigma() == pytest.approx(top, rel=1e-5)

    out = layer(x, training=True)
    np.testing.assert_allclose(out, plain(raw / top), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(layer.kernel.numpy(), raw)  # keras.layers.SpectralNormalization overwrites it

    # The gradient flows through sigma: the output does not change with the kernel's scale, so the gradient
    # is orthogonal to the kernel (through the kernel path; the bias is a separate variable).
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.sin(layer(x, training=False)))
    grad = tape.gradient(loss, layer.kernel).numpy()
    assert abs(float(np.sum(grad * raw))) < 1e-4 * float(np.linalg.norm(grad) * np.linalg.norm(raw))


def test_a_training_call_moves_the_stored_vector_by_one_power_iteration():
    keras.utils.set_random_seed(1)
    layer = SNDense(6)
    x = tf.random.normal([2, 9])
    layer(x)
    before = layer.sigma()
    for _ in range(60):
        layer(x, training=True)
    top = np.linalg.svd(layer.kernel.numpy(), compute_uv=False)[0]
    assert before < top
    assert layer.sigma() == pytest.approx(top, rel=1e-4)
    frozen = layer.sn_u.numpy().copy()
    layer(x, training=False)
    np.testing.assert_array_equal(layer.sn_u.numpy(), frozen)
