"""``python -m gamma_ray_dist`` = the ``gamma-ray-dist`` command."""
import sys

from .cli import main

sys.exit(main())
