"""Secure aggregation: the coordinator learns only the sum of the round's surviving updates.

Bonawitz et al. 2017, "Practical Secure Aggregation for Privacy-Preserving Machine Learning"
(SecAgg, complete graph), and Bell et al. 2020, "Secure Single-Server Aggregation with
(Poly)Logarithmic Overhead" (SecAgg+, each party paired with O(log n) neighbours).

Modules, pure first: :mod:`.quantize` (floats to the ring Z_{2^bits}), :mod:`.shamir` (secret
sharing over GF(2^521 - 1)), :mod:`.keys` (X25519, HKDF, AES-GCM, AES-CTR mask expansion, HMAC
and Ed25519 signatures, all from ``cryptography``), :mod:`.params` (the thresholds and
SecAgg+ degrees a party accepts, from its own threat model), :mod:`.identity` (a party's
signing key and the roster it checks peers against), :mod:`.protocol` (party and server
state machines over bytes and numpy). The runtime glue lives in runtime/: the party's in
:mod:`fedsilo.runtime.private_party`, the coordinator's in the round loop's sum step,
:mod:`fedsilo.runtime.secure_sum`.
"""
