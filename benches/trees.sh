#!/usr/bin/env bash
# Trees of files in and out, in one run, ASL against git and restic:
#   ingest:   aslctl ingest --tree DIR      | git add -A + git commit | restic backup
#   restore:  aslctl checkout TREE OUT      | git checkout (into a fresh
#             work tree from the repository) | restic restore latest
#   status:   aslctl worktree status (nothing changed) | git status
# Every ingest ends with its data durable (ASL and restic fsync; git is
# followed by `sync` inside the timing); every restore is followed by
# `sync` and checked outside the timing: the BLAKE3 of every regular file
# (by path) must equal the corpus's. (ASL's trees hold regular files only,
# as git's hold no empty directories; symlinks are left out of the check.)
# Usage: benches/trees.sh CORPUS_DIR [WORK_DIR]   (default ./bench-out/trees)
# Not part of CI. Installs restic and git with apt-get when run as root.
set -euo pipefail
corpus=$(realpath "${1:?usage: benches/trees.sh CORPUS_DIR [WORK_DIR]}")
work=$(realpath -m "${2:-bench-out/trees}")
source "$(dirname "$0")/lib.sh"
asl_setup
install_peers restic:restic git:git b3sum:b3sum

now() { date +%s.%N; }
elapsed() { printf '%.3f' "$(echo "$(now) - $1" | bc -l)"; }

# The regular files of a directory with their hashes, by path.
files_of() { (cd "$1" && find . -path ./.git -prune -o -type f -print0 | sort -z | xargs -0 b3sum); }
check() { files_of "$2" | cmp -s - "$work/corpus.sums" || { echo "$1 restored something else" >&2; exit 1; }; }

count=$(find "$corpus" -type f | wc -l)
bytes=$(find "$corpus" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
echo "corpus: $corpus, $count files, $bytes bytes" >&2
files_of "$corpus" > "$work/corpus.sums" # also warms the page cache for everyone alike

# ASL
t=$(now)
tree=$("$asl" --store "$work/asl" ingest --tree "$corpus" 2> /dev/null | tail -1 | cut -c1-64)
a_in=$(elapsed "$t")
t=$(now)
"$asl" --store "$work/asl" checkout "$tree" "$work/asl-out" 2> /dev/null
sync
a_out=$(elapsed "$t")
check ASL "$work/asl-out"
"$asl" --store "$work/asl" worktree add "$work/asl-wt" "$tree" > /dev/null 2>&1
sleep 1.1 # past the one-second window in which a fresh stamp is not trusted
t=$(now)
"$asl" --store "$work/asl" worktree status "$work/asl-wt" > "$work/asl-status"
a_st=$(elapsed "$t")
[ ! -s "$work/asl-status" ] || { echo "ASL sees changes in a fresh working copy" >&2; exit 1; }

# git
g_in=- g_out=- g_st=-
if have git; then
    git init -q "$work/git"
    cp -a "$corpus/." "$work/git/"
    t=$(now)
    (cd "$work/git" && git add -A && git -c user.name=b -c user.email=b@b commit -q -m bench && sync)
    g_in=$(elapsed "$t")
    t=$(now)
    git clone -q --no-checkout "$work/git" "$work/git-out"
    (cd "$work/git-out" && git checkout -q HEAD -- . && sync)
    g_out=$(elapsed "$t")
    check git "$work/git-out"
    sleep 1.1
    t=$(now)
    (cd "$work/git-out" && git status --porcelain > "$work/git-status")
    g_st=$(elapsed "$t")
fi

# restic
r_in=- r_out=-
if have restic; then
    export RESTIC_REPOSITORY="$work/restic" RESTIC_PASSWORD=asl-bench
    restic init -q --repository-version 2 > /dev/null 2>&1 || restic init -q > /dev/null
    t=$(now)
    restic backup -q "$corpus" > /dev/null
    r_in=$(elapsed "$t")
    t=$(now)
    restic restore -q latest --target "$work/restic-out" > /dev/null
    sync
    r_out=$(elapsed "$t")
    check restic "$work/restic-out$corpus"
fi

printf '%-8s %10s %10s %10s\n' tool ingest_s restore_s status_s
printf '%-8s %10s %10s %10s\n' asl "$a_in" "$a_out" "$a_st"
printf '%-8s %10s %10s %10s\n' git "$g_in" "$g_out" "$g_st"
printf '%-8s %10s %10s %10s\n' restic "$r_in" "$r_out" -
