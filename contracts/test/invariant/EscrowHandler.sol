// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {ILeaseEscrow} from "../../src/ILeaseEscrow.sol";
import {LeaseEscrow} from "../../src/LeaseEscrow.sol";
import {MarketToken} from "../../src/MarketToken.sol";
import {Test} from "../utils/Test.sol";

/// @notice What the invariant fuzzer calls: every escrow action by the right account with inputs
/// bounded to valid ranges (so most calls succeed), plus deliberate wrong calls (unauthorized
/// callers, closed leases, early reclaims, late settlements, paused calls) that must fail.
///
/// It keeps an independent model of the ledger (`exp*`: what every account should hold, computed
/// here from the documented rules, not read back from the escrow) and ghost totals of what went in
/// and out. Handler functions never revert on purpose: a broken rule is recorded in a `v*`
/// violation counter that the invariants require to stay zero (forge ignores handler reverts).
contract EscrowHandler is Test {
    uint256 public constant FEE_BPS = 250;
    uint256 public constant MIN_STAKE = 1e18;
    uint64 public constant UNBONDING_DELAY = 1 days;
    uint64 public constant SETTLE_WINDOW = 1 hours;
    uint256 internal constant MAX_RATE = 1e21; // wei an hour
    uint64 internal constant MAX_LEASE = 12 hours;
    uint256 internal constant MAX_DEPOSIT = 1e22;

    enum State {
        None,
        Open,
        Settled,
        Released,
        Reclaimed,
        Slashed
    }

    struct LeaseInfo {
        address tenant;
        address provider;
        uint256 rate;
        uint256 reserved;
        uint64 maxDuration;
        uint64 deadline;
        State state;
    }

    MarketToken public immutable token;
    LeaseEscrow public immutable escrow;
    address public immutable admin;
    address public immutable operator;
    address public immutable arbiter;
    address public immutable guardian;
    address public immutable stranger;
    address public treasury; // the current one
    address[3] internal _tenants;
    address[3] internal _providers;
    address[2] internal _treasuries;
    address[] internal _accounts; // every account that can hold a balance in the escrow

    // ------------------------------------------------------------------ the model
    mapping(address account => uint256) public expAvailable;
    mapping(address tenant => uint256) public expReserved;
    mapping(address provider => uint256) public expStake;
    mapping(address provider => uint256) public expOpenLeases;
    mapping(address provider => bool) public expRegistered;
    mapping(address provider => uint64) public expUnbondingAt;
    mapping(uint256 leaseId => LeaseInfo) internal _leases;
    uint256[] internal _openIds;
    uint256[] internal _closedIds;
    uint256 public nextLeaseId = 1;
    mapping(uint256 leaseId => uint256) public closes; // successful closing calls per lease
    bool public expPaused;
    uint256 public time; // block.timestamp as the handler last set it

    // ------------------------------------------------------------------ ghosts
    uint256 public ghostMinted; // every token that exists
    uint256 public ghostIn; // tokens that entered the escrow
    uint256 public ghostOut; // tokens that left it
    uint256 public ghostOpenReserved; // sum of the open leases' reservations
    uint256 public ghostStakes; // sum of provider stakes
    uint256 public ghostFees; // fees credited (read from the escrow's balance changes)
    uint256 public ghostExpectedFees; // sum of floor(payment x feeBps / 1e4), computed here
    uint256 public ghostPayments; // gross payments to providers
    uint256 public ghostSlashed;
    mapping(address account => uint256) public ghostCredited; // everything ever made withdrawable to it
    mapping(address account => uint256) public ghostWithdrawn;
    mapping(address account => uint256) public ghostMintedTo;
    mapping(address account => uint256) public ghostPaidIn; // wallet -> escrow

    // ------------------------------------------------------------------ counters (successes)
    uint256 public nCalls; // handler actions called
    uint256 public nDeposit;
    uint256 public nWithdraw;
    uint256 public nSetCap;
    uint256 public nRegister;
    uint256 public nAddStake;
    uint256 public nStartUnbonding;
    uint256 public nCompleteUnbonding;
    uint256 public nOpen;
    uint256 public nSettle;
    uint256 public nSettleAtDeadline;
    uint256 public nRelease;
    uint256 public nReclaim;
    uint256 public nSlash;
    uint256 public nPause;
    uint256 public nUnpause;
    uint256 public nSetTreasury;
    uint256 public nWarp;
    // ... and of the refusals that must happen
    uint256 public nUnauthorizedRefused;
    uint256 public nPausedRefused;
    uint256 public nClosedRefused;
    uint256 public nExpiredRefused; // settle after the deadline
    uint256 public nEarlyReclaimRefused; // reclaim at or before the deadline
    uint256 public nNotTenantRefused;
    uint256 public nOverdrawRefused;
    uint256 public nEarlyUnbondRefused;
    uint256 public nBusyUnbondRefused;
    uint256 public nOtherRefused; // registering twice, unbonding twice, unpausing unpaused, ...
    uint256 public nSkipped; // nothing valid to do with those inputs

    // ------------------------------------------------------------------ violations (must stay 0)
    uint256 public vUnauthorized; // a call without the role succeeded
    uint256 public vPaused; // a blocked call succeeded while paused
    uint256 public vClosedTwice; // a closed lease was closed again
    uint256 public vSettledLate; // settled after its deadline
    uint256 public vReclaimedEarly; // reclaimed at or before its deadline
    uint256 public vNotTenant; // reclaimed by someone else
    uint256 public vOverdraw; // withdrew more than available
    uint256 public vSplit; // a settlement's credits differ from the rule
    uint256 public vWrongError; // a refusal for another reason than the expected one
    uint256 public vUnexpectedFailure; // a valid call failed
    uint256 public vEarlyUnbond; // unbonded before its time or with open leases
    uint256 public vPayout; // a withdrawal paid another amount than debited
    uint256 public vUnexpectedSuccess; // a call that must fail succeeded

    constructor() {
        admin = makeAddr("admin");
        operator = makeAddr("operator");
        arbiter = makeAddr("arbiter");
        guardian = makeAddr("guardian");
        stranger = makeAddr("stranger");
        _treasuries = [makeAddr("treasury"), makeAddr("treasury2")];
        _tenants = [makeAddr("tenant0"), makeAddr("tenant1"), makeAddr("tenant2")];
        _providers = [makeAddr("provider0"), makeAddr("provider1"), makeAddr("provider2")];
        treasury = _treasuries[0];
        for (uint256 i; i < 3; ++i) _accounts.push(_tenants[i]);
        for (uint256 i; i < 3; ++i) _accounts.push(_providers[i]);
        _accounts.push(_treasuries[0]);
        _accounts.push(_treasuries[1]);

        time = 1_700_000_000;
        vm.warp(time);
        token = new MarketToken(address(this));
        escrow = new LeaseEscrow(
            IERC20(address(token)), admin, treasury, FEE_BPS, MIN_STAKE, UNBONDING_DELAY, SETTLE_WINDOW
        );
        vm.startPrank(admin);
        escrow.grantRole(escrow.OPERATOR_ROLE(), operator);
        escrow.grantRole(escrow.ARBITER_ROLE(), arbiter);
        escrow.grantRole(escrow.GUARDIAN_ROLE(), guardian);
        vm.stopPrank();
        for (uint256 i; i < _accounts.length; ++i) {
            vm.prank(_accounts[i]);
            token.approve(address(escrow), type(uint256).max);
        }
    }

    /// @dev Every action runs at the handler's clock (forge may not carry warps between calls).
    modifier clocked() {
        vm.warp(time);
        nCalls++;
        _;
    }

    // ================================================================== actions: tenants

    function deposit(uint256 who, uint256 amount, uint256 seed) external clocked {
        address tenant = _tenants[who % 3];
        amount = bound(amount, 1, MAX_DEPOSIT);
        if (_pausedProbe(seed, tenant, abi.encodeCall(LeaseEscrow.deposit, (amount)))) return;
        _deposit(tenant, amount);
    }

    function withdraw(uint256 who, uint256 amount, uint256 seed) external clocked {
        address account;
        for (uint256 i; i < _accounts.length; ++i) {
            address candidate = _accounts[(who % _accounts.length + i) % _accounts.length];
            if (expAvailable[candidate] > 0) {
                account = candidate;
                break;
            }
        }
        if (account == address(0)) return _skip();
        uint256 balance = expAvailable[account];
        if (seed % 8 == 0) {
            // one wei more than available must be refused
            vm.prank(account);
            try escrow.withdraw(balance + 1) {
                vOverdraw++;
            } catch (bytes memory err) {
                _expect(err, abi.encodeWithSelector(ILeaseEscrow.InsufficientBalance.selector, balance, balance + 1));
                nOverdrawRefused++;
            }
        }
        amount = bound(amount, 1, balance);
        uint256 walletBefore = token.balanceOf(account);
        vm.prank(account);
        try escrow.withdraw(amount) {
            // works while paused too
            if (token.balanceOf(account) != walletBefore + amount) vPayout++;
            expAvailable[account] -= amount;
            ghostOut += amount;
            ghostWithdrawn[account] += amount;
            nWithdraw++;
        } catch {
            vUnexpectedFailure++;
        }
    }

    function setLeaseCap(uint256 who, uint256 cap) external clocked {
        address tenant = _tenants[who % 3];
        cap = bound(cap, 0, MAX_RATE * MAX_LEASE);
        vm.prank(tenant);
        try escrow.setLeaseCap(cap) {
            nSetCap++;
        } catch {
            vUnexpectedFailure++;
        }
    }

    function reclaimLease(uint256 pick, uint256 when, uint256 seed) external clocked {
        uint256 leaseId = _anyOpenLease(pick);
        if (leaseId == 0) return _skip();
        LeaseInfo storage lease = _leases[leaseId];
        // at the deadline: refused
        if (when % 4 == 0 && time <= lease.deadline) {
            _warpTo(lease.deadline);
            vm.prank(lease.tenant);
            try escrow.reclaimLease(leaseId) {
                vReclaimedEarly++;
                _closed(leaseId, State.Reclaimed);
                return;
            } catch (bytes memory err) {
                _expect(
                    err, abi.encodeWithSelector(ILeaseEscrow.DeadlineNotReached.selector, leaseId, lease.deadline)
                );
                nEarlyReclaimRefused++;
            }
        }
        // one second after (or a little later): the tenant, and only the tenant, takes it back
        uint256 target = uint256(lease.deadline) + 1 + (when % 3 == 0 ? 0 : bound(when, 0, 2 hours));
        if (target > time) _warpTo(target);
        if (seed % 4 == 0) {
            address other = seed % 8 == 0 ? stranger : lease.provider;
            vm.prank(other);
            try escrow.reclaimLease(leaseId) {
                vNotTenant++;
                _closed(leaseId, State.Reclaimed);
                return;
            } catch (bytes memory err) {
                _expect(err, abi.encodeWithSelector(ILeaseEscrow.NotTenant.selector, leaseId, other));
                nNotTenantRefused++;
            }
        }
        vm.prank(lease.tenant);
        try escrow.reclaimLease(leaseId) {
            // works while paused too
            if (time <= lease.deadline) vReclaimedEarly++;
            _refundClose(leaseId, State.Reclaimed);
            nReclaim++;
        } catch {
            vUnexpectedFailure++;
        }
    }

    // ================================================================== actions: providers

    function registerProvider(uint256 who, uint256 stake, uint256 seed) external clocked {
        address provider = _findProvider(who, false);
        if (provider == address(0)) {
            // everyone is registered: registering again is refused
            provider = _providers[who % 3];
            _fund(provider, MIN_STAKE);
            return _refuse(
                provider,
                abi.encodeCall(LeaseEscrow.registerProvider, (MIN_STAKE)),
                expPaused
                    ? abi.encodeWithSelector(Pausable.EnforcedPause.selector)
                    : abi.encodeWithSelector(ILeaseEscrow.AlreadyRegistered.selector, provider)
            );
        }
        stake = bound(stake, MIN_STAKE, 5 * MIN_STAKE);
        if (_pausedProbe(seed, provider, abi.encodeCall(LeaseEscrow.registerProvider, (stake)))) return;
        if (seed % 8 == 1) {
            _fund(provider, MIN_STAKE - 1);
            vm.prank(provider);
            try escrow.registerProvider(MIN_STAKE - 1) {
                vUnexpectedFailure++; // accepted a stake below the minimum: the model is now off
            } catch (bytes memory err) {
                _expect(err, abi.encodeWithSelector(ILeaseEscrow.StakeTooLow.selector, MIN_STAKE - 1, MIN_STAKE));
            }
        }
        _register(provider, stake);
    }

    function addStake(uint256 who, uint256 amount, uint256 seed) external clocked {
        address provider = _findProvider(who, true);
        if (provider == address(0)) {
            _fund(stranger, 1);
            return _refuse(
                stranger,
                abi.encodeCall(LeaseEscrow.addStake, (1)),
                expPaused
                    ? abi.encodeWithSelector(Pausable.EnforcedPause.selector)
                    : abi.encodeWithSelector(ILeaseEscrow.NotRegistered.selector, stranger)
            );
        }
        amount = bound(amount, 1, 2 * MIN_STAKE);
        if (_pausedProbe(seed, provider, abi.encodeCall(LeaseEscrow.addStake, (amount)))) return;
        _addStake(provider, amount);
    }

    function startUnbonding(uint256 who) external clocked {
        // keep at least one provider able to take leases, or the lease actions would starve
        if (_eligibleCount() < 2) {
            for (uint256 i; i < 3; ++i) {
                address p = _providers[(who % 3 + i) % 3];
                if (expUnbondingAt[p] != 0) {
                    return _refuse(
                        p,
                        abi.encodeCall(LeaseEscrow.startUnbonding, ()),
                        abi.encodeWithSelector(ILeaseEscrow.AlreadyUnbonding.selector, p, expUnbondingAt[p])
                    );
                }
            }
            return _refuse(
                stranger,
                abi.encodeCall(LeaseEscrow.startUnbonding, ()),
                abi.encodeWithSelector(ILeaseEscrow.NotRegistered.selector, stranger)
            );
        }
        address provider;
        for (uint256 i; i < 3; ++i) {
            address candidate = _providers[(who % 3 + i) % 3];
            if (expRegistered[candidate] && expUnbondingAt[candidate] == 0) {
                provider = candidate;
                break;
            }
        }
        if (provider == address(0)) return _skip();
        vm.prank(provider);
        try escrow.startUnbonding() {
            // works while paused too
            expUnbondingAt[provider] = uint64(time) + UNBONDING_DELAY;
            nStartUnbonding++;
        } catch {
            vUnexpectedFailure++;
        }
    }

    function completeUnbonding(uint256 who, uint256 when, uint256 seed) external clocked {
        address provider;
        for (uint256 i; i < 3; ++i) {
            address candidate = _providers[(who % 3 + i) % 3];
            if (expRegistered[candidate] && expUnbondingAt[candidate] != 0) {
                provider = candidate;
                break;
            }
        }
        if (provider == address(0)) {
            // nobody is unbonding: completing is refused
            address p = _findProvider(who, true);
            if (p == address(0)) p = stranger;
            bytes memory expected = expPaused
                ? abi.encodeWithSelector(Pausable.EnforcedPause.selector)
                : p == stranger
                    ? abi.encodeWithSelector(ILeaseEscrow.NotRegistered.selector, p)
                    : abi.encodeWithSelector(ILeaseEscrow.NotUnbonding.selector, p);
            return _refuse(p, abi.encodeCall(LeaseEscrow.completeUnbonding, ()), expected);
        }
        if (_pausedProbe(seed, provider, abi.encodeCall(LeaseEscrow.completeUnbonding, ()))) return;
        uint64 at = expUnbondingAt[provider];
        if (time < at && when % 4 == 0) {
            vm.prank(provider);
            try escrow.completeUnbonding() {
                vEarlyUnbond++;
            } catch (bytes memory err) {
                _expect(err, abi.encodeWithSelector(ILeaseEscrow.UnbondingNotDone.selector, provider, at));
                nEarlyUnbondRefused++;
            }
            return;
        }
        if (time < at) _warpTo(at);
        vm.prank(provider);
        try escrow.completeUnbonding() {
            if (expOpenLeases[provider] != 0 || time < at) vEarlyUnbond++;
            uint256 stake = expStake[provider];
            expAvailable[provider] += stake;
            ghostCredited[provider] += stake;
            ghostStakes -= stake;
            expStake[provider] = 0;
            expRegistered[provider] = false;
            expUnbondingAt[provider] = 0;
            nCompleteUnbonding++;
        } catch (bytes memory err) {
            if (expOpenLeases[provider] == 0) return _unexpected();
            _expect(
                err,
                abi.encodeWithSelector(ILeaseEscrow.OpenLeases.selector, provider, uint32(expOpenLeases[provider]))
            );
            nBusyUnbondRefused++;
        }
    }

    // ================================================================== actions: operator, arbiter

    function openLease(uint256 who, uint256 rate, uint256 maxDuration, uint256 seed) external clocked {
        if (_pausedProbe(seed, operator, abi.encodeCall(LeaseEscrow.openLease, (nextLeaseId, 1, _tenants[0], _providers[0], 1, 1)))) {
            return;
        }
        _openLease(who, rate, maxDuration);
    }

    function settleLease(uint256 pick, uint256 used, uint256 when, uint256 seed) external clocked {
        if (_pausedProbe(seed, operator, abi.encodeCall(LeaseEscrow.settleLease, (1, 1, bytes32(0))))) return;
        uint256 leaseId = _liveLease(pick, seed);
        if (leaseId == 0) return _skip();
        LeaseInfo storage lease = _leases[leaseId];
        // when: mostly inside the window, sometimes exactly at the deadline, sometimes one second late
        uint256 mode = when % 8;
        if (mode == 0) _warpTo(lease.deadline);
        else if (mode == 1) _warpTo(uint256(lease.deadline) + 1);
        else if (time <= lease.deadline) _warpTo(bound(when, time, lease.deadline));
        uint64 usedSeconds = uint64(bound(used, 0, 2 * uint256(lease.maxDuration)));
        _settle(leaseId, usedSeconds);
    }

    function releaseLease(uint256 pick, uint256 seed) external clocked {
        if (_pausedProbe(seed, operator, abi.encodeCall(LeaseEscrow.releaseLease, (1)))) return;
        uint256 leaseId = _anyOpenLease(pick);
        if (leaseId == 0) return _skip();
        vm.prank(operator);
        try escrow.releaseLease(leaseId) {
            _refundClose(leaseId, State.Released);
            nRelease++;
        } catch {
            vUnexpectedFailure++;
        }
    }

    function slash(uint256 pick, uint256 amount, uint256 seed) external clocked {
        if (_pausedProbe(seed, arbiter, abi.encodeCall(LeaseEscrow.slash, (1, 1, bytes32(0))))) return;
        uint256 leaseId = _anyOpenLease(pick);
        if (leaseId == 0) return _skip();
        LeaseInfo storage lease = _leases[leaseId];
        amount = bound(amount, 0, 2 * MIN_STAKE); // sometimes more than the stake
        vm.prank(arbiter);
        try escrow.slash(leaseId, amount, keccak256(abi.encode(leaseId))) {
            uint256 stake = expStake[lease.provider];
            uint256 slashed = amount < stake ? amount : stake;
            expStake[lease.provider] = stake - slashed;
            ghostStakes -= slashed;
            ghostSlashed += slashed;
            expAvailable[lease.tenant] += slashed;
            ghostCredited[lease.tenant] += slashed;
            _refundClose(leaseId, State.Slashed);
            nSlash++;
        } catch {
            vUnexpectedFailure++;
        }
    }

    // ================================================================== actions: guardian, admin, time

    function togglePause(uint256 seed) external clocked {
        if (expPaused) {
            vm.prank(guardian);
            try escrow.unpause() {
                expPaused = false;
                nUnpause++;
            } catch {
                vUnexpectedFailure++;
            }
        } else if (seed % 2 == 0) {
            vm.prank(guardian);
            try escrow.pause() {
                expPaused = true;
                nPause++;
            } catch {
                vUnexpectedFailure++;
            }
        } else {
            _refuse(guardian, abi.encodeCall(LeaseEscrow.unpause, ()), abi.encodeWithSelector(Pausable.ExpectedPause.selector));
        }
    }

    function setTreasury(uint256 which) external clocked {
        address next = _treasuries[which % 2];
        vm.prank(admin);
        try escrow.setTreasury(next) {
            treasury = next;
            nSetTreasury++;
        } catch {
            vUnexpectedFailure++;
        }
    }

    function warp(uint256 seconds_) external clocked {
        _warpTo(time + bound(seconds_, 1, 6 hours));
        nWarp++;
    }

    // ================================================================== actions: wrong calls

    /// @notice Someone without the role calls a privileged function: always refused.
    function unauthorizedCall(uint256 who, uint256 which) external clocked {
        address[5] memory outsiders = [stranger, _tenants[who % 3], _providers[who % 3], treasury, address(this)];
        address caller = outsiders[who % 5];
        uint256 leaseId = _openIds.length == 0 ? 1 : _openIds[which % _openIds.length];
        bytes memory call;
        bytes32 role;
        uint256 kind = which % 9;
        if (kind == 0) {
            call = abi.encodeCall(LeaseEscrow.openLease, (nextLeaseId, 1, _tenants[0], _providers[0], 1, 1));
            role = escrow.OPERATOR_ROLE();
            if (which % 2 == 0) caller = arbiter; // another role does not help
        } else if (kind == 1) {
            call = abi.encodeCall(LeaseEscrow.settleLease, (leaseId, 0, bytes32(0)));
            role = escrow.OPERATOR_ROLE();
            if (which % 2 == 0) caller = guardian;
        } else if (kind == 2) {
            call = abi.encodeCall(LeaseEscrow.releaseLease, (leaseId));
            role = escrow.OPERATOR_ROLE();
            if (which % 2 == 0) caller = admin;
        } else if (kind == 3) {
            call = abi.encodeCall(LeaseEscrow.slash, (leaseId, type(uint256).max, bytes32(0)));
            role = escrow.ARBITER_ROLE();
            if (which % 2 == 0) caller = operator;
        } else if (kind == 4) {
            call = abi.encodeCall(LeaseEscrow.pause, ());
            role = escrow.GUARDIAN_ROLE();
            if (which % 2 == 0) caller = admin;
        } else if (kind == 5) {
            call = abi.encodeCall(LeaseEscrow.unpause, ());
            role = escrow.GUARDIAN_ROLE();
            if (which % 2 == 0) caller = operator;
        } else if (kind == 6) {
            call = abi.encodeCall(LeaseEscrow.setTreasury, (caller));
            role = escrow.DEFAULT_ADMIN_ROLE();
            if (which % 2 == 0) caller = guardian;
            call = abi.encodeCall(LeaseEscrow.setTreasury, (caller));
        } else if (kind == 7) {
            call = abi.encodeCall(IAccessControl.grantRole, (escrow.OPERATOR_ROLE(), caller));
            role = escrow.DEFAULT_ADMIN_ROLE();
        } else {
            call = abi.encodeCall(IAccessControl.revokeRole, (escrow.OPERATOR_ROLE(), operator));
            role = escrow.DEFAULT_ADMIN_ROLE();
            if (which % 2 == 0) caller = arbiter;
        }
        vm.prank(caller);
        (bool ok, bytes memory err) = address(escrow).call(call);
        if (ok) {
            vUnauthorized++;
            return;
        }
        _expect(err, abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, caller, role));
        nUnauthorizedRefused++;
    }

    /// @notice Any closing call on a lease that is already closed: always refused.
    function closeClosedLease(uint256 pick, uint256 which) external clocked {
        if (_closedIds.length == 0) return _skip();
        uint256 leaseId = _closedIds[pick % _closedIds.length];
        LeaseInfo storage lease = _leases[leaseId];
        bytes memory call;
        address caller;
        uint256 kind = which % 4;
        if (kind == 0) (call, caller) = (abi.encodeCall(LeaseEscrow.settleLease, (leaseId, 1, bytes32(0))), operator);
        else if (kind == 1) (call, caller) = (abi.encodeCall(LeaseEscrow.releaseLease, (leaseId)), operator);
        else if (kind == 2) (call, caller) = (abi.encodeCall(LeaseEscrow.reclaimLease, (leaseId)), lease.tenant);
        else (call, caller) = (abi.encodeCall(LeaseEscrow.slash, (leaseId, 1, bytes32(0))), arbiter);
        vm.prank(caller);
        (bool ok, bytes memory err) = address(escrow).call(call);
        if (ok) {
            vClosedTwice++;
            closes[leaseId]++;
            return;
        }
        if (kind != 2 && expPaused) {
            _expect(err, abi.encodeWithSelector(Pausable.EnforcedPause.selector));
        } else {
            _expect(err, abi.encodeWithSelector(ILeaseEscrow.LeaseNotOpen.selector, leaseId, uint8(lease.state)));
        }
        nClosedRefused++;
    }

    // ================================================================== internals: actions done right

    function _fund(address who, uint256 amount) internal {
        token.mint(who, amount);
        ghostMinted += amount;
        ghostMintedTo[who] += amount;
    }

    function _deposit(address tenant, uint256 amount) internal returns (bool ok) {
        _fund(tenant, amount);
        vm.prank(tenant);
        try escrow.deposit(amount) {
            expAvailable[tenant] += amount;
            ghostCredited[tenant] += amount;
            ghostIn += amount;
            ghostPaidIn[tenant] += amount;
            nDeposit++;
            return true;
        } catch {
            vUnexpectedFailure++;
        }
    }

    function _register(address provider, uint256 stake) internal returns (bool ok) {
        _fund(provider, stake);
        vm.prank(provider);
        try escrow.registerProvider(stake) {
            expRegistered[provider] = true;
            expStake[provider] = stake;
            ghostStakes += stake;
            ghostIn += stake;
            ghostPaidIn[provider] += stake;
            nRegister++;
            return true;
        } catch {
            vUnexpectedFailure++;
        }
    }

    function _addStake(address provider, uint256 amount) internal returns (bool ok) {
        _fund(provider, amount);
        vm.prank(provider);
        try escrow.addStake(amount) {
            expStake[provider] += amount;
            ghostStakes += amount;
            ghostIn += amount;
            ghostPaidIn[provider] += amount;
            nAddStake++;
            return true;
        } catch {
            vUnexpectedFailure++;
        }
    }

    /// @dev Opens a lease for a tenant and an eligible provider, funding and capping the tenant
    /// and registering or topping up a provider as needed. Returns 0 when it cannot.
    function _openLease(uint256 who, uint256 rate, uint256 maxDuration) internal returns (uint256 leaseId) {
        if (expPaused) {
            _skip(); // a helper call from an action that works while paused: nothing can open now
            return 0;
        }
        address provider = _eligibleProvider(who);
        if (provider == address(0)) {
            _skip();
            return 0;
        }
        address tenant = _tenants[who % 3];
        rate = bound(rate, 1, MAX_RATE);
        uint64 duration = uint64(bound(maxDuration, 1 minutes, MAX_LEASE));
        uint256 reserved = (rate * duration + 3_599) / 3_600; // ceil, computed here
        if (expAvailable[tenant] < reserved && !_deposit(tenant, reserved - expAvailable[tenant])) return 0;
        if (escrow.leaseCap(tenant) < reserved) {
            vm.prank(tenant);
            escrow.setLeaseCap(reserved + (rate % 2 == 0 ? 0 : rate)); // sometimes exactly the reservation
        }
        leaseId = nextLeaseId++;
        vm.prank(operator);
        try escrow.openLease(leaseId, leaseId * 7, tenant, provider, rate, duration) {
            uint64 deadline = uint64(time) + duration + SETTLE_WINDOW;
            _leases[leaseId] = LeaseInfo(tenant, provider, rate, reserved, duration, deadline, State.Open);
            _openIds.push(leaseId);
            expAvailable[tenant] -= reserved;
            expReserved[tenant] += reserved;
            ghostOpenReserved += reserved;
            expOpenLeases[provider]++;
            nOpen++;
        } catch {
            vUnexpectedFailure++;
            return 0;
        }
    }

    function _settle(uint256 leaseId, uint64 usedSeconds) internal {
        LeaseInfo storage lease = _leases[leaseId];
        address tenant = lease.tenant;
        address provider = lease.provider;
        address feeTo = treasury;
        // min(rate x used rounded up to the wei, reserved), as documented
        uint256 payment = (lease.rate * usedSeconds + 3_599) / 3_600;
        if (payment > lease.reserved) payment = lease.reserved;
        uint256 fee = payment * FEE_BPS / 10_000;
        uint256[3] memory before = [escrow.available(tenant), escrow.available(provider), escrow.available(feeTo)];
        bool late = time > lease.deadline;
        vm.prank(operator);
        try escrow.settleLease(leaseId, usedSeconds, keccak256(abi.encode(leaseId, usedSeconds))) {
            if (late) vSettledLate++;
            uint256 gotFee = escrow.available(feeTo) - before[2];
            uint256 gotProvider = escrow.available(provider) - before[1];
            uint256 gotTenant = escrow.available(tenant) - before[0];
            if (
                gotFee != fee || gotProvider != payment - fee || gotTenant != lease.reserved - payment
                    || gotFee + gotProvider + gotTenant != lease.reserved
            ) vSplit++;
            ghostFees += gotFee;
            ghostExpectedFees += fee;
            ghostPayments += payment;
            _close(leaseId, State.Settled);
            expAvailable[tenant] += lease.reserved - payment;
            ghostCredited[tenant] += lease.reserved - payment;
            expAvailable[provider] += payment - fee;
            ghostCredited[provider] += payment - fee;
            expAvailable[feeTo] += fee;
            ghostCredited[feeTo] += fee;
            nSettle++;
            if (time == lease.deadline) nSettleAtDeadline++;
        } catch (bytes memory err) {
            if (!late) return _unexpected();
            _expect(err, abi.encodeWithSelector(ILeaseEscrow.LeaseExpired.selector, leaseId, lease.deadline));
            nExpiredRefused++;
        }
    }

    /// @dev Bookkeeping of a close that refunds the whole reservation (release, reclaim, slash).
    function _refundClose(uint256 leaseId, State state) internal {
        LeaseInfo storage lease = _leases[leaseId];
        expAvailable[lease.tenant] += lease.reserved;
        ghostCredited[lease.tenant] += lease.reserved;
        _close(leaseId, state);
    }

    function _close(uint256 leaseId, State state) internal {
        LeaseInfo storage lease = _leases[leaseId];
        closes[leaseId]++;
        if (lease.state != State.Open) {
            vClosedTwice++;
            return;
        }
        lease.state = state;
        expReserved[lease.tenant] -= lease.reserved;
        ghostOpenReserved -= lease.reserved;
        expOpenLeases[lease.provider]--;
        for (uint256 i; i < _openIds.length; ++i) {
            if (_openIds[i] == leaseId) {
                _openIds[i] = _openIds[_openIds.length - 1];
                _openIds.pop();
                break;
            }
        }
        _closedIds.push(leaseId);
    }

    /// @dev A lease that closed through a path that must not exist (recorded as a violation).
    function _closed(uint256 leaseId, State state) internal {
        _refundClose(leaseId, state);
    }

    // ================================================================== internals: choosing

    /// @dev Any open lease, or a new one when none is open.
    function _anyOpenLease(uint256 pick) internal returns (uint256) {
        if (_openIds.length == 0) return _openLease(pick, pick >> 8, pick >> 64);
        return _openIds[pick % _openIds.length];
    }

    /// @dev An open lease still inside its settle window, or a new one. Sometimes an expired one,
    /// to see the late settlement refused.
    function _liveLease(uint256 pick, uint256 seed) internal returns (uint256) {
        uint256 n = _openIds.length;
        for (uint256 i; i < n; ++i) {
            uint256 leaseId = _openIds[(pick % n + i) % n];
            if (time <= _leases[leaseId].deadline || seed % 8 == 7) return leaseId;
        }
        return _openLease(pick, pick >> 8, pick >> 64);
    }

    function _eligible(address provider) internal view returns (bool) {
        return expRegistered[provider] && expUnbondingAt[provider] == 0 && expStake[provider] >= MIN_STAKE;
    }

    function _eligibleCount() internal view returns (uint256 n) {
        for (uint256 i; i < 3; ++i) {
            if (_eligible(_providers[i])) n++;
        }
    }

    /// @dev An eligible provider, registering or topping one up if none is; 0 when all are unbonding.
    function _eligibleProvider(uint256 who) internal returns (address) {
        for (uint256 i; i < 3; ++i) {
            address p = _providers[(who % 3 + i) % 3];
            if (_eligible(p)) return p;
        }
        for (uint256 i; i < 3; ++i) {
            address p = _providers[(who % 3 + i) % 3];
            if (!expRegistered[p]) return _register(p, MIN_STAKE) ? p : address(0);
        }
        for (uint256 i; i < 3; ++i) {
            address p = _providers[(who % 3 + i) % 3];
            if (expUnbondingAt[p] == 0) return _addStake(p, MIN_STAKE - expStake[p]) ? p : address(0);
        }
        return address(0);
    }

    function _findProvider(uint256 who, bool registered) internal view returns (address) {
        for (uint256 i; i < 3; ++i) {
            address p = _providers[(who % 3 + i) % 3];
            if (expRegistered[p] == registered) return p;
        }
        return address(0);
    }

    // ================================================================== internals: pause, time, errors

    /// @dev While paused: half the time the guardian unpauses and the action goes ahead; otherwise
    /// the call is made as is and must be refused with EnforcedPause. Returns true when it probed.
    function _pausedProbe(uint256 seed, address caller, bytes memory call) internal returns (bool) {
        if (!expPaused) return false;
        if (seed % 2 == 0) {
            vm.prank(guardian);
            escrow.unpause();
            expPaused = false;
            nUnpause++;
            return false;
        }
        vm.prank(caller);
        (bool ok, bytes memory err) = address(escrow).call(call);
        if (ok) {
            vPaused++;
        } else {
            _expect(err, abi.encodeWithSelector(Pausable.EnforcedPause.selector));
            nPausedRefused++;
        }
        return true;
    }

    function _warpTo(uint256 t) internal {
        if (t <= time) return;
        time = t;
        vm.warp(t);
    }

    function _expect(bytes memory err, bytes memory expected) internal {
        if (keccak256(err) != keccak256(expected)) vWrongError++;
    }

    function _unexpected() internal {
        vUnexpectedFailure++;
    }

    /// @dev A call that must be refused with exactly `expected`.
    function _refuse(address caller, bytes memory call, bytes memory expected) internal {
        vm.prank(caller);
        (bool ok, bytes memory err) = address(escrow).call(call);
        if (ok) {
            vUnexpectedSuccess++;
            return;
        }
        _expect(err, expected);
        nOtherRefused++;
    }

    function _skip() internal {
        nSkipped++;
    }

    // ================================================================== views for the invariants

    function accounts() external view returns (address[] memory) {
        return _accounts;
    }

    function providers() external view returns (address[3] memory) {
        return _providers;
    }

    function tenants() external view returns (address[3] memory) {
        return _tenants;
    }

    function openLeaseCount() external view returns (uint256) {
        return _openIds.length;
    }

    function closedLeaseCount() external view returns (uint256) {
        return _closedIds.length;
    }

    function leaseInfo(uint256 leaseId) external view returns (LeaseInfo memory) {
        return _leases[leaseId];
    }

    function violations() external view returns (uint256) {
        return vUnauthorized + vPaused + vClosedTwice + vSettledLate + vReclaimedEarly + vNotTenant + vOverdraw
            + vSplit + vWrongError + vUnexpectedFailure + vEarlyUnbond + vPayout
            + vUnexpectedSuccess;
    }
}
