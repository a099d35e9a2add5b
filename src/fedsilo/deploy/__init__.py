"""Deployment across organizations: gRPC server and party processes, certificates, job store."""
