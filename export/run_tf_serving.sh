#!/usr/bin/env bash
# Runs the real TF Serving (the official tensorflow/serving container) on ./exports.
#   bash export/run_tf_serving.sh            # from the repository root
# gRPC on localhost:8500, REST on localhost:8501 (model status: /v1/models/quickstart,
# Prometheus metrics: /monitoring/prometheus/metrics). ./exports is mounted read-only at
# /models (models.config's base_path), this folder read-only at /config.
# Environment: EXPORTS (default ./exports), TF_SERVING_IMAGE (default tensorflow/serving:2.21.0:
# the server's TF must be at least the exporting TF for the stateless random ops of `sample`).
set -euo pipefail

config_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exports="$(cd "${EXPORTS:-exports}" && pwd)"
image="${TF_SERVING_IMAGE:-tensorflow/serving:2.21.0}"

args=(
  --model_config_file=/config/models.config
  --file_system_poll_wait_seconds=30
  --enable_batching=true
  --batching_parameters_file=/config/batching_parameters.txt
  --monitoring_config_file=/config/monitoring.config
)
# Only for SavedModels exported with `python -m spn_tf.export --xla` (XLA-compiled loops):
# args+=(--xla_cpu_compilation_enabled=true)

# The image's entrypoint adds --port=8500 --rest_api_port=8501.
exec docker run --rm -p 8500:8500 -p 8501:8501 \
  --mount "type=bind,source=${exports},target=/models,readonly" \
  --mount "type=bind,source=${config_dir},target=/config,readonly" \
  "${image}" "${args[@]}"
