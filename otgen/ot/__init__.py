"""Semi-discrete optimal transport: measures, tiled scoring kernels, solver, Brenier map.

    from otgen.ot import SemiDiscreteOT, UniformBox, Gaussian, BrenierMap
    bmap = SemiDiscreteOT(source=UniformBox(dim=d), targets=Y).fit(key, tol=0.01)
"""

from otgen.ot.brenier import BrenierMap
from otgen.ot.measures import Gaussian, Sampler, UniformBox
from otgen.ot.optim_aeot import aeot_recipe
from otgen.ot.optim_newton import damped_newton
from otgen.ot.optim_sgd import averaged_sgd
from otgen.ot.output import Diagnostics, NotConvergedError, NotConvergedWarning
from otgen.ot.scores import assign_cells, cell_counts, cell_masses, top_k_cells
from otgen.ot.sharding import make_mesh
from otgen.ot.solver import SemiDiscreteOT

__all__ = [
    "SemiDiscreteOT", "NotConvergedWarning", "NotConvergedError", "BrenierMap", "Diagnostics", "UniformBox", "Gaussian", "Sampler",
    "damped_newton", "averaged_sgd", "aeot_recipe", "assign_cells", "cell_counts", "cell_masses", "top_k_cells", "make_mesh",
]
