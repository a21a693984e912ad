"""The `get_config` of the library's subclassed models, in one place.

Example:

>>> import keras
>>> class Head(keras.Model):
...     def __init__(self, units, **kwargs):
...         super().__init__(**kwargs)
...         self.units = units
...     def get_config(self):
...         return model_config(self, "units")
>>> model_config(Head(3, name="head"), "units")["units"]
3
"""

import keras


def model_config(model, *argument_names):
    """`name`, `trainable` and `dtype` of `model`, then each of `argument_names` read
    from the attribute of the same name (the house rule: every constructor argument is
    stored under its name); a Keras layer or model is serialised."""
    config = {
        "name": model.name,
        "trainable": model.trainable,
        "dtype": keras.dtype_policies.serialize(model.dtype_policy),
    }
    for name in argument_names:
        value = getattr(model, name)
        if isinstance(value, keras.layers.Layer):
            value = keras.saving.serialize_keras_object(value)
        config[name] = value
    return config
