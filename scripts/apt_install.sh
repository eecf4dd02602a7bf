#!/usr/bin/env bash
# apt_install WHAT PACKAGE...: installs the Debian packages that are missing, with apt (root, or
# sudo), saying what for; does nothing when all are present. Sourced by the install_*_deps scripts.
apt_install() {
    local what=$1
    shift
    [ $# -eq 0 ] && return 0
    echo "installing Debian packages for $what: $*"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
