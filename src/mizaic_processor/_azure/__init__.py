"""Adapters: the only modules that talk to Azure."""
