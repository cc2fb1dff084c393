"""Safety: the written constitution that critique-and-revision and the guard classifier are built from."""
