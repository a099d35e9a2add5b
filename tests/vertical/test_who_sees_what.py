"""Record what every role receives in a 2-host hetero-LR run and check it against the claims.

Hosts get only: setup data (HE public key, row positions, channel keys), sealed ciphertexts
from the guest and their own masked gradient back. The arbiter (coordinator) decrypts only
masked values and cannot even parse the guest-host payloads it relays. No party ever gets
another party's plaintext gradient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from fedsilo.errors import ProtocolError
from fedsilo.privacy.he import EncryptedVector, HeScheme, PaillierConfig, SecretContext, generate
from fedsilo.privacy.he.paillier import PaillierVector
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.transport import Gathered, InProcessTransport
from fedsilo.vertical.agent import VerticalPartyAgent
from fedsilo.vertical.config import parse_vertical_job
from fedsilo.vertical.hetero_lr import HeteroLrParty
from fedsilo.vertical.masking import (
    MASK_LEVELS,
    FloatArray,
    ckks_mask_bits,
    revealed_integers,
)
from fedsilo.vertical.runner import VerticalRunner

PSI_KINDS = {
    TaskKind.PSI_OPEN,
    TaskKind.PSI_REQUEST,
    TaskKind.PSI_SETUP,
    TaskKind.PSI_INTERSECT,
    TaskKind.PSI_FINISH,
}

pytestmark = pytest.mark.slow


class RecordingParty:
    """Wraps a party's agent: logs every hetero-LR message it receives (PSI is tested apart,
    in test_runner.py) and, through ``truths``, every true gradient the party unmasks."""

    def __init__(self, agent: VerticalPartyAgent) -> None:
        self.agent = agent
        self.received: list[Message] = []
        self.true_gradients: list[FloatArray] = []

    def handle(self, data: bytes) -> bytes:
        msg = Message.decode(data)
        if msg.kind not in PSI_KINDS:
            self.received.append(msg)
        return self.agent.handle(data)

    @property
    def weights(self) -> FloatArray:
        assert isinstance(self.agent.role, HeteroLrParty)
        return self.agent.role.weights


class RecordingSecret:
    """The arbiter's key, logging everything it decrypts."""

    def __init__(self, secret: SecretContext) -> None:
        self._secret = secret
        self.scheme = secret.scheme
        self.decrypted: list[FloatArray] = []

    def public(self) -> Any:
        return self._secret.public()

    def deserialize_vector(self, data: bytes) -> EncryptedVector:
        return self._secret.deserialize_vector(data)

    def decrypt(self, vector: EncryptedVector) -> FloatArray:
        out = self._secret.decrypt(vector)
        self.decrypted.append(out)
        return out

    def decrypt_integers(self, vector: EncryptedVector) -> list[int]:
        """Paillier: the arbiter reveals masked integers; logged in value units."""
        out: list[int] = self._secret.decrypt_integers(vector)  # type: ignore[attr-defined]
        assert isinstance(vector, PaillierVector)
        self.decrypted.append(np.array(out, dtype=np.float64) / 16.0**-vector.exponent)
        return out


def _mask_floor(scheme: str) -> float:
    """Every revealed value is at least this large in magnitude: CKKS masks are >= 2^k;
    Paillier masks are uniform on [0, 2^56) value units (below 2^16 w.p. 2^-40)."""
    if scheme == "ckks":
        return 2.0 ** ckks_mask_bits(MASK_LEVELS[HeScheme.CKKS])
    return 2.0 ** MASK_LEVELS[HeScheme.PAILLIER].value_bits


class RecordingTransport(InProcessTransport):
    def __init__(self, parties: dict[str, Any]) -> None:
        super().__init__(parties)
        self.replies: list[Message] = []

    def exchange(self, tasks: Any, *, timeout_s: float) -> Gathered:
        gathered = super().exchange(tasks, timeout_s=timeout_s)
        self.replies.extend(gathered.replies.values())
        return gathered


def _two_host_job(tmp: Path, scheme: str) -> dict[str, Any]:
    data = load_breast_cancer()
    ids = [f"c{i}" for i in range(len(data.target))]
    guest = pd.DataFrame(data.data[:, :10], columns=[f"g{j}" for j in range(10)])
    guest.insert(0, "y", data.target)
    guest.insert(0, "id", ids)
    guest.iloc[:500].to_csv(tmp / "guest.csv", index=False)
    for k, cols in ((1, slice(10, 20)), (2, slice(20, 30))):
        host = pd.DataFrame(data.data[:, cols], columns=[f"h{k}_{j}" for j in range(10)])
        host.insert(0, "id", ids)
        host.iloc[30 * k :].sample(frac=1.0, random_state=k).to_csv(tmp / f"h{k}.csv", index=False)
    return {
        "kind": "vertical",
        "name": "wsw",
        "seed": 3,
        "parties": [
            {"name": "bank", "path": str(tmp / "guest.csv"), "label": "y"},
            {"name": "shop", "path": str(tmp / "h1.csv")},
            {"name": "telco", "path": str(tmp / "h2.csv")},
        ],
        "he": {"scheme": scheme, "key_bits": 1024},
        "hetero_lr": {"epochs": 1, "batch_size": 200, "learning_rate": 0.3},
    }


