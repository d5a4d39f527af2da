// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title ILeaseEscrow: what the marketplace, tenants, providers and the arbiter can do with the escrow
/// @notice Every state change emits exactly one of the events below; the marketplace rebuilds its
/// ledger from them alone (keyed by transaction hash and log index).
interface ILeaseEscrow {
    /// @notice A lease's life: None -> Open -> one of Settled, Released, Reclaimed, Slashed (all final).
    enum LeaseState {
        None,
        Open,
        Settled,
        Released,
        Reclaimed,
        Slashed
    }

    struct Lease {
        address tenant;
        uint64 openedAt;
        LeaseState state;
        address provider;
        uint64 deadline; // the operator settles at or before it; the tenant reclaims after it
        uint256 jobId;
        uint256 ratePerHour; // wei per hour for the whole lease (price per GPU-hour x GPUs)
        uint256 reserved; // taken from the tenant's balance at open
    }

    struct Provider {
        uint256 stake;
        uint64 unbondingAt; // 0 when bonded; else the earliest time the stake can be taken out
        uint32 openLeases;
        bool registered;
    }

    // --- errors: each names what was wrong and, where it helps, the numbers involved ---
    error ZeroAmount();
    error ZeroAddress();
    error FeeTooHigh(uint256 feeBps, uint256 maxFeeBps);
    error InsufficientBalance(uint256 available, uint256 needed);
    error LeaseCapExceeded(uint256 cap, uint256 reserved);
    error InvalidLeaseTerms();
    error LeaseExists(uint256 leaseId);
    error LeaseNotOpen(uint256 leaseId, LeaseState state);
    error LeaseExpired(uint256 leaseId, uint64 deadline);
    error DeadlineNotReached(uint256 leaseId, uint64 deadline);
    error NotTenant(uint256 leaseId, address caller);
    error AlreadyRegistered(address provider);
    error NotRegistered(address provider);
    error StakeTooLow(uint256 stake, uint256 minStake);
    error ProviderNotEligible(address provider);
    error AlreadyUnbonding(address provider, uint64 unbondingAt);
    error NotUnbonding(address provider);
    error UnbondingNotDone(address provider, uint64 unbondingAt);
    error OpenLeases(address provider, uint32 openLeases);
    error DepositNotReceived();

    // --- events: one per state change ---
    event Deposited(address indexed tenant, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event LeaseCapSet(address indexed tenant, uint256 cap);
    event ProviderRegistered(address indexed provider, uint256 stake);
    event StakeAdded(address indexed provider, uint256 amount);
    event UnbondingStarted(address indexed provider, uint64 unbondingAt);
    event StakeUnbonded(address indexed provider, uint256 amount);
    event LeaseOpened(
        uint256 indexed leaseId,
        uint256 indexed jobId,
        address indexed tenant,
        address provider,
        uint256 ratePerHour,
        uint256 reserved,
        uint64 deadline
    );
    event LeaseSettled(
        uint256 indexed leaseId,
        uint256 indexed jobId,
        address indexed provider,
        uint64 usedSeconds,
        uint256 payment,
        uint256 fee,
        uint256 refund,
        bytes32 resultHash
    );
    event LeaseReleased(uint256 indexed leaseId, uint256 indexed jobId, uint256 refund);
    event LeaseReclaimed(uint256 indexed leaseId, uint256 indexed jobId, uint256 refund);
    event ProviderSlashed(
        uint256 indexed leaseId,
        uint256 indexed jobId,
        address indexed provider,
        uint256 slashed,
        uint256 refund,
        bytes32 evidence
    );
    event TreasurySet(address indexed treasury);

    // --- tenants ---
    function deposit(uint256 amount) external;
    function withdraw(uint256 amount) external;
    function setLeaseCap(uint256 cap) external;
    function reclaimLease(uint256 leaseId) external;

    // --- providers ---
    function registerProvider(uint256 stake) external;
    function addStake(uint256 amount) external;
    function startUnbonding() external;
    function completeUnbonding() external;

    // --- operator ---
    function openLease(
        uint256 leaseId,
        uint256 jobId,
        address tenant,
        address provider,
        uint256 ratePerHour,
        uint64 maxDuration
    ) external;
    function settleLease(uint256 leaseId, uint64 usedSeconds, bytes32 resultHash) external;
    function releaseLease(uint256 leaseId) external;

    // --- arbiter ---
    function slash(uint256 leaseId, uint256 amount, bytes32 evidence) external;

    // --- views ---
    function available(address account) external view returns (uint256);
    function reservedOf(address tenant) external view returns (uint256);
    function leaseCap(address tenant) external view returns (uint256);
    function getLease(uint256 leaseId) external view returns (Lease memory);
    function getProvider(address provider) external view returns (Provider memory);
    function quote(uint256 ratePerHour, uint64 seconds_) external pure returns (uint256);
}
