"""recsys-smelu: reproducible CTR / recommendation models with Smooth ReLU.

``import recsys_smelu`` imports nothing heavy: no TensorFlow, no Keras, and it
leaves ``TF_USE_LEGACY_KERAS`` alone. What each part does to ``tf.keras``:

* ``recsys_smelu.activations``, ``.models``, ``.train``, ``.export`` (and
  ``.twin``, which uses the activation registry) need Keras 2 behind
  ``tf.keras``, because TensorFlow Recommenders does. On import they set
  ``TF_USE_LEGACY_KERAS=1`` (unless already set) before ``tf.keras`` is first
  resolved, so ``tf.keras`` is tf-keras for the whole process; if ``tf.keras``
  was already resolved to Keras 3 they raise ImportError saying so
  (``recsys_smelu.tf_keras2``).
* ``recsys_smelu.data`` imports TensorFlow (tf.data) but not ``tf.keras``.
* ``recsys_smelu.config``, ``.metrics``, ``.report`` and ``.activation_specs``
  import neither TensorFlow nor Keras.
* ``recsys_smelu.keras3`` is for Keras 3 processes: it imports ``keras`` on
  its configured backend and never sets the flag.
"""

__version__ = "0.1.0"
