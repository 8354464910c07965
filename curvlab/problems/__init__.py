"""The models and data of the five studies curvlab reproduces, as plain torch objects.

Data: :func:`digits` (scikit-learn's digits, embedded: no download), :func:`vision`
(MNIST / Fashion-MNIST / CIFAR-10 from local files through torchvision, never downloaded).
Problems (a :class:`Problem`: model, loss, train and test DataLoaders, unpackable):
:func:`rahimi_recht`, :func:`matrix_factorization`, :func:`attention_regression`,
:func:`sinusoids`, :func:`image_classification`. Models: :class:`LeNet5`, :class:`MLP`,
:class:`DeepLinear`, :class:`ResNet`, :class:`Transformer` (math attention),
:class:`SelfAttention`, :class:`MatrixFactorization`.

Every random draw comes from the ``seed`` argument (an int or a ``torch.Generator``); the
global RNG is left untouched (torch's default initializers run under a saved and restored,
seeded global state).
"""

from .._public import public_dir
from .attention import SelfAttention, attention_regression
from .classification import CLASSIFIERS, image_classification
from .digits import digits
from .lenet import LENET_VARIANTS, LeNet5
from .matrix_factorization import MatrixFactorization, matrix_factorization
from .mlp import MLP, DeepLinear
from .problem import ObjectiveLoss, Problem, RMSELoss, loaders
from .rahimi_recht import PUBLISHED_CONDITION_NUMBERS, rahimi_recht, rahimi_recht_matrix
from .resnet import BasicBlock, ResNet
from .sinusoids import SINUSOID_PRESETS, sinusoids
from .transformer import EncoderBlock, MathMultiheadAttention, Transformer
from .vision import DATA_ENV, VISION_DATASETS, vision

__all__ = [
    # bundle and helpers
    "Problem",
    "loaders",
    "RMSELoss",
    "ObjectiveLoss",
    # data
    "digits",
    "vision",
    "VISION_DATASETS",
    "DATA_ENV",
    # problems
    "rahimi_recht",
    "rahimi_recht_matrix",
    "PUBLISHED_CONDITION_NUMBERS",
    "matrix_factorization",
    "attention_regression",
    "sinusoids",
    "SINUSOID_PRESETS",
    "image_classification",
    "CLASSIFIERS",
    # models
    "LeNet5",
    "LENET_VARIANTS",
    "MLP",
    "DeepLinear",
    "ResNet",
    "BasicBlock",
    "Transformer",
    "EncoderBlock",
    "MathMultiheadAttention",
    "SelfAttention",
    "MatrixFactorization",
]

__dir__ = public_dir(globals())
