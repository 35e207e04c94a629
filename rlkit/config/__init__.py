"""The configuration as pure data: the schema and the preset catalogue. Imports only rlkit.core."""
