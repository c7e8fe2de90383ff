"""CalcificationClassifier: a small CNN for 64 x 64 patches with two heads.

    input  float32 [B, P, P, 1] in [0, 1]
    output {"calc": float32 [B] probability of calcification (vs normal tissue),
            "malignant": float32 [B] probability of malignant given calcification (exploratory)}

A fixed stem (per-patch standardised grey level and a high-pass channel, as in the synthesis
discriminator) feeds three conv stages and global pooling. The wrapper overrides train_step: the
calcification loss on every patch, the malignancy loss only on calcification patches (BENIGN vs
MALIGNANT), both per-example and averaged over the global batch. Classic augmentation runs in
every arm: random flips and rot90 come from the tf.data pipeline, small brightness/contrast changes here.
Under a tf.distribute strategy the jitter and the dropout masks are the global batch's (models/replicas.py).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from mammo_tf.data.schema import MALIGNANT, NORMAL
from mammo_tf.models.replicas import global_batch, own_rows, replicas

CLASSIFIER_NAME = "mammo_calc_classifier"


@keras.saving.register_keras_serializable(package="mammo_tf")
class PatchStem(layers.Layer):
    """[B, P, P, 1] -> [B, P, P, 2]: (x - mean) / std per patch, and x minus its 5x5 box blur (x 20)."""

    def call(self, x):
        x = tf.cast(x, tf.float32)
        mean, var = tf.nn.moments(x, axes=[1, 2, 3], keepdims=True)
        grey = (x - mean) / tf.sqrt(var + 1e-6)
        blur = tf.nn.avg_pool2d(tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="SYMMETRIC"), 5, 1, "VALID")
        return tf.concat([grey, 20.0 * (x - blur)], axis=-1)

    def compute_output_shape(self, shape):
        return (*shape[:-1], 2)


@keras.saving.register_keras_serializable(package="mammo_tf")
class ReplicaDropout(layers.Dropout):
    """``keras.layers.Dropout`` whose mask, under a tf.distribute strategy, is this replica's rows of the mask
    of the global batch: a batch split over replicas is dropped out as on one device (a Dropout layer's one
    SeedGenerator would give every replica the same mask). With one replica it is ``Dropout`` itself.

    inputs: [B, ...] (B rows of this replica); same arguments as Dropout.
    """

    def call(self, inputs, training=False):
        if not training or self.rate == 0 or replicas() == 1:
            return super().call(inputs, training=training)
        batch = tf.shape(inputs)[0]
        ones = tf.ones(tf.concat([[global_batch(batch)], tf.shape(inputs)[1:]], axis=0), inputs.dtype)
        keep = super().call(ones, training=True)  # 1 / (1 - rate) where kept, else 0: the global batch's mask
        return inputs * own_rows(keep, batch)


def build_classifier_network(patch_size: int = 64, width: int = 16, dropout: float = 0.3) -> keras.Model:
    """The functional network (see the module docstring); logits out, float32."""
    inputs = keras.Input((patch_size, patch_size, 1), name="patch")
    x = PatchStem(name="stem")(inputs)
    for i, f in enumerate((width, 2 * width, 4 * width)):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i}a")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i}b")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    features = ReplicaDropout(dropout, name="dropout")(x)
    calc = layers.Dense(1, dtype="float32", name="calc_logit")(features)
    malignant = layers.Dense(1, dtype="float32", name="malignant_logit")(features)
    return keras.Model(inputs, {"calc": calc, "malignant": malignant}, name=f"{CLASSIFIER_NAME}_net")


@keras.saving.register_keras_serializable(package="mammo_tf")
class CalcificationClassifier(keras.Model):
    """Network + train_step with the masked exploratory head; ``call`` returns probabilities."""

    def __init__(self, network: keras.Model, malignant_weight: float = 0.5, jitter: float = 0.05, **kwargs):
        kwargs.setdefault("name", CLASSIFIER_NAME)
        super().__init__(**kwargs)
        self.network, self.malignant_weight, self.jitter = network, float(malignant_weight), float(jitter)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.calc_tracker = keras.metrics.Mean(name="calc_loss")
        self.malignant_tracker = keras.metrics.Mean(name="malignant_loss")
        self.seed = keras.random.SeedGenerator(0)

    @property
    def metrics(self):
        return [self.loss_tracker, self.calc_tracker, self.malignant_tracker]

    def call(self, patches, training: bool = False):
        logits = self.network(patches, training=training)
        return {k: tf.sigmoid(tf.reshape(v, [-1])) for k, v in logits.items()}

    def _intensity_jitter(self, x):
        """Small brightness (+-jitter) and contrast (x 1 +- 2*jitter) changes, per patch, clipped to [0, 1].

        Under a strategy each replica draws the global batch's changes and keeps its own rows (as on one device).
        """
        b = tf.shape(x)[0]
        rows = global_batch(b)
        shift = own_rows(keras.random.uniform([rows, 1, 1, 1], -self.jitter, self.jitter, seed=self.seed), b)
        gain = own_rows(
            keras.random.uniform([rows, 1, 1, 1], 1 - 2 * self.jitter, 1 + 2 * self.jitter, seed=self.seed), b
        )
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        return tf.clip_by_value((x - mean) * gain + mean + shift, 0.0, 1.0)

    def train_step(self, data):
        patches, labels = data
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        is_calc = tf.cast(labels != NORMAL, tf.float32)
        is_malignant = tf.cast(labels == MALIGNANT, tf.float32)
        with tf.GradientTape() as tape:
            logits = self.network(self._intensity_jitter(tf.cast(patches, tf.float32)), training=True)
            calc = tf.nn.sigmoid_cross_entropy_with_logits(is_calc, tf.reshape(logits["calc"], [-1]))
            malignant = is_calc * tf.nn.sigmoid_cross_entropy_with_logits(
                is_malignant, tf.reshape(logits["malignant"], [-1])
            )
            per_example = calc + self.malignant_weight * malignant
            loss = tf.nn.compute_average_loss(per_example)
        grads = tape.gradient(loss, self.network.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.network.trainable_variables, strict=True))
        self.loss_tracker.update_state(tf.reduce_mean(per_example))
        self.calc_tracker.update_state(tf.reduce_mean(calc))
        n_calc = tf.reduce_sum(is_calc)
        self.malignant_tracker.update_state(tf.math.divide_no_nan(tf.reduce_sum(malignant), n_calc))
        return {m.name: m.result() for m in self.metrics}

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "network": keras.saving.serialize_keras_object(self.network),
            "malignant_weight": self.malignant_weight,
            "jitter": self.jitter,
        }

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


def compiled_classifier(patch_size: int = 64, width: int = 16, learning_rate: float = 1e-3) -> CalcificationClassifier:
    """A new classifier with AdamW, built (call inside the strategy scope)."""
    model = CalcificationClassifier(build_classifier_network(patch_size, width))
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=1e-4))
    model.optimizer.build(model.network.trainable_variables)
    model(tf.zeros([1, patch_size, patch_size, 1]))
    return model
