"""Homomorphic encryption for vertical federated protocols: Paillier and CKKS behind one API.

::

    from fedsilo.privacy.he import HeScheme, generate, load_public

    secret = generate(HeScheme.PAILLIER)              # the key holder (arbiter)
    wire = secret.public().to_bytes()                 # shared with everyone
    public = load_public(HeScheme.PAILLIER, wire)     # guest / hosts: encrypt + evaluate only
    enc_g = public.encrypt(gradients)
    enc_xtg = public.deserialize_vector(msg).matmul_plain(features)
    secret.decrypt(secret.deserialize_vector(masked_msg))

See :mod:`fedsilo.privacy.he.base` for the interface and wire format,
:mod:`~fedsilo.privacy.he.paillier` and :mod:`~fedsilo.privacy.he.ckks` for
precision, cost and security notes of each backend.
"""

from __future__ import annotations

from fedsilo.errors import ConfigError
from fedsilo.privacy.he.base import (
    CkksConfig,
    EncryptedVector,
    HeScheme,
    PaillierConfig,
    PublicContext,
    SecretContext,
    require_secret,
)

__all__ = [
    "CkksConfig",
    "EncryptedVector",
    "HeScheme",
    "PaillierConfig",
    "PublicContext",
    "SecretContext",
    "generate",
    "load_public",
    "require_secret",
]


def generate(
    scheme: HeScheme | str, config: PaillierConfig | CkksConfig | None = None
) -> SecretContext:
    """Generate a fresh key set for ``scheme`` (defaults: 2048-bit Paillier / CKKS N=8192)."""
    scheme = _scheme(scheme)
    if scheme is HeScheme.PAILLIER:
        from fedsilo.privacy.he.paillier import generate_paillier

        if config is None:
            config = PaillierConfig()
        if not isinstance(config, PaillierConfig):
            raise ConfigError(f"Paillier needs a PaillierConfig, got {type(config).__name__}")
        return generate_paillier(config)
    from fedsilo.privacy.he.ckks import generate_ckks

    if config is None:
        config = CkksConfig()
    if not isinstance(config, CkksConfig):
        raise ConfigError(f"CKKS needs a CkksConfig, got {type(config).__name__}")
    return generate_ckks(config)


def load_public(scheme: HeScheme | str, data: bytes) -> PublicContext:
    """Load a public context serialized by :meth:`PublicContext.to_bytes`.

    Raises :class:`~fedsilo.errors.ProtocolError` if ``data`` is not a valid
    public context of ``scheme`` (garbage, truncated, other scheme, secret key
    included).
    """
    scheme = _scheme(scheme)
    if scheme is HeScheme.PAILLIER:
        from fedsilo.privacy.he.paillier import load_paillier_public

        return load_paillier_public(data)
    from fedsilo.privacy.he.ckks import load_ckks_public

    return load_ckks_public(data)


def _scheme(scheme: HeScheme | str) -> HeScheme:
    if isinstance(scheme, HeScheme):
        return scheme
    try:
        return HeScheme(scheme)
    except ValueError:
        raise ConfigError(
            f"unknown HE scheme {scheme!r}; use one of {[s.value for s in HeScheme]}"
        ) from None
