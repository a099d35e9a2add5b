#!/usr/bin/env bash
# Make the consortium CA, the server's certificate, one certificate per party (CN = party) and
# the admin's client certificate.
# On a real deployment: run the CA on a trusted machine, issue the server certificate with the
# coordinator's DNS name (--host coordinator.example.org), send each party its .pem/.key.
set -euo pipefail
cd "$(dirname "$0")"
fedsilo certs init certs
fedsilo certs issue certs server --kind server --host localhost --host 127.0.0.1
for party in bank-a bank-b bank-c; do
  fedsilo certs issue certs "$party" --kind party
done
# the admin's client certificate (submit, status, query under mutual TLS): not a party, so it
# gets no secure-aggregation identity and stays out of the roster
fedsilo certs issue certs admin --kind client
