# A local PostgreSQL for the tests, on Debian: installs the `postgresql` package when it is
# missing, creates and starts a cluster, and creates the role `withings` (password `withings`)
# and its database `withings_test`. Exports WITHINGS_TEST_DATABASE_URL.
#
# Source it, from the repository or anywhere else:
#   source .ci/postgres.sh
# Safe to run again: what exists is kept, a stopped cluster is started. Runs as root, or as a
# user with sudo. If WITHINGS_TEST_DATABASE_URL is already set, that database is used as is
# and nothing is installed or started.
#
# It leaves the shell's options alone (it may be sourced into an interactive shell), so every
# step checks its own failure and `return`s non-zero.

withings_postgres_setup() {
  local role=withings password=withings database=withings_test
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo

  if ! command -v pg_lsclusters >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "installing PostgreSQL"
    $sudo apt-get update -qq || return 1
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      postgresql >/dev/null || return 1
  fi

  # The first cluster pg_lsclusters lists: "version name port status owner datadir log".
  local cluster
  cluster=$(pg_lsclusters --no-header 2>/dev/null | head -n 1)
  if [ -z "$cluster" ]; then
    local version
    version=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ]; then
      echo "postgres.sh: no PostgreSQL server found under /usr/lib/postgresql" >&2
      return 1
    fi
    echo "creating PostgreSQL $version cluster main"
    $sudo pg_createcluster "$version" main >/dev/null || return 1
    cluster=$(pg_lsclusters --no-header | head -n 1)
  fi
  local version name port status
  read -r version name port status _ <<<"$cluster"

  if [ "$status" != online ]; then
    echo "starting PostgreSQL $version/$name on port $port"
    # Containers often lack the socket directory that the init system would create.
    $sudo install -d -o postgres -g postgres -m 2775 /var/run/postgresql || return 1
    $sudo pg_ctlcluster "$version" "$name" start || return 1
  fi

  local tries=0
  until pg_isready -q -h 127.0.0.1 -p "$port"; do
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
      echo "postgres.sh: PostgreSQL $version/$name does not accept connections on port $port" >&2
      return 1
    fi
    sleep 1
  done

  # As the postgres superuser over the local socket; `cd /` because psql complains when it
  # cannot read the current directory.
  local as_postgres
  if [ -z "$sudo" ]; then as_postgres="runuser -u postgres --"; else as_postgres="sudo -u postgres"; fi
  (
    cd / &&
      $as_postgres psql -X -q -p "$port" -d postgres -v ON_ERROR_STOP=1 <<SQL
DO \$\$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
    ALTER ROLE $role LOGIN CREATEDB PASSWORD '$password';
  ELSE
    CREATE ROLE $role LOGIN CREATEDB PASSWORD '$password';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE $database OWNER $role'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$database')
\gexec
SQL
  ) || return 1

  # The TLS tests need the cluster to serve TLS: Debian's clusters do, with the ssl-cert
  # package's self-signed certificate; a cluster made without it gets one now.
  local ssl
  ssl=$(cd / && $as_postgres psql -X -A -t -q -p "$port" -d postgres -c "SHOW ssl") || return 1
  if [ "$ssl" != on ]; then
    echo "turning on TLS in PostgreSQL $version/$name"
    if [ ! -e /etc/ssl/private/ssl-cert-snakeoil.key ]; then
      command -v make-ssl-cert >/dev/null 2>&1 || {
        $sudo apt-get update -qq &&
          DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ssl-cert >/dev/null
      } || return 1
      $sudo make-ssl-cert generate-default-snakeoil || return 1
      $sudo usermod -a -G ssl-cert postgres || return 1
    fi
    (
      cd / &&
        $as_postgres psql -X -q -p "$port" -d postgres -v ON_ERROR_STOP=1 \
          -c "ALTER SYSTEM SET ssl_cert_file = '/etc/ssl/certs/ssl-cert-snakeoil.pem'" \
          -c "ALTER SYSTEM SET ssl_key_file = '/etc/ssl/private/ssl-cert-snakeoil.key'" \
          -c "ALTER SYSTEM SET ssl = on"
    ) || return 1
    $sudo pg_ctlcluster "$version" "$name" restart || return 1
    until pg_isready -q -h 127.0.0.1 -p "$port"; do sleep 1; done
  fi

  export WITHINGS_TEST_DATABASE_URL="postgres://$role:$password@127.0.0.1:$port/$database"
  echo "WITHINGS_TEST_DATABASE_URL=$WITHINGS_TEST_DATABASE_URL"
}

if [ -n "${WITHINGS_TEST_DATABASE_URL:-}" ]; then
  echo "using WITHINGS_TEST_DATABASE_URL=$WITHINGS_TEST_DATABASE_URL"
else
  withings_postgres_setup
fi
