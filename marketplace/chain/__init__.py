"""THE seam to the chain; only client.py imports web3.

- `client`: calls, signed sends, receipts, logs and decoded reverts (web3, imported lazily).
- `build`: compiles `contracts/src` into `contracts/build/*.json` and loads those artifacts.
- `anvil`: starts and stops a local anvil (the dev chain of `make run` and the tests) and its
  well-known dev accounts; plain JSON-RPC over urllib, no web3.

Nothing else in the marketplace talks to a chain node or reads contract artifacts directly.
"""
