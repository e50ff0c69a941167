# Shared by ./strata and ./mvnw (sourced, POSIX sh): finds a JDK 25 or newer when JAVA_HOME names
# none (Debian's default java is 17), and before the tests installs the Debian packages they run
# against (as root) or names exactly what is missing (otherwise).

# The JDK's major version from its release file (no JVM started), else from java -version.
strata_java_major() {
  if [ -f "$1/release" ]; then
    line="$(grep -m1 '^JAVA_VERSION=' "$1/release" 2>/dev/null || true)"
    if [ -n "$line" ]; then
      line="${line#JAVA_VERSION=\"}"
      echo "${line%%[.\"]*}"
      return 0
    fi
  fi
  "$1/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

strata_is_jdk25() {
  [ -x "$1/bin/java" ] && [ "$(strata_java_major "$1")" -ge 25 ] 2>/dev/null
}

# Prints a JDK >= 25: JAVA_HOME if it is one, else the first under /usr/lib/jvm (Temurin 25 first).
strata_find_jdk() {
  if [ -n "${JAVA_HOME:-}" ] && strata_is_jdk25 "$JAVA_HOME"; then
    echo "$JAVA_HOME"
    return 0
  fi
  # callers may run with globbing off (mvnw's set -f): list the directory instead of globbing
  for name in temurin-25-jdk-amd64 $(ls /usr/lib/jvm 2>/dev/null); do
    cand="/usr/lib/jvm/$name"
    if strata_is_jdk25 "$cand"; then
      echo "$cand"
      return 0
    fi
  done
  return 1
}

# Exports JAVA_HOME as a JDK >= 25, or fails with how to get one.
strata_use_jdk() {
  if ! jdk="$(strata_find_jdk)"; then
    echo "strata: no JDK 25 or newer found (set JAVA_HOME, or install one under /usr/lib/jvm: apt-get install temurin-25-jdk)" >&2
    return 1
  fi
  JAVA_HOME="$jdk"
  export JAVA_HOME
}

# The tools the tests run against, as tool:debian-package.
STRATA_TEST_TOOLS="qemu-img:qemu-utils qemu-io:qemu-utils qemu-nbd:qemu-utils qemu-storage-daemon:qemu-system-common nbdinfo:libnbd-bin nbdcopy:libnbd-bin qemu-system-x86_64:qemu-system-x86"

# Installs the Debian packages of the missing test tools when run as root; otherwise names them
# and the command that installs them. The tests then require every tool (STRATA_REQUIRE_INTEROP),
# so a missing one fails the build instead of skipping its tests.
strata_ensure_test_tools() {
  missing=""
  for entry in $STRATA_TEST_TOOLS; do
    tool="${entry%%:*}"
    pkg="${entry##*:}"
    if ! command -v "$tool" >/dev/null 2>&1; then
      case " $missing " in
        *" $pkg "*) ;;
        *) missing="$missing $pkg" ;;
      esac
    fi
  done
  [ -n "$missing" ] || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "strata: installing the test tools' packages:$missing" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
      { echo "strata: installing$missing failed" >&2; return 1; }
  else
    echo "strata: the tests need these Debian packages, which are missing:$missing" >&2
    echo "strata: install them with: sudo apt-get install$missing" >&2
    echo "strata: (or run the tests that need no QEMU tool with STRATA_REQUIRE_INTEROP=0)" >&2
  fi
}
