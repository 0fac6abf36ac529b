import torch

# On 2-core machines, two intra-op threads make these small convolutions several times slower
# than one (contention with the process pools and with each other).
torch.set_num_threads(1)
