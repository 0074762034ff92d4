"""The TFLite conversion of the driver keeps the task logs readable."""

import pytest

import backbone

pytestmark = pytest.mark.unit


def test_converting_a_model_prints_no_tensorspec_lines(capsys):
    # Keras' SavedModel export, inside TFLiteConverter.from_keras_model, prints one `TensorSpec`
    # line per variable on stdout (keras/src/export/saved_model.py, write_out(verbose=True)).
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2)(keras.layers.Dense(3)(inputs))
    flatbuffer = backbone.serialise_model(keras.Model(inputs, outputs), "tflite")
    assert flatbuffer[4:8] == b"TFL3"  # a TFLite flatbuffer's file identifier
    assert "TensorSpec" not in capsys.readouterr().out
