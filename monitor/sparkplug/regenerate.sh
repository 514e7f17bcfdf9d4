#!/usr/bin/env bash
# Regenerates monitor/sparkplug/sparkplug_b_pb2.py(i) from sparkplug_b.proto with protoc from grpcio-tools,
# in a throw-away virtual environment (the generator is never a dependency of plantwatch).
# The pinned grpcio-tools bundles the protoc that matches the protobuf runtime pinned in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")"
venv="$(mktemp -d)/protoc"
python3 -m venv "$venv"
"$venv/bin/pip" install -q grpcio-tools==1.85.1
"$venv/bin/python" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. sparkplug_b.proto
rm -rf "$(dirname "$venv")"
echo "regenerated $(pwd)/sparkplug_b_pb2.py and sparkplug_b_pb2.pyi"
