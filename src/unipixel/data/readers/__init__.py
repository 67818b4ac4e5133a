"""One module per dataset layout; each registers itself with :func:`unipixel.data.registry.register_reader`."""
