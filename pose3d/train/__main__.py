"""`python -m pose3d.train` (the torchrun entry point): see pose3d.train.cli."""

import argparse
import sys

from pose3d.train.cli import __doc__ as _doc
from pose3d.train.cli import add_arguments, main

parser = argparse.ArgumentParser(prog="python -m pose3d.train", description=_doc.splitlines()[0])
add_arguments(parser)
sys.exit(main(parser.parse_args()))
