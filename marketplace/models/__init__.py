"""The marketplace's rows. Each module holds one area; import models from here."""
from marketplace.models.accounts import Account, Role
from marketplace.models.artifacts import Artifact
from marketplace.models.chain import ChainCursor, ChainDeployment, ChainEvent, ChainSigner, ChainTx, TxState
from marketplace.models.jobs import (
    TERMINAL_STATES,
    TRANSITIONS,
    AttemptOutcome,
    Job,
    JobAttempt,
    JobEvent,
    JobEventType,
    JobState,
)
from marketplace.models.leases import Lease, LeaseState, Wallet
from marketplace.models.offers import Offer, OfferStatus
from marketplace.models.providers import Node, NodeGpu, NodeStatus

__all__ = [
    "Account", "Artifact", "ChainCursor", "ChainDeployment", "ChainEvent", "ChainSigner", "ChainTx", "Lease",
    "LeaseState", "TxState", "Wallet", "AttemptOutcome", "JobAttempt", "Job", "JobEvent", "JobEventType", "JobState", "Node", "NodeGpu",
    "NodeStatus", "Offer", "OfferStatus", "Role", "TERMINAL_STATES", "TRANSITIONS",
]
