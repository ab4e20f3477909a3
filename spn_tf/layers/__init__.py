"""Keras layers of spn_tf: one public layer per module, named after it."""

from spn_tf.layers.causal_self_attention import CausalSelfAttention
from spn_tf.layers.condition_embedding import ConditionEmbedding
from spn_tf.layers.frame_encoder import FrameEncoder
from spn_tf.layers.gated_residual_block import GatedResidualBlock
from spn_tf.layers.group_predictor import GroupPredictor
from spn_tf.layers.masked_conv2d import MaskedConv2D
from spn_tf.layers.masked_decoder import MaskedDecoder
from spn_tf.layers.slice_embedder import SliceEmbedder
from spn_tf.layers.text_encoder import TextEncoder

__all__ = ["CausalSelfAttention", "ConditionEmbedding", "FrameEncoder", "GatedResidualBlock",
           "GroupPredictor", "MaskedConv2D", "MaskedDecoder", "SliceEmbedder", "TextEncoder"]
