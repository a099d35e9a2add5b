"""Generated protobuf and gRPC code for the deployment wire (`make proto`)."""
