#!/usr/bin/env bash
# The project's benchmark: publishes the launcher, the bench and the supervisor service (all NativeAOT), runs every scenario for every
# variant in interleaved rounds and writes docs/benchmarks.md. Usage: bash bench/run.sh [--quick] [--rounds N] [--only metrics,restart]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${UNSOCK_BENCH_BUILD:-/tmp/unsock-bench-build}"

echo "unsock-bench: publishing unsock-launch, unsock-supervisor, unsock-bench and unsock-empty to $out" >&2
dotnet publish "$root/src/Unsock.Launcher" -c Release -o "$out/launcher" --nologo -v quiet >&2
dotnet publish "$root/src/Unsock.Supervisor" -c Release -o "$out/supervisor" --nologo -v quiet >&2
dotnet publish "$root/bench/Unsock.Bench" -c Release -o "$out/bench" --nologo -v quiet >&2
# Scenario 4's floor: a NativeAOT program that does nothing.
dotnet publish "$root/bench/Unsock.Bench.Empty" -c Release -o "$out/empty" --nologo -v quiet >&2

# Scenario 1's floor, a minimal C seccomp supervisor; left out (and said so in the report) without a C compiler.
reference=()
if command -v cc >/dev/null; then
  cc -O2 -Wall -o "$out/minisup" "$root/bench/reference/minisup.c" >&2
  reference=(--reference-supervisor "$out/minisup")
else
  echo "unsock-bench: no C compiler (cc): scenario 1 runs without its floor" >&2
fi

commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
exec "$out/bench/unsock-bench" drive --launcher "$out/launcher/unsock-launch" --supervisor-bin "$out/supervisor/unsock-supervisor" --empty-bin "$out/empty/unsock-empty" \
  --fakesystemd "$root/tests/Unsock.Tests/Programs/fakesystemd.py" --out "$root/docs/benchmarks.md" --commit "$commit" "${reference[@]}" "$@"
