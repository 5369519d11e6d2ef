"""`torchrun ... tests/train_toy.py --config ... key=value`: the trainer's CLI with the toy
stage in place of the registered ones (used by tests/test_train_loop.py)."""

import argparse
import sys

from toy_stage import ToyStage

from pose3d.train.cli import add_arguments, main

parser = argparse.ArgumentParser()
add_arguments(parser)
sys.exit(main(parser.parse_args(), stage=ToyStage()))
