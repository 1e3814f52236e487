#!/bin/sh
# SPDX-License-Identifier: MIT
#
# End-to-end tests of `dprt serve` with real clients (test_serve.py): curl,
# the official Triton HTTP client (tritonclient[http]) and the Prometheus
# text parser (prometheus_client). They come from PyPI into a virtual
# environment, build/e2e-venv, made once and reused while it imports them.
#
# Environment:
#   DPRT        the binary under test (default: ./dprt of this checkout)
#   E2E_PYTHON  a python that already has tritonclient[http], numpy and
#               prometheus_client (then no venv, no pip)
# Arguments are passed to test_serve.py (test names to run only those).

set -eu
root=$(cd "$(dirname "$0")/../../.." && pwd)
venv=$root/build/e2e-venv
want='import tritonclient.http, prometheus_client, numpy'
pkgs='tritonclient[http] prometheus-client numpy'

have()
{
	"$1" -c "$want" >/dev/null 2>&1
}

py=${E2E_PYTHON:-}
if [ -z "$py" ]; then
	py=$venv/bin/python
	if ! have "$py"; then
		echo "e2e: installing $pkgs into $venv"
		rm -rf "$venv"
		if python3 -m venv "$venv" >/dev/null 2>&1; then
			# shellcheck disable=SC2086 # a list of packages
			"$py" -m pip install --quiet --disable-pip-version-check $pkgs
		else
			# No venv module (Debian without python3-venv): the user site.
			py=python3
			# shellcheck disable=SC2086
			python3 -m pip install --quiet --user --disable-pip-version-check $pkgs
		fi
	fi
	if ! have "$py"; then
		echo "FAIL: cannot import $want with $py (pip install failed?)"
		exit 1
	fi
fi
exec "$py" "$root/test/net/e2e/test_serve.py" "$@"
