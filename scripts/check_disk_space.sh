#!/usr/bin/env bash
# Fails early, with the numbers, when a folder's file system has less free space than
# the environment needs: otherwise pip stops half-way with "[Errno 28] No space left on
# device" after minutes of downloads, leaving a broken .venv.
#
#   bash scripts/check_disk_space.sh DIR MIN_FREE_GIB [VARIABLE]
#
# VARIABLE: the make variable that sets MIN_FREE_GIB, named in the error (default
# VENV_MIN_FREE_GIB).
set -euo pipefail
dir=${1:?usage: check_disk_space.sh DIR MIN_FREE_GIB}
need_gib=${2:?usage: check_disk_space.sh DIR MIN_FREE_GIB}
variable=${3:-VENV_MIN_FREE_GIB}
if ! [[ $need_gib =~ ^[0-9]+$ ]]; then
  echo "check_disk_space.sh: MIN_FREE_GIB must be a whole number of GiB, got '$need_gib'" >&2
  exit 2
fi
free_kib=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
need_kib=$((need_gib * 1024 * 1024))
if ((free_kib < need_kib)); then
  free_gib=$(awk -v k="$free_kib" 'BEGIN {printf "%.1f", k / 1048576}')
  echo "Not enough disk space to create the environment: $free_gib GiB free on the file" \
    "system of '$(cd "$dir" && pwd)', $need_gib GiB needed." \
    "Free some space, or set $variable=N if you know N GiB is enough." >&2
  exit 1
fi
