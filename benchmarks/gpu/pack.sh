# Here, before a lease: pack what the device needs into parts that each fit one device call.
#   bash benchmarks/gpu/pack.sh [DATA_ROOT]        (default ../shared/data)
# A call carries the working tree and at most 64 MiB in all, and CIFAKE alone is 115 MB: the data (CIFAKE, the zoo,
# ddpm-cifar10) travels as a tar split into parts of 56 MiB, one per call, which benchmarks/gpu/receive.sh keeps on
# the warm machine; the last call runs benchmarks/gpu/lease.sh. The published results (over 150 MB, tracked) must
# not travel: move results/ out of the checkout for the calls (benchmarks/gpu/README.md gives the sequence).
set -eu
root=${1:-../shared/data}
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")" .gpu .whl
for path in /.gpu/ /.whl/; do grep -qxF "$path" "$exclude" 2>/dev/null || echo "$path" >> "$exclude"; done
rm -f .gpu/data.tar.part-* .gpu/commit .whl/*.whl
if [ -n "$(git status --porcelain --untracked-files=no -- bench detectors generators suites)" ]; then
  echo "pack.sh: commit the code first: the device's records name the commit the code is at"; exit 1
fi
git rev-parse HEAD > .gpu/commit  # the device's copy has another git state: records name this commit instead
tar cf - -C "$root" cifake.zip cifar10-zoo ddpm-cifar10 | split -b 56m - .gpu/data.tar.part-
# the packages the device image lacks (KINDS.md lists what it has), at the versions installed here
pins=$(python3 - <<'EOF'
import importlib.metadata as metadata
names = ["torchattacks", "captum", "diffusers", "pydantic", "pydantic-core", "annotated-types", "typing-inspection"]
print(" ".join(f"{name}=={metadata.version(name)}" for name in names))
EOF
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $pins
ls -l .gpu .whl | awk 'NF > 5 {printf "%8.1f MiB  %s\n", $5 / 1048576, $NF}'
echo "calls: one per part, .gpu/commit and .whl with the last: benchmarks/gpu/README.md"
