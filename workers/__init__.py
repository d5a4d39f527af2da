"""Code that runs jobs: Celery tasks, the Ray seam, the provider agent and the on-node runtime.

Nothing under `workers.runtime` or `workers.evm` imports Django.
"""
