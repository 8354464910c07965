"""Parameter selection and conversions between parameter lists, dicts and flat vectors.

Every flat vector in curvlab (an operator's columns, an eigenvector, a landscape direction) is
in the order of ``model.named_parameters()`` restricted to the selected parameters. These are
the functions that produce and read that layout:

- :func:`select_params`: ``None`` (all trainable), a submodule, a list of tensors, or names /
  glob patterns, to ``(names, tensors)``;
- :func:`flatten` / :func:`unflatten`: a list (or dict) of tensors to one flat vector and back
  (an ``(n, k)`` matrix unflattens to ``(k, *shape)`` tensors);
- :func:`unflatten_dict`, :func:`num_params`.

Examples
--------
>>> import torch
>>> from torch import nn
>>> import curvlab as cl
>>> model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
>>> names, tensors = cl.params.select_params(model, "1.*")
>>> names
['1.weight', '1.bias']
>>> v = cl.params.flatten(tensors)
>>> [t.shape for t in cl.params.unflatten(v, tensors)]
[torch.Size([2, 4]), torch.Size([2])]
"""

from ._params import flatten, num_params, select_params, unflatten, unflatten_dict

__all__ = ["select_params", "flatten", "unflatten", "unflatten_dict", "num_params"]
