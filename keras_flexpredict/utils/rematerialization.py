"""How the library's layers take part in a `keras.RematScope`.

Under a scope, Keras wraps a layer's whole call in `keras.remat`, which differentiates
through every argument. For this library's layers that fails or wastes work:
TensorFlow's `recompute_grad` refuses keyword arguments in a graph, JAX's `checkpoint`
traces Python arguments such as `zero_padding`, a model's whole call would be computed
twice, and a layer that draws noise would draw other noise in the backward pass. So:

- the transformer blocks rematerialise over their tokens only
  (`TransformerBlock.rematerialized_call`), on every backend and in each of their fast
  paths (on TensorFlow in float32 they do so outside any scope too, and keep their
  activations under `keras.RematScope(mode=None)`: `TransformerBlock.rematerializes`);
- models, the patch embedding and the layers that draw noise or masks are never
  rematerialised as a whole (`RematerializedBySublayers`); the layers inside them
  follow the scope.
"""


class RematerializedBySublayers:
    """Mixin: under a `keras.RematScope` the layer itself is never rematerialised; the
    layers it calls are, as the scope says.

    For models and other composites (the whole forward pass would run twice around
    sublayers that rematerialise themselves) and for layers that draw noise or masks (a recomputation would draw others than the forward pass used).

    >>> import keras
    >>> class Outer(RematerializedBySublayers, keras.layers.Layer):
    ...     def call(self, x, flag=True):
    ...         return x
    >>> with keras.RematScope(mode="full"):
    ...     layer = Outer()
    >>> layer.rematerialized_call(layer.call, 1.0) == layer.call
    True
    """

    def rematerialized_call(self, layer_call, *args, **kwargs):
        return layer_call
