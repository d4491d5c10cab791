"""Project templates: `tfx-explain template copy --name NAME --dest DIR`."""
