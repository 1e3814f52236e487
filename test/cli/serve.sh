#!/bin/sh
# SPDX-License-Identifier: MIT
# dprt serve end to end, over real sockets with real clients: curl,
# tritonclient[http], prometheus_client. The tests are in test/net/e2e/.
exec sh "$(dirname "$0")/../net/e2e/run.sh"
