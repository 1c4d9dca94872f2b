# Shared by scripts/test and scripts/bench (sourced): finding PostgreSQL's server binaries,
# and installing Debian packages when we may (as root, with apt).

find_pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
  command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)"
}

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then apt-get update -qq && apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ensure_postgres WHO: installs Debian's PostgreSQL when no server binaries are found.
ensure_postgres() {
  if [ -n "${MINITWIT_PG_BIN:-}" ] || [ -n "$(find_pg_bin)" ]; then return 0; fi
  if can_apt; then
    echo "$1: installing PostgreSQL (no server binaries found)"
    apt_install postgresql
  else
    echo "$1: no PostgreSQL server binaries; install the 'postgresql' package or set MINITWIT_PG_BIN" >&2
    exit 1
  fi
}

# stop_cluster DATA_DIR: stops a cluster a suite or the benchmark left running (after a crash;
# normally they stop their own).
stop_cluster() {
  local cluster=$1
  [ -f "$cluster/postmaster.pid" ] || return 0
  local bin="${MINITWIT_PG_BIN:-$(find_pg_bin)}"
  if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root; it ran as the cluster's owner.
    runuser -u "$(stat -c %U "$cluster")" -- "$bin/pg_ctl" -D "$cluster" stop -m fast >/dev/null
  else
    "$bin/pg_ctl" -D "$cluster" stop -m fast >/dev/null
  fi
}

# ensure_schemathesis WHO VERSION VENV: installs schemathesis VERSION from PyPI into the
# virtualenv VENV, unless that already holds it. Its own venv, so neither the machine's Python
# nor another project's packages are touched, and a fresh CI machine gets the same version.
ensure_schemathesis() {
  local who=$1 version=$2 venv=$3
  if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" = "schemathesis, version $version" ]; then
    return 0
  fi
  echo "$who: installing schemathesis $version into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian ships venv separately from python3.
    rm -rf "$venv"
    if can_apt; then apt_install python3-venv; fi
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
}

# Installs cargo-tarpaulin VERSION from crates.io into ROOT (ROOT/bin/cargo-tarpaulin) unless
# that version is there already. Built from source: rustup components (llvm-tools) cannot be
# downloaded here, and tarpaulin's LLVM engine reads the coverage profiles itself.
ensure_tarpaulin() { # ensure_tarpaulin WHO VERSION ROOT
  local who=$1 version=$2 root=$3
  if "$root/bin/cargo-tarpaulin" tarpaulin --version 2>/dev/null | grep -q " $version\$"; then
    return 0
  fi
  echo "$who: installing cargo-tarpaulin $version into $root (a few minutes, once)"
  cargo install --quiet --locked --version "$version" --root "$root" cargo-tarpaulin
}

# ensure_axe_core WHO VERSION PREFIX: installs the npm package axe-core VERSION (the
# accessibility rules the browser suite runs in Chromium) under PREFIX/node_modules, unless
# that version is there already. A prefix of its own, so no global npm state is touched, and
# an exact version, so every machine audits with the same rules.
ensure_axe_core() {
  local who=$1 version=$2 prefix=$3
  if grep -q "\"version\": \"$version\"" "$prefix/node_modules/axe-core/package.json" 2>/dev/null; then
    return 0
  fi
  if ! command -v npm >/dev/null; then
    if can_apt; then
      echo "$who: installing npm (for axe-core)"
      apt_install npm
    else
      echo "$who: install npm (Debian: npm), which installs axe-core for the browser suite" >&2
      return 1
    fi
  fi
  echo "$who: installing axe-core $version into $prefix"
  npm install --prefix "$prefix" --save-exact --no-audit --no-fund --silent "axe-core@$version"
}
