#!/usr/bin/env bash
# Train one stage on several machines: run this same command on every node. The nodes meet
# at MASTER_ADDR:MASTER_PORT (torchrun's c10d rendezvous, hosted by the first node to
# arrive), so no node needs to know its rank.
#
#   MASTER_ADDR=10.0.0.1 NNODES=2 launch/multi_node.sh launch/configs/h36m.yaml stage=finetune
#
# Environment:
#   MASTER_ADDR          (required) address of one node that all nodes can reach
#   MASTER_PORT          rendezvous port (default 29500), open between the nodes
#   NNODES               (required) number of nodes, or MIN:MAX for an elastic range
#   NPROC_PER_NODE       worker processes per node (default: the node's GPUs, 1 without)
#   RDZV_ID              a job id shared by the nodes (default pose3d); SLURM: the job id
#   MAX_RESTARTS         worker-group restarts after a failure (default 3); every restart
#                        resumes from the newest checkpoint (run.resume=auto)
#   NCCL_SOCKET_IFNAME   network interface for NCCL (e.g. ib0, eth0) when the default is wrong
#   GLOO_SOCKET_IFNAME   the same for gloo (CPU runs, and the object collectives)
#   NCCL_DEBUG=INFO      NCCL's connection log, for a run that does not start
#   WANDB_MODE, WANDB_API_KEY, OMP_NUM_THREADS, PYTHON: as in launch/single_node.sh
# run.out_dir must be on storage every node sees: rank 0 writes the checkpoints and every
# rank reads them on a restart.
set -euo pipefail
config=${1:?usage: launch/multi_node.sh CONFIG [--resume latest] [key=value ...]}
shift
: "${MASTER_ADDR:?set MASTER_ADDR to the address of one node (e.g. the first)}"
: "${NNODES:?set NNODES to the number of nodes}"
python=${PYTHON:-python}
nproc=${NPROC_PER_NODE:-$("$python" -c 'import torch; print(max(1, torch.cuda.device_count()))')}
exec "$python" -m torch.distributed.run --nnodes="$NNODES" --nproc_per_node="$nproc" \
  --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:${MASTER_PORT:-29500}" \
  --rdzv_id="${RDZV_ID:-pose3d}" --max-restarts="${MAX_RESTARTS:-3}" \
  -m pose3d.train --config "$config" "$@"
