import sys
from pathlib import Path

import torch

# the independent references of the main test suite (tests/reference.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
torch.set_num_threads(2)
