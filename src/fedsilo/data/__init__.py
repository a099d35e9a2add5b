"""Reading, partitioning and preparing the data each party holds."""
