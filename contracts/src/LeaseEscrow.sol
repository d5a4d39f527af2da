// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {ILeaseEscrow} from "./ILeaseEscrow.sol";

/// @title LeaseEscrow: a developer's payment held as a lease and settled to the provider for verified work
/// @notice One ERC-20 token per deployment. The ledger, in token units (wei):
///
///   token.balanceOf(this) == sum(available) + sum(reservedOf) + sum(provider stakes)
///
/// where `available[a]` is what account `a` can `withdraw` (a tenant's unreserved deposit, a provider's
/// earnings and unbonded stake, the treasury's fees, a slashed tenant's compensation). Tokens leave
/// only through `withdraw` (pull payments).
///
/// State machine of a lease (`leaseId` is chosen by the operator: one per run attempt):
///
///   None --openLease (operator)--> Open
///   Open --settleLease (operator, at or before the deadline)--> Settled
///        provider gets min(rate x used, reserved) minus the fee, treasury the fee, tenant the rest
///   Open --releaseLease (operator, any time)--> Released      tenant gets the whole reservation back
///   Open --reclaimLease (tenant, after the deadline)--> Reclaimed   likewise, if the operator never acted
///   Open --slash (arbiter, any time)--> Slashed       tenant gets the reservation plus up to `amount`
///        of the provider's stake, for a result proven wrong (the marketplace re-runs the job elsewhere)
///
/// A provider registers its payout address (the caller) with at least `minStake`; it can take leases
/// while registered, staked at `minStake` or more and not unbonding. Its stake comes out only after
/// `startUnbonding`, `unbondingDelay` seconds, and with no open lease: `completeUnbonding` moves it to
/// `available`. Opening a lease reserves `quote(rate, maxDuration)`, never above the tenant's own
/// `leaseCap` (zero until the tenant sets one: nobody can spend a deposit its owner did not cap).
///
/// Roles: DEFAULT_ADMIN_ROLE grants roles and sets the treasury; OPERATOR_ROLE opens, settles and
/// releases leases; ARBITER_ROLE slashes; GUARDIAN_ROLE pauses. Paused, the contract takes no new
/// deposits, stakes or leases and moves nothing between accounts, but every exit stays open:
/// `withdraw`, `setLeaseCap`, `reclaimLease` and `startUnbonding` work while paused.
contract LeaseEscrow is ILeaseEscrow, AccessControl, Pausable, ReentrancyGuard {
    using SafeERC20 for IERC20;

    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    bytes32 public constant ARBITER_ROLE = keccak256("ARBITER_ROLE");
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");

    uint256 public constant MAX_FEE_BPS = 3_000;
    uint256 private constant BPS = 10_000;
    uint256 private constant HOUR = 3_600;

    IERC20 public immutable token;
    uint256 public immutable feeBps;
    uint256 public immutable minStake;
    uint64 public immutable unbondingDelay;
    /// @notice Seconds after a lease's maximum duration during which the operator may still settle it.
    uint64 public immutable settleWindow;
    address public treasury;

    mapping(address account => uint256) public available;
    mapping(address tenant => uint256) public reservedOf;
    mapping(address tenant => uint256) public leaseCap;
    mapping(uint256 leaseId => Lease) private _leases;
    mapping(address provider => Provider) private _providers;

    constructor(
        IERC20 token_,
        address admin,
        address treasury_,
        uint256 feeBps_,
        uint256 minStake_,
        uint64 unbondingDelay_,
        uint64 settleWindow_
    ) {
        if (address(token_) == address(0) || admin == address(0) || treasury_ == address(0)) revert ZeroAddress();
        if (feeBps_ > MAX_FEE_BPS) revert FeeTooHigh(feeBps_, MAX_FEE_BPS);
        if (minStake_ == 0) revert ZeroAmount();
        token = token_;
        feeBps = feeBps_;
        minStake = minStake_;
        unbondingDelay = unbondingDelay_;
        settleWindow = settleWindow_;
        treasury = treasury_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        emit TreasurySet(treasury_);
    }

    // ------------------------------------------------------------------ tenants

    /// @notice Move `amount` tokens from the caller's wallet (approved first) to its escrow balance.
    function deposit(uint256 amount) external nonReentrant whenNotPaused {
        uint256 received = _pull(amount);
        available[msg.sender] += received;
        emit Deposited(msg.sender, received);
    }

    /// @notice Pay out `amount` of the caller's available balance. Works while paused.
    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = available[msg.sender];
        if (amount > balance) revert InsufficientBalance(balance, amount);
        available[msg.sender] = balance - amount;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice The most a single lease may reserve from the caller's balance (0: no lease can open).
    function setLeaseCap(uint256 cap) external {
        leaseCap[msg.sender] = cap;
        emit LeaseCapSet(msg.sender, cap);
    }

    /// @notice Take back the whole reservation of a lease the operator did not settle by its deadline.
    function reclaimLease(uint256 leaseId) external {
        Lease storage lease = _openLease(leaseId);
        if (msg.sender != lease.tenant) revert NotTenant(leaseId, msg.sender);
        // slither-disable-next-line timestamp (deadlines are hours long: a validator's seconds of drift do not matter)
        if (block.timestamp <= lease.deadline) revert DeadlineNotReached(leaseId, lease.deadline);
        uint256 refund = _close(lease, LeaseState.Reclaimed);
        emit LeaseReclaimed(leaseId, lease.jobId, refund);
    }

    // ------------------------------------------------------------------ providers

    /// @notice Register the caller as a provider (it is the payout address) with `stake` tokens.
    function registerProvider(uint256 stake) external nonReentrant whenNotPaused {
        Provider storage provider = _providers[msg.sender];
        if (provider.registered) revert AlreadyRegistered(msg.sender);
        if (stake < minStake) revert StakeTooLow(stake, minStake);
        uint256 received = _pull(stake);
        if (received < minStake) revert StakeTooLow(received, minStake);
        provider.registered = true;
        provider.stake = received;
        emit ProviderRegistered(msg.sender, received);
    }

    /// @notice Add to the caller's stake (for instance back above `minStake` after a slash).
    function addStake(uint256 amount) external nonReentrant whenNotPaused {
        Provider storage provider = _registered(msg.sender);
        uint256 received = _pull(amount);
        provider.stake += received;
        emit StakeAdded(msg.sender, received);
    }

    /// @notice Stop taking leases; the stake can come out `unbondingDelay` seconds from now.
    function startUnbonding() external {
        Provider storage provider = _registered(msg.sender);
        if (provider.unbondingAt != 0) revert AlreadyUnbonding(msg.sender, provider.unbondingAt);
        uint64 at = uint64(block.timestamp) + unbondingDelay;
        provider.unbondingAt = at;
        emit UnbondingStarted(msg.sender, at);
    }

    /// @notice After the delay and with no open lease: move the stake to `available` and deregister.
    /// @dev nonReentrant: a token with sender hooks (ERC-777 style) must not run this in the middle of
    /// the caller's own `addStake`, which would then write the added stake into the deleted record.
    function completeUnbonding() external nonReentrant whenNotPaused {
        Provider storage provider = _registered(msg.sender);
        uint64 at = provider.unbondingAt;
        if (at == 0) revert NotUnbonding(msg.sender);
        // slither-disable-next-line timestamp (the unbonding delay is days long)
        if (block.timestamp < at) revert UnbondingNotDone(msg.sender, at);
        if (provider.openLeases != 0) revert OpenLeases(msg.sender, provider.openLeases);
        uint256 stake = provider.stake;
        delete _providers[msg.sender];
        available[msg.sender] += stake;
        emit StakeUnbonded(msg.sender, stake);
    }

    // ------------------------------------------------------------------ operator

    /// @notice Reserve `quote(ratePerHour, maxDuration)` of `tenant`'s balance for `provider`'s run of `jobId`.
    function openLease(
        uint256 leaseId,
        uint256 jobId,
        address tenant,
        address provider,
        uint256 ratePerHour,
        uint64 maxDuration
    ) external onlyRole(OPERATOR_ROLE) whenNotPaused {
        if (_leases[leaseId].state != LeaseState.None) revert LeaseExists(leaseId);
        if (ratePerHour == 0 || maxDuration == 0 || tenant == address(0)) revert InvalidLeaseTerms();
        Provider storage stakeholder = _providers[provider];
        if (!stakeholder.registered || stakeholder.stake < minStake || stakeholder.unbondingAt != 0) {
            revert ProviderNotEligible(provider);
        }
        uint256 reserved = quote(ratePerHour, maxDuration);
        uint256 cap = leaseCap[tenant];
        if (reserved > cap) revert LeaseCapExceeded(cap, reserved);
        uint256 balance = available[tenant];
        if (reserved > balance) revert InsufficientBalance(balance, reserved);
        available[tenant] = balance - reserved;
        reservedOf[tenant] += reserved;
        stakeholder.openLeases += 1;
        uint64 deadline = uint64(block.timestamp) + maxDuration + settleWindow;
        _leases[leaseId] = Lease({
            tenant: tenant,
            openedAt: uint64(block.timestamp),
            state: LeaseState.Open,
            provider: provider,
            deadline: deadline,
            jobId: jobId,
            ratePerHour: ratePerHour,
            reserved: reserved
        });
        emit LeaseOpened(leaseId, jobId, tenant, provider, ratePerHour, reserved, deadline);
    }

    /// @notice Pay the provider for `usedSeconds` (capped at the reservation), less the fee, and
    /// return the rest to the tenant; `resultHash` is the hash of the verified result.
    function settleLease(uint256 leaseId, uint64 usedSeconds, bytes32 resultHash)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
    {
        Lease storage lease = _openLease(leaseId);
        // slither-disable-next-line timestamp (deadlines are hours long: a validator's seconds of drift do not matter)
        if (block.timestamp > lease.deadline) revert LeaseExpired(leaseId, lease.deadline);
        uint256 reserved = lease.reserved;
        // Used for the whole reserved duration or longer: the payment is the reservation. Shorter
        // times cost less than `reserved`, so quote() cannot overflow for them, whatever the rate.
        uint64 maxDuration = lease.deadline - lease.openedAt - settleWindow;
        uint256 payment = usedSeconds < maxDuration ? quote(lease.ratePerHour, usedSeconds) : reserved;
        uint256 fee = Math.mulDiv(payment, feeBps, BPS);
        address provider = lease.provider;
        lease.state = LeaseState.Settled;
        reservedOf[lease.tenant] -= reserved;
        available[lease.tenant] += reserved - payment;
        available[provider] += payment - fee;
        available[treasury] += fee;
        _providers[provider].openLeases -= 1;
        emit LeaseSettled(leaseId, lease.jobId, provider, usedSeconds, payment, fee, reserved - payment, resultHash);
    }

    /// @notice Give the tenant the whole reservation back (the run failed or was cancelled).
    function releaseLease(uint256 leaseId) external onlyRole(OPERATOR_ROLE) whenNotPaused {
        Lease storage lease = _openLease(leaseId);
        uint256 refund = _close(lease, LeaseState.Released);
        emit LeaseReleased(leaseId, lease.jobId, refund);
    }

    // ------------------------------------------------------------------ arbiter, guardian, admin

    /// @notice The lease's result was proven wrong: refund the tenant and pay it up to `amount` of the
    /// provider's stake as compensation (`evidence` is the hash of the proof).
    function slash(uint256 leaseId, uint256 amount, bytes32 evidence) external onlyRole(ARBITER_ROLE) whenNotPaused {
        Lease storage lease = _openLease(leaseId);
        Provider storage provider = _providers[lease.provider];
        uint256 slashed = Math.min(amount, provider.stake);
        provider.stake -= slashed;
        uint256 refund = _close(lease, LeaseState.Slashed);
        available[lease.tenant] += slashed;
        emit ProviderSlashed(leaseId, lease.jobId, lease.provider, slashed, refund, evidence);
    }

    function pause() external onlyRole(GUARDIAN_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(GUARDIAN_ROLE) {
        _unpause();
    }

    /// @notice Where future fees go (fees already earned stay withdrawable by the old treasury).
    function setTreasury(address treasury_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (treasury_ == address(0)) revert ZeroAddress();
        treasury = treasury_;
        emit TreasurySet(treasury_);
    }

    // ------------------------------------------------------------------ views

    function getLease(uint256 leaseId) external view returns (Lease memory) {
        return _leases[leaseId];
    }

    function getProvider(address provider) external view returns (Provider memory) {
        return _providers[provider];
    }

    /// @notice What `seconds_` of a lease at `ratePerHour` costs, rounded up to the wei.
    function quote(uint256 ratePerHour, uint64 seconds_) public pure returns (uint256) {
        return Math.mulDiv(ratePerHour, seconds_, HOUR, Math.Rounding.Ceil);
    }

    // ------------------------------------------------------------------ internals

    /// @dev Take `amount` from the caller and return what actually arrived (a token that charges a
    /// transfer fee delivers less, and only what arrived is credited).
    function _pull(uint256 amount) private returns (uint256 received) {
        if (amount == 0) revert ZeroAmount();
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        received = token.balanceOf(address(this)) - before;
        // slither-disable-next-line incorrect-equality (a balance difference, not a balance: 0 means nothing arrived)
        if (received == 0) revert DepositNotReceived();
    }

    function _openLease(uint256 leaseId) private view returns (Lease storage lease) {
        lease = _leases[leaseId];
        if (lease.state != LeaseState.Open) revert LeaseNotOpen(leaseId, lease.state);
    }

    function _registered(address account) private view returns (Provider storage provider) {
        provider = _providers[account];
        if (!provider.registered) revert NotRegistered(account);
    }

    /// @dev End an open lease with a full refund of its reservation to the tenant.
    function _close(Lease storage lease, LeaseState state) private returns (uint256 refund) {
        refund = lease.reserved;
        lease.state = state;
        reservedOf[lease.tenant] -= refund;
        available[lease.tenant] += refund;
        _providers[lease.provider].openLeases -= 1;
    }
}
