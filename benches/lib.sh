# Shared by the peer benchmark scripts (sourced, not run).

have() { command -v "$1" > /dev/null; }

# Builds aslctl (sets $asl; $ASLCTL names another build to measure instead)
# and empties $work; runs from the repository root.
asl_setup() {
    cd "$(dirname "$0")/.."
    if [ -n "${ASLCTL:-}" ]; then
        asl=$(realpath "$ASLCTL")
    else
        cargo build --release --bin aslctl -q
        asl=$PWD/target/release/aslctl
    fi
    rm -rf "$work"
    mkdir -p "$work"
}

# Installs each missing peer, given as command:debian-package, with apt-get
# when run as root; a peer that cannot be installed is skipped by the caller.
install_peers() {
    local spec cmd pkg
    for spec in "$@"; do
        cmd=${spec%%:*}
        pkg=${spec#*:}
        if ! have "$cmd" && [ "$(id -u)" = 0 ] && have apt-get; then
            apt-get install -y -q "$pkg" > /dev/null 2>&1 || true
        fi
    done
}
