"""``python -m senet_zoo.validation ARGS`` = ``senet-zoo validate ARGS``; made for
``torchrun --nproc_per_node=N -m senet_zoo.validation ARGS``."""
import sys

from . import main

sys.exit(main())
