# Sourced by the scripts: one cache directory outside the clone holds the cargo target
# directory, so that RocksDB (about 18 minutes to compile on 2 cores) is built once per machine.
KVTABLET_CACHE_DIR="${KVTABLET_CACHE_DIR:-$HOME/.cache/kvtablet}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KVTABLET_CACHE_DIR/target}"
mkdir -p "$CARGO_TARGET_DIR"
