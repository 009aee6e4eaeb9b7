#!/usr/bin/env bash
# The Slurm array recipe of docs/evaluation.md, run for real: a one-node cluster from Debian's
# packages (slurm-wlm, munge; proctrack/linuxproc, no cgroups), 4 array tasks sweeping the shipped
# model over a synthetic benchmark into one shared run directory, one task scancel'ed mid-way and
# submitted again, then `tokenscale merge` -- compared byte for byte with a one-machine run.
#   tools/slurm/run.sh [TOKENSCALE_BINARY]     (root; installs slurm-wlm and munge when absent)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$(realpath "${1:-$repo/target/release/tokenscale}")"
[ -x "$bin" ] || { echo "error: $bin: no tokenscale binary (cargo build --release -p tokenscale-cli)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "error: needs root (starts munged, slurmctld and slurmd)" >&2; exit 1; }
command -v slurmctld >/dev/null && command -v munged >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge
}

work="$(mktemp -d /tmp/tokenscale-slurm.XXXXXX)"
chmod 755 "$work"
mkdir -p "$work/state" "$work/spool" "$work/log"
stop() {
    for pid in "$work"/slurmd.pid "$work"/slurmctld.pid; do
        [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
    done
    [ -f /run/munge/tokenscale-munged.pid ] && kill "$(cat /run/munge/tokenscale-munged.pid)" 2>/dev/null || true
}
trap stop EXIT

# munge: a fresh key, the daemon as the munge user.
install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 755 /run/munge
[ -f /etc/munge/munge.key ] || { mungekey -c -f -k /etc/munge/munge.key 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
runuser -u munge -- munged --pid-file=/run/munge/tokenscale-munged.pid --force

host="$(hostname -s)"
mkdir -p /etc/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=tokenscale
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
slurmctld -c
slurmd
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed)' && break; sleep 1; done
sinfo

# The benchmark and the reference: one machine, no shards.
"$bin" synth --out "$work/data" --items 60 --mix yorn=0 >/dev/null
data=(--data "$work/data/SYNTH_MCQ_TEST.tsv" --data "$work/data/SYNTH_VQA_TEST.tsv")
ns=1,4,16,64
"$bin" eval --model "$repo/models/tiny-imgque" "${data[@]}" --vision-tokens $ns --out "$work/one" >/dev/null 2>&1

# The recipe: one array task per shard, all writing the same shared run directory.
cat > "$work/job.sh" <<JOB
#!/bin/bash
#SBATCH --array=0-3
#SBATCH --cpus-per-task=1
#SBATCH --output=$work/log/task-%a.out
exec "$bin" eval --model "$repo/models/tiny-imgque" ${data[*]} --vision-tokens $ns --shard \${SLURM_ARRAY_TASK_ID}/4 --out "$work/runs"
JOB
job=$(sbatch --parsable "$work/job.sh")
echo "submitted array job $job"
shard2="$work/runs/store/shard-0002-of-0004.jsonl"
for _ in $(seq 600); do [ -f "$shard2" ] && [ "$(wc -l < "$shard2")" -ge 5 ] && break; sleep 0.1; done
before=$(wc -l < "$shard2" 2>/dev/null || echo 0)
scancel "${job}_2"
echo "scancel ${job}_2 after $before records of its shard"
for _ in $(seq 600); do squeue -h -j "$job" | grep -q . || break; sleep 0.5; done
again=$(sbatch --parsable --array=2 "$work/job.sh")
echo "task 2 submitted again as $again"
for _ in $(seq 1200); do squeue -h -j "$again" | grep -q . || break; sleep 0.5; done
"$bin" merge "$work/runs" --out "$work/runs" >/dev/null 2>&1

same=0
for f in scores.json scores.csv scores.md $(cd "$work/one" && ls predictions/*); do
    if cmp -s "$work/one/$f" "$work/runs/$f"; then same=$((same + 1)); else echo "DIFFERS: $f"; exit 1; fi
done
echo "ok: $same files of the merged 4-shard Slurm run (task 2 cancelled after $before records, then resubmitted) are byte-identical to the one-machine run ($work)"
