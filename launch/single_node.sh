#!/usr/bin/env bash
# Train one stage on one machine: one worker process per GPU (or NPROC CPU processes, gloo).
#
#   launch/single_node.sh CONFIG [--resume latest] [key=value ...]
#   launch/single_node.sh launch/configs/synthetic.yaml stage=mv_pretrain
#   NPROC=2 launch/single_node.sh launch/configs/tiny.yaml run.device=cpu
#
# Environment:
#   NPROC                 worker processes (default: visible GPUs, 1 without a GPU)
#   MAX_RESTARTS          worker-group restarts after a failure (default 3); a restarted group
#                         resumes from the newest checkpoint in run.out_dir (run.resume=auto)
#   CUDA_VISIBLE_DEVICES  the GPUs to use
#   OMP_NUM_THREADS       CPU threads per worker (torchrun's default is 1)
#   WANDB_MODE            online | offline | disabled (overrides run.wandb); online needs
#                         WANDB_API_KEY or a prior `wandb login`
#   PYTHON                the interpreter that has pose3d installed (default: python)
set -euo pipefail
config=${1:?usage: launch/single_node.sh CONFIG [--resume latest] [key=value ...]}
shift
python=${PYTHON:-python}
nproc=${NPROC:-$("$python" -c 'import torch; print(max(1, torch.cuda.device_count()))')}
exec "$python" -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node="$nproc" \
  --max-restarts="${MAX_RESTARTS:-3}" -m pose3d.train --config "$config" "$@"