@pytest.mark.parametrize("scheme", ["ckks", "paillier"])
def test_each_role_receives_only_what_the_protocol_allows(
    tmp_path: Path, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = parse_vertical_job(_two_host_job(tmp_path, scheme))
    parties = {p.name: RecordingParty(VerticalPartyAgent.from_config(p)) for p in job.parties}
    unmasked = HeteroLrParty._take_unmasked

    def take_unmasked(self: HeteroLrParty, msg: Message, key: str) -> FloatArray:
        value = unmasked(self, msg, key)
        if key == "gradient":
            parties[self.name].true_gradients.append(value)
        return value

    monkeypatch.setattr(HeteroLrParty, "_take_unmasked", take_unmasked)
    config = PaillierConfig(key_bits=1024) if scheme == "paillier" else None
    secret = RecordingSecret(generate(scheme, config))
    transport = RecordingTransport(parties)
    runner = VerticalRunner(job, transport, secret=secret)  # type: ignore[arg-type]
    metrics = runner.run().test
    assert metrics["auc"] > 0.95  # the run itself worked

    guest = parties["bank"]
    aligned = {name: p.agent.aligned for name, p in parties.items()}
    assert aligned["bank"] is not None and aligned["bank"].labels is not None
    labels = aligned["bank"].labels
    truths = {n: np.concatenate(p.true_gradients) for n, p in parties.items()}
    assert all(len(p.true_gradients) == 2 for p in parties.values())  # 2 batches each

    # Hosts: byte payloads (HE key, sealed ciphertexts, channel keys), row positions, and only
    # their own masked gradient as floats; never labels, guest features or others' gradients.
    for name in ("shop", "telco"):
        host = parties[name]
        own_dims = host.weights.shape
        for msg in host.received:
            for key, arr in msg.arrays.items():
                if arr.dtype == np.uint8 and key == "masked":  # Paillier: masked integers
                    assert msg.kind is TaskKind.HETERO_LR_UPDATE
                    assert len(revealed_integers(arr, key)) == own_dims[0]
                elif arr.dtype == np.uint8:
                    assert key in {"he_public"} or key.startswith(("from:bank", "key:")), key
                    if key.startswith("from:"):  # sealed: not even a parseable HE payload
                        with pytest.raises(ProtocolError):
                            secret.deserialize_vector(arr.tobytes())
                elif arr.dtype == np.int64:
                    assert key in {"rows", "train", "test"}
                else:
                    assert msg.kind is TaskKind.HETERO_LR_UPDATE and key == "masked", key
                    assert arr.shape == own_dims
                    assert np.all(np.abs(arr) > _mask_floor(scheme))  # still masked
            text = repr(msg.body)
            assert "y" not in msg.body and "labels" not in text
        assert not any(m.kind is TaskKind.VERTICAL_UNMASKED for m in host.received)

    # The guest's float inputs are its own masked gradient, loss and scores only.
    for msg in guest.received:
        for key, arr in msg.arrays.items():
            if arr.dtype == np.float64:
                assert key == "masked"
                assert np.all(np.abs(arr) > _mask_floor(scheme))

    # The arbiter decrypts only masked values: nothing it decrypts is near a true gradient,
    # every value sits in the mask range, and the coordinator's replies carry no floats.
    bound = _mask_floor(scheme)
    for values in secret.decrypted:
        assert np.all(np.abs(values) > bound)
        for truth in truths.values():
            if truth.shape == values.shape:
                assert not np.allclose(values, truth, atol=1.0)
    assert len(secret.decrypted) == 2 * 3 + 2  # 2 batches x 3 gradients + loss + scores
    for reply in transport.replies:
        assert all(arr.dtype != np.float64 for arr in reply.arrays.values())

    # With two hosts, no party's received floats are close to another party's true gradient.
    for name, party in parties.items():
        for msg in party.received:
            for arr in msg.arrays.values():
                if arr.dtype != np.float64:
                    continue
                for other, grads in parties.items():
                    if other == name:
                        continue
                    for g in grads.true_gradients:
                        assert not (g.shape == arr.shape and np.allclose(g, arr, atol=1.0))
    # Guest features (and labels) never reach a host in any form that is not sealed.
    g_features = aligned["bank"].features
    for name in ("shop", "telco"):
        for msg in parties[name].received:
            for arr in msg.arrays.values():
                assert arr.dtype != np.float64 or not np.isin(g_features, arr).any()
                assert arr.dtype != np.float64 or not np.array_equal(arr, labels)
