"""Lightweight backbone blocks (MobileNet, ShuffleNet, GhostNet); each registers itself with the model registry."""

from models.backbones.ghost import C3Ghost, GhostBottleneck, GhostConv
from models.backbones.layers import ConvBNAct, SqueezeExcite, channel_shuffle, make_activation
from models.backbones.mobilenet import InvertedResidual, MobileNetV3Block
from models.backbones.shufflenet import ShuffleV2Block

__all__ = ["C3Ghost", "ConvBNAct", "GhostBottleneck", "GhostConv", "InvertedResidual", "MobileNetV3Block",
           "ShuffleV2Block", "SqueezeExcite", "channel_shuffle", "make_activation"]
