"""The marketplace: the Django project and its single app (see ../shared/docs/ARCHITECTURE.md)."""
