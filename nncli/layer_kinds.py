"""Layer kinds by class name: which layers carry weights, normalise, saturate, ...

One table for the tools that reason about architecture (``check``'s lints, ``probe``'s hints), so
they agree on what, say, a normalisation layer is. Pure Python: names, not classes.
"""

# Layers with a weight matrix/kernel: an affine map of their input.
WEIGHT_LAYERS = frozenset(
    {"Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"}
)
BATCH_NORMS = frozenset({"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"})
NORMS = BATCH_NORMS | {"LayerNorm", "GroupNorm", "RMSNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"}
DROPOUTS = frozenset({"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout"})
# Affine in their input (BatchNorm with its running statistics, i.e. at inference): between two
# weight layers they leave the composition affine.
AFFINE_PASS = (
    (BATCH_NORMS - {"SyncBatchNorm"})
    | (DROPOUTS - {"AlphaDropout"})
    | {
        "AvgPool1d",
        "AvgPool2d",
        "AvgPool3d",
        "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d",
        "AdaptiveAvgPool3d",
        "Flatten",
        "Unflatten",
        "Identity",
        "ZeroPad1d",
        "ZeroPad2d",
        "ZeroPad3d",
        "ConstantPad1d",
        "ConstantPad2d",
        "ConstantPad3d",
    }
)
# Bounded activations whose derivative goes to zero away from the origin.
SATURATING = frozenset({"Sigmoid", "Tanh", "Hardtanh", "Softsign", "Hardsigmoid"})
# Linear on their positive part: a unit is dead when its input is <= 0 for the whole batch.
RELU_FAMILY = frozenset({"ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "CELU", "SELU"})
