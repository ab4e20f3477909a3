"""Serving: a gRPC client of TF Serving's API and a local/dev stand-in server for it.

`spn_tf.serving.client` talks to `tensorflow_model_server` or to `spn_tf.serving.server` (the
stand-in, not TF Serving). Neither imports spn_tf's model code: they speak SavedModel signatures
and TF Serving's protos only.
"""
