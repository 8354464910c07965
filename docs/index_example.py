import torch
from torch import nn

import curvlab as cl

torch.manual_seed(0)
X, y = cl.problems.digits(dtype=torch.float64).tensors  # 1,437 8x8 digits, shipped
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).double()
H = cl.HessianOperator(model, nn.CrossEntropyLoss(), [(X, y)])  # never formed: products only
top = cl.eigsh(H, k=3, seed=0)  # restarted Lanczos: top eigenvalues with residuals
density = cl.spectral_density(H, seed=0)  # stochastic Lanczos quadrature
print(H, top, cl.trace(H, seed=0), density, sep="\n")  # trace: Hutch++ with its error
