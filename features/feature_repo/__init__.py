"""Feast definitions of dacdr's feature store (entities, sources, views, services) and its yaml template.

The objects are built by small factories taking the data folder, so the same definitions
serve any working directory: `features.store` renders them into `<workdir>/feature_repo/`.
"""
