#!/usr/bin/env bash
# Make the consortium CA, the server's certificate and one certificate per party (CN = party).
# On a real deployment: run the CA on a trusted machine, issue the server certificate with the
# coordinator's DNS name (--host coordinator.example.org), send each party its .pem/.key.
set -euo pipefail
cd "$(dirname "$0")"
fedsilo certs init certs
fedsilo certs issue certs server --kind server --host localhost --host 127.0.0.1
for party in bank-a bank-b bank-c admin; do
  fedsilo certs issue certs "$party" --kind party
done
