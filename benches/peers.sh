#!/usr/bin/env bash
# The same corpus through ASL and its peers, in one run, as ratios against ASL:
#   ASL:    aslctl ingest (zstd 3, framed or whole packed blocks, the defaults)
#   restic: restic backup into a fresh repository (format v2, compression auto)
#   borg:   borg create into a fresh repository (its defaults: lz4)
#   git:    git init + git add -A + git commit (zlib loose objects)
#   tar:    tar -c | zstd -3 into one file
# For each: ingest wall time (ending with the data durable: ASL and restic
# fsync, borg, git and tar are followed by `sync` inside the timing), stored
# size, the time to restore one randomly chosen file, and the time of the same
# ingest run again over the unchanged tree (ASL's files cache, restic's parent
# snapshot, borg's files cache, git's index; tar has no cache).
# Usage: benches/peers.sh CORPUS_DIR [WORK_DIR]     (default WORK_DIR: ./bench-out/peers)
# Not part of CI. Installs restic and zstd with apt-get when run as root;
# skips a peer it cannot run, saying so.
set -euo pipefail
corpus=$(realpath "${1:?usage: benches/peers.sh CORPUS_DIR [WORK_DIR]}")
work=$(realpath -m "${2:-bench-out/peers}")
source "$(dirname "$0")/lib.sh"
asl_setup
install_peers restic:restic borg:borgbackup zstd:zstd git:git

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }
size_of() { du -sb "$1" | cut -f1; }

files=$(cd "$corpus" && find . -type f | sort)
count=$(echo "$files" | wc -l)
logical=$(cd "$corpus" && find . -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
pick=$(echo "$files" | awk -v seed="${PEERS_SEED:-7}" 'BEGIN {srand(seed)} {a[NR]=$0} END {print a[int(rand()*NR)+1]}')
pick=${pick#./}
echo "corpus: $corpus, $count files, $logical bytes; restore target: $pick" >&2
cat "$corpus" > /dev/null 2>&1 || true
find "$corpus" -type f -exec cat {} + > /dev/null # warm the page cache for every peer alike

results=()
record() { results+=("$1 $2 $3 $4 $5"); } # name seconds bytes restore_seconds rerun_seconds

# ASL
t=$(now)
"$asl" --store "$work/asl" ingest "$corpus" > "$work/asl.ids" 2> /dev/null
t_asl=$(elapsed "$t")
id=$(awk -v p="$corpus/$pick" '$2 == p {print $1}' "$work/asl.ids")
t=$(now)
"$asl" --store "$work/asl" get "$id" -o "$work/asl.out"
r_asl=$(elapsed "$t")
cmp -s "$work/asl.out" "$corpus/$pick" || { echo "ASL restored the wrong bytes" >&2; exit 1; }
t=$(now)
"$asl" --store "$work/asl" ingest "$corpus" > /dev/null 2>&1
u_asl=$(elapsed "$t")
record asl "$t_asl" "$(size_of "$work/asl")" "$r_asl" "$u_asl"

# restic
if have restic; then
    export RESTIC_REPOSITORY="$work/restic" RESTIC_PASSWORD=asl-bench
    restic init -q --repository-version 2 > /dev/null 2>&1 || restic init -q > /dev/null
    t=$(now)
    restic backup -q "$corpus" > /dev/null
    t_r=$(elapsed "$t")
    t=$(now)
    restic restore -q latest --target "$work/restic.out" --include "$corpus/$pick" > /dev/null
    r_r=$(elapsed "$t")
    cmp -s "$work/restic.out/$corpus/$pick" "$corpus/$pick" || echo "restic restore differs" >&2
    size=$(size_of "$RESTIC_REPOSITORY")
    t=$(now)
    restic backup -q "$corpus" > /dev/null
    u_r=$(elapsed "$t")
    record restic "$t_r" "$size" "$r_r" "$u_r"
else
    echo "skipping restic: not installed (Debian package restic)" >&2
fi

# borg
if have borg; then
    export BORG_REPO="$work/borg" BORG_PASSPHRASE= BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
    borg init --encryption=none > /dev/null 2>&1
    t=$(now)
    (cd "$corpus" && borg create ::first . > /dev/null 2>&1 && sync)
    t_b=$(elapsed "$t")
    t=$(now)
    (mkdir -p "$work/borg.out" && cd "$work/borg.out" && borg extract ::first "./$pick" > /dev/null 2>&1 ||
        borg extract ::first "$pick" > /dev/null 2>&1)
    r_b=$(elapsed "$t")
    cmp -s "$work/borg.out/$pick" "$corpus/$pick" || echo "borg restore differs" >&2
    size=$(size_of "$BORG_REPO")
    t=$(now)
    (cd "$corpus" && borg create ::second . > /dev/null 2>&1 && sync)
    u_b=$(elapsed "$t")
    record borg "$t_b" "$size" "$r_b" "$u_b"
else
    echo "skipping borg: not installed (Debian package borgbackup)" >&2
fi

# git
if have git; then
    mkdir -p "$work/git"
    t=$(now)
    (cd "$work/git" && git init -q . && git --work-tree="$corpus" add -A . \
        && git -c user.name=b -c user.email=b@b --work-tree="$corpus" commit -q -m corpus && sync)
    t_g=$(elapsed "$t")
    t=$(now)
    (cd "$work/git" && git show "HEAD:$pick" > "$work/git.out")
    r_g=$(elapsed "$t")
    cmp -s "$work/git.out" "$corpus/$pick" || echo "git restore differs" >&2
    t=$(now)
    (cd "$work/git" && git --work-tree="$corpus" add -A . && sync)
    u_g=$(elapsed "$t")
    record git "$t_g" "$(size_of "$work/git/.git")" "$r_g" "$u_g"
else
    echo "skipping git: not installed" >&2
fi

# tar | zstd
if have zstd; then
    t=$(now)
    tar -C "$corpus" -cf - . | zstd -q -3 -T1 -o "$work/corpus.tar.zst" && sync
    t_t=$(elapsed "$t")
    t=$(now)
    zstd -q -dc "$work/corpus.tar.zst" | tar -xOf - "./$pick" > "$work/tar.out"
    r_t=$(elapsed "$t")
    cmp -s "$work/tar.out" "$corpus/$pick" || echo "tar restore differs" >&2
    record "tar+zstd" "$t_t" "$(size_of "$work/corpus.tar.zst")" "$r_t" "$t_t"
else
    echo "skipping tar | zstd: zstd not installed" >&2
fi

printf '%-10s %10s %10s %12s %10s %12s %10s %10s %10s\n' peer ingest_s "vs ASL" stored_MiB "vs ASL" restore_ms \
    "vs ASL" rerun_s "vs ASL"
read -r _ a_t a_s a_r a_u <<< "${results[0]}"
for row in "${results[@]}"; do
    read -r name t s r u <<< "$row"
    printf '%-10s %10.2f %9.2fx %12.1f %9.3fx %12.1f %9.2fx %10.3f %9.1fx\n' "$name" "$t" "$(echo "$t / $a_t" | bc -l)" \
        "$(echo "$s / 1048576" | bc -l)" "$(echo "$s / $a_s" | bc -l)" "$(echo "$r * 1000" | bc -l)" \
        "$(echo "$r / $a_r" | bc -l)" "$u" "$(echo "$u / $a_u" | bc -l)"
done
echo "(times: peer / ASL, above 1 = ASL faster; stored: peer size / ASL size; rerun: the same ingest again, unchanged tree)"
