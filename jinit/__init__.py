"""jinit: weight initializers as pure JAX functions, and a vmapped seed-sweep engine.

The public namespace is flat, in the style of optax: every initializer factory, the registry
(`get`, `names`, `register`), the per-layer `rules`, the labelled `scheme` and the helpers are
re-exported here; the larger pieces live in submodules
(`jinit.adapters`, `jinit.equinox`, `jinit.data`, `jinit.models`, `jinit.sweep`, `jinit.metrics`, `jinit.propagation`, ...).
"""

__version__ = "0.1.0"

from jinit import adapters as adapters
from jinit.equinox import apply_scheme as apply_scheme
from jinit.initializers import Initializer as Initializer
from jinit.initializers import compute_fans as compute_fans
from jinit.initializers import constant as constant
from jinit.initializers import delta_orthogonal as delta_orthogonal
from jinit.initializers import dirac as dirac
from jinit.initializers import eye as eye
from jinit.initializers import flax_default as flax_default
from jinit.initializers import gain as gain
from jinit.initializers import glorot_normal as glorot_normal
from jinit.initializers import glorot_uniform as glorot_uniform
from jinit.initializers import he_normal as he_normal
from jinit.initializers import he_uniform as he_uniform
from jinit.initializers import identity as identity
from jinit.initializers import kaiming_normal as kaiming_normal
from jinit.initializers import kaiming_uniform as kaiming_uniform
from jinit.initializers import keras_default as keras_default
from jinit.initializers import keras_key as keras_key
from jinit.initializers import lecun_normal as lecun_normal
from jinit.initializers import lecun_uniform as lecun_uniform
from jinit.initializers import normal as normal
from jinit.initializers import ones as ones
from jinit.initializers import orthogonal as orthogonal
from jinit.initializers import random_normal as random_normal
from jinit.initializers import random_uniform as random_uniform
from jinit.initializers import sparse as sparse
from jinit.initializers import torch_default as torch_default
from jinit.initializers import torch_default_bias as torch_default_bias
from jinit.initializers import truncated_normal as truncated_normal
from jinit.initializers import uniform as uniform
from jinit.initializers import variance_scaling as variance_scaling
from jinit.initializers import xavier_normal as xavier_normal
from jinit.initializers import xavier_uniform as xavier_uniform
from jinit.initializers import zeros as zeros
from jinit.labelled import Scheme as Scheme
from jinit.modern import deepnet as deepnet
from jinit.modern import deepnet_constants as deepnet_constants
from jinit.modern import fixup as fixup
from jinit.modern import gpt2 as gpt2
from jinit.modern import mup as mup
from jinit.modern import mup_multipliers as mup_multipliers
from jinit.modern import mup_optimizer as mup_optimizer
from jinit.modern import rezero as rezero
from jinit.modern import skipinit as skipinit
from jinit.modern import zero_gamma as zero_gamma
from jinit.propagation import coordinate_check as coordinate_check
from jinit.propagation import lsuv as lsuv
from jinit.registry import catalog as catalog
from jinit.registry import get as get
from jinit.registry import names as names
from jinit.registry import register as register
from jinit.rules import Rules as Rules
from jinit.rules import rules as rules
from jinit.rules import scheme as scheme
