"""Flower's side of bench/vs_flower.py: run by the Flower virtualenv's python, never by fedsilo's.

    /tmp/flwr/bin/python bench/flower_runner.py TASK.npz TASK.json

Needs only numpy, torch and flwr[simulation] (no fedsilo import). TASK.npz holds the rows
fedsilo's parties train on (``x{i}``/``y{i}``), the central test split and the initial
weights (``p0``, ``p1``, ... in the model's ``state_dict`` order), written by vs_flower.py;
TASK.json the model and the training settings. The model is the same stack of linear layers
and ReLUs, trained with the same mini-batch SGD; FedAvg on Flower's simulation engine (Ray),
each client with one torch thread and one CPU, the global model evaluated on the test split
after every round (``evaluate_fn``; no federated evaluation). Prints one JSON line:
``s_per_round`` (median time between consecutive evaluations) and ``accuracy`` (final).
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def model(spec: dict[str, Any]) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = int(spec["input_dim"])
    for h in spec["hidden"]:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, int(spec["num_classes"])))
    return nn.Sequential(*layers)


def set_weights(net: nn.Module, weights: list[np.ndarray]) -> None:
    keys = list(net.state_dict())
    net.load_state_dict(
        {k: torch.from_numpy(np.array(w)) for k, w in zip(keys, weights, strict=True)}
    )


def get_weights(net: nn.Module) -> list[np.ndarray]:
    return [v.detach().numpy().copy() for v in net.state_dict().values()]


def main() -> None:
    import flwr
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    with np.load(sys.argv[1], allow_pickle=False) as npz:  # plain arrays: clients ship to Ray
        data = dict(npz)
    cfg = json.loads(Path(sys.argv[2]).read_text())
    spec, n = cfg["model"], int(cfg["num_parties"])
    init = [data[f"p{i}"] for i in range(int(cfg["num_params"]))]
    x_test = torch.from_numpy(data["x_test"].astype(np.float32))
    y_test = torch.from_numpy(data["y_test"].astype(np.int64))

    class Client(NumPyClient):  # type: ignore[misc]
        def __init__(self, index: int) -> None:
            self.index = index
            self.x = torch.from_numpy(data[f"x{index}"].astype(np.float32))
            self.y = torch.from_numpy(data[f"y{index}"].astype(np.int64))
            self.net = model(spec)
            self.rounds = 0

        def fit(
            self, parameters: list[np.ndarray], config: dict[str, Any]
        ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
            torch.set_num_threads(1)
            set_weights(self.net, parameters)
            opt = torch.optim.SGD(self.net.parameters(), lr=float(cfg["learning_rate"]))
            loss_fn = nn.CrossEntropyLoss()
            gen = torch.Generator().manual_seed(1000 * self.index + int(config.get("round", 0)))
            for _ in range(int(cfg["epochs"])):
                order = torch.randperm(len(self.y), generator=gen)
                for start in range(0, len(order), int(cfg["batch_size"])):
                    idx = order[start : start + int(cfg["batch_size"])]
                    opt.zero_grad()
                    loss_fn(self.net(self.x[idx]), self.y[idx]).backward()
                    opt.step()
            return get_weights(self.net), len(self.y), {}

    def client_fn(context: Context) -> Any:
        return Client(int(context.node_config["partition-id"])).to_client()

    stamps: list[float] = []
    accuracy: list[float] = []
    net = model(spec)

    def evaluate(rnd: int, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        set_weights(net, parameters)
        with torch.no_grad():
            logits = net(x_test)
        acc = float((logits.argmax(dim=1) == y_test).float().mean())
        loss = float(nn.functional.cross_entropy(logits, y_test))
        accuracy.append(acc)
        stamps.append(time.monotonic())
        return loss, {"accuracy": acc}

    fraction = float(cfg["fraction"])
    per_round = max(2, int(np.ceil(fraction * n)))

    def server_fn(context: Context) -> ServerAppComponents:
        strategy = FedAvg(
            fraction_fit=fraction,
            fraction_evaluate=0.0,
            min_fit_clients=min(per_round, n),
            min_evaluate_clients=0,
            min_available_clients=n,
            evaluate_fn=evaluate,
            on_fit_config_fn=lambda rnd: {"round": rnd},
            initial_parameters=ndarrays_to_parameters(init),
        )
        return ServerAppComponents(
            strategy=strategy, config=ServerConfig(num_rounds=int(cfg["rounds"]))
        )

    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=n,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    print(
        json.dumps(
            {
                "s_per_round": statistics.median(gaps) if gaps else float("nan"),
                "accuracy": accuracy[-1] if accuracy else float("nan"),
                "rounds": len(gaps),
                "flwr": flwr.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
