#!/usr/bin/env bash
# Stop the daemons tests/slurm/start.sh started (jobs first).
scancel --user=root >/dev/null 2>&1 || true
for d in slurmd slurmctld munged; do pkill -x "$d" >/dev/null 2>&1 || true; done
for _ in $(seq 20); do pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || pgrep -x munged >/dev/null || exit 0; sleep 0.5; done
for d in slurmd slurmctld munged; do pkill -9 -x "$d" >/dev/null 2>&1 || true; done
