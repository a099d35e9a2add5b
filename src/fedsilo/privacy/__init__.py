"""Privacy building blocks: homomorphic encryption for vertical federated protocols."""
