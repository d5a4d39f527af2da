// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ILeaseEscrow} from "../../src/ILeaseEscrow.sol";
import {LeaseEscrow} from "../../src/LeaseEscrow.sol";
import {MarketToken} from "../../src/MarketToken.sol";
import {StdInvariant} from "../utils/StdInvariant.sol";
import {Test} from "../utils/Test.sol";
import {console} from "../utils/console.sol";
import {EscrowHandler} from "./EscrowHandler.sol";

/// @notice The escrow's ledger rules, checked after every call of a random sequence of escrow
/// actions (EscrowHandler). `test_handlerExercisesEveryAction` proves the handler really opens,
/// settles, releases, reclaims and slashes leases; `afterInvariant` requires every fuzzed run to
/// open and close leases.
contract LeaseEscrowInvariantTest is Test, StdInvariant {
    EscrowHandler internal handler;
    LeaseEscrow internal escrow;
    MarketToken internal token;

    function setUp() public {
        handler = new EscrowHandler();
        escrow = handler.escrow();
        token = handler.token();
        targetContract(address(handler));
        targetSelector(FuzzSelector(address(handler), _actions()));
    }

    function _actions() internal pure returns (bytes4[] memory selectors) {
        selectors = new bytes4[](18);
        selectors[0] = EscrowHandler.deposit.selector;
        selectors[1] = EscrowHandler.withdraw.selector;
        selectors[2] = EscrowHandler.setLeaseCap.selector;
        selectors[3] = EscrowHandler.reclaimLease.selector;
        selectors[4] = EscrowHandler.registerProvider.selector;
        selectors[5] = EscrowHandler.addStake.selector;
        selectors[6] = EscrowHandler.startUnbonding.selector;
        selectors[7] = EscrowHandler.completeUnbonding.selector;
        selectors[8] = EscrowHandler.openLease.selector;
        selectors[9] = EscrowHandler.settleLease.selector;
        selectors[10] = EscrowHandler.releaseLease.selector;
        selectors[11] = EscrowHandler.slash.selector;
        selectors[12] = EscrowHandler.togglePause.selector;
        selectors[13] = EscrowHandler.setTreasury.selector;
        selectors[14] = EscrowHandler.warp.selector;
        selectors[15] = EscrowHandler.unauthorizedCall.selector;
        selectors[16] = EscrowHandler.closeClosedLease.selector;
        selectors[17] = EscrowHandler.settleLease.selector; // settling is the main path: twice the weight
    }

    // ================================================================== invariants

    /// @notice token.balanceOf(escrow) == sum(available) + sum(reservedOf) + sum(stakes), and the
    /// accounts that are not in the game hold nothing in the escrow.
    function invariant_solvency() public view {
        _checkSolvency();
    }

    /// @notice Every account's available, reserved and stake equal the handler's independent model,
    /// and the ledger's sums equal the ghost totals.
    function invariant_ledgerMatchesModel() public view {
        _checkModel();
    }

    /// @notice Tokens in == tokens out + tokens held; every token minted is in a wallet or the escrow.
    function invariant_conservation() public view {
        _checkConservation();
    }

    /// @notice Nobody withdrew more than was ever credited to it, and every wallet is exactly what
    /// it was minted, less what it paid in, plus what it withdrew.
    function invariant_noOverWithdrawal() public view {
        _checkWithdrawals();
    }

    /// @notice A lease closes at most once, its state matches the model, and no lease was settled
    /// after its deadline or reclaimed at or before it.
    function invariant_leaseLifecycle() public view {
        _checkLeases();
    }

    /// @notice Fees are exactly floor(payment x feeBps / 1e4) and only fees reach the treasuries.
    function invariant_feeSplit() public view {
        _checkFees();
    }

    /// @notice No call without the role ever succeeded, no blocked call succeeded while paused,
    /// and the roles are where setUp put them.
    function invariant_accessControlAndPause() public view {
        _checkAccess();
    }

    /// @notice Everything the handler counted as broken (the sum of its violation counters).
    function invariant_noViolations() public view {
        _checkViolations();
    }

    /// @notice forge calls this after each run: a full run must have opened and closed leases.
    /// (Short sequences are forge replaying a shrunk counterexample: their own failure is the news.)
    function afterInvariant() public view {
        if (handler.nCalls() < 32) return;
        assertGt(handler.nOpen(), 0, "the run opened no lease");
        assertGt(handler.nSettle() + handler.nRelease() + handler.nReclaim() + handler.nSlash(), 0, "no lease closed");
    }

    /// @notice The handler's counters (forge test -vv prints them).
    function invariant_callSummary() public view {
        _logCounters();
    }

    // ================================================================== the proof that it works

    /// @dev 600 handler calls chosen by a fixed pseudo-random sequence over every action: all
    /// invariants hold along the way (every 10 calls), and every lease path and every refusal was taken at least once.
    function test_handlerExercisesEveryAction() public {
        for (uint256 i; i < 600; ++i) {
            this.step(i); // each step in its own call frame: memory does not pile up
            if (i % 10 == 9) this.checkAll();
        }
        this.checkAll();
        _logCounters();
        // every path taken
        assertGt(handler.nDeposit(), 0, "deposit");
        assertGt(handler.nWithdraw(), 0, "withdraw");
        assertGt(handler.nSetCap(), 0, "setLeaseCap");
        assertGt(handler.nRegister(), 0, "registerProvider");
        assertGt(handler.nAddStake(), 0, "addStake");
        assertGt(handler.nStartUnbonding(), 0, "startUnbonding");
        assertGt(handler.nCompleteUnbonding(), 0, "completeUnbonding");
        assertGt(handler.nOpen(), 0, "openLease");
        assertGt(handler.nSettle(), 0, "settleLease");
        assertGt(handler.nSettleAtDeadline(), 0, "settleLease exactly at the deadline");
        assertGt(handler.nRelease(), 0, "releaseLease");
        assertGt(handler.nReclaim(), 0, "reclaimLease");
        assertGt(handler.nSlash(), 0, "slash");
        assertGt(handler.nPause(), 0, "pause");
        assertGt(handler.nUnpause(), 0, "unpause");
        assertGt(handler.nSetTreasury(), 0, "setTreasury");
        assertGt(handler.nWarp(), 0, "warp");
        // every refusal seen
        assertGt(handler.nUnauthorizedRefused(), 0, "unauthorized calls refused");
        assertGt(handler.nPausedRefused(), 0, "paused calls refused");
        assertGt(handler.nClosedRefused(), 0, "closed leases refused");
        assertGt(handler.nExpiredRefused(), 0, "late settlements refused");
        assertGt(handler.nEarlyReclaimRefused(), 0, "early reclaims refused");
        assertGt(handler.nNotTenantRefused(), 0, "reclaims by others refused");
        assertGt(handler.nOverdrawRefused(), 0, "overdrafts refused");
        assertGt(handler.nEarlyUnbondRefused(), 0, "early unbonding refused");
        assertGt(handler.nOtherRefused(), 0, "other refusals");
        // the handler is tuned to valid inputs: few calls find nothing to do
        assertLt(handler.nSkipped(), 30, "at most 5 % of the calls are no-ops");
    }

    /// @dev One handler call chosen by a fixed pseudo-random function of `i`.
    function step(uint256 i) external {
        bytes4[] memory actions = _actions();
        bytes32 r = keccak256(abi.encode(i));
        bytes4 action = actions[uint256(r) % actions.length];
        // four pseudo-random words: handler actions take up to four and ignore the rest
        (bool ok,) = address(handler).call(
            abi.encodePacked(
                action,
                keccak256(abi.encode(r, 1)),
                keccak256(abi.encode(r, 2)),
                keccak256(abi.encode(r, 3)),
                keccak256(abi.encode(r, 4))
            )
        );
        assertTrue(ok, "a handler action reverted");
    }

    // ================================================================== checks

    function checkAll() external view {
        _checkSolvency();
        _checkModel();
        _checkConservation();
        _checkWithdrawals();
        _checkLeases();
        _checkFees();
        _checkAccess();
        _checkViolations();
    }

    function _checkSolvency() internal view {
        address[] memory accounts = handler.accounts();
        uint256 sum;
        for (uint256 i; i < accounts.length; ++i) {
            address a = accounts[i];
            sum += escrow.available(a) + escrow.reservedOf(a) + escrow.getProvider(a).stake;
        }
        assertEq(token.balanceOf(address(escrow)), sum, "solvency: balance == available + reserved + stakes");
        address[6] memory outsiders = [
            handler.stranger(), handler.admin(), handler.operator(), handler.arbiter(), handler.guardian(), address(handler)
        ];
        for (uint256 i; i < outsiders.length; ++i) {
            assertEq(escrow.available(outsiders[i]), 0, "outsiders hold nothing");
        }
    }

    function _checkModel() internal view {
        address[] memory accounts = handler.accounts();
        uint256 reserved;
        uint256 stakes;
        for (uint256 i; i < accounts.length; ++i) {
            address a = accounts[i];
            ILeaseEscrow.Provider memory p = escrow.getProvider(a);
            assertEq(escrow.available(a), handler.expAvailable(a), "available == model");
            assertEq(escrow.reservedOf(a), handler.expReserved(a), "reservedOf == model");
            assertEq(p.stake, handler.expStake(a), "stake == model");
            assertEq(uint256(p.openLeases), handler.expOpenLeases(a), "openLeases == model");
            assertEq(p.registered, handler.expRegistered(a), "registered == model");
            assertEq(uint256(p.unbondingAt), uint256(handler.expUnbondingAt(a)), "unbondingAt == model");
            reserved += escrow.reservedOf(a);
            stakes += p.stake;
        }
        assertEq(reserved, handler.ghostOpenReserved(), "sum reservedOf == sum of open reservations");
        assertEq(stakes, handler.ghostStakes(), "sum of stakes == ghost stakes");
        assertEq(escrow.paused(), handler.expPaused(), "paused == model");
    }

    function _checkConservation() internal view {
        uint256 held = token.balanceOf(address(escrow));
        assertEq(handler.ghostIn(), handler.ghostOut() + held, "tokens in == tokens out + held");
        assertEq(token.totalSupply(), handler.ghostMinted(), "supply == minted");
        address[] memory accounts = handler.accounts();
        uint256 wallets = token.balanceOf(handler.stranger()); // the stranger is funded for wrong calls
        for (uint256 i; i < accounts.length; ++i) {
            wallets += token.balanceOf(accounts[i]);
        }
        assertEq(wallets + held, token.totalSupply(), "every token is in a wallet or the escrow");
    }

    function _checkWithdrawals() internal view {
        address[] memory accounts = handler.accounts();
        for (uint256 i; i < accounts.length; ++i) {
            address a = accounts[i];
            assertLe(handler.ghostWithdrawn(a), handler.ghostCredited(a), "withdrawn <= ever credited");
            assertEq(
                token.balanceOf(a),
                handler.ghostMintedTo(a) - handler.ghostPaidIn(a) + handler.ghostWithdrawn(a),
                "wallet == minted - paid in + withdrawn"
            );
        }
    }

    function _checkLeases() internal view {
        uint256 next = handler.nextLeaseId();
        uint256 open;
        for (uint256 id = 1; id < next; ++id) {
            EscrowHandler.LeaseInfo memory expected = handler.leaseInfo(id);
            ILeaseEscrow.Lease memory actual = escrow.getLease(id);
            assertLe(handler.closes(id), 1, "a lease closes at most once");
            assertEq(uint256(actual.state), uint256(expected.state), "lease state == model");
            if (expected.state == EscrowHandler.State.None) continue; // an id whose open failed
            assertEq(uint256(actual.deadline), uint256(expected.deadline), "deadline == model");
            assertEq(actual.reserved, expected.reserved, "reserved == model");
            if (actual.state == ILeaseEscrow.LeaseState.Open) open++;
            else assertEq(handler.closes(id), 1, "a closed lease closed exactly once");
        }
        assertEq(open, handler.openLeaseCount(), "open leases == model");
        assertEq(handler.vClosedTwice(), 0, "no lease closed twice");
        assertEq(handler.vSettledLate(), 0, "no settlement after the deadline");
        assertEq(handler.vReclaimedEarly(), 0, "no reclaim at or before the deadline");
        assertEq(handler.vNotTenant(), 0, "only the tenant reclaims");
    }

    function _checkFees() internal view {
        assertEq(handler.vSplit(), 0, "every settlement split as documented");
        assertEq(handler.ghostFees(), handler.ghostExpectedFees(), "fees == sum floor(payment x feeBps / 1e4)");
        address[] memory accounts = handler.accounts();
        uint256 treasuries;
        for (uint256 i = 6; i < accounts.length; ++i) {
            treasuries += handler.ghostCredited(accounts[i]);
        }
        assertEq(treasuries, handler.ghostFees(), "the treasuries get the fees and nothing else");
        assertLe(handler.ghostFees() * 10_000, handler.ghostPayments() * handler.FEE_BPS(), "fee <= feeBps of payments");
        assertEq(escrow.treasury(), handler.treasury(), "treasury == model");
    }

    function _checkAccess() internal view {
        assertEq(handler.vUnauthorized(), 0, "no unauthorized call succeeded");
        assertEq(handler.vPaused(), 0, "no blocked call succeeded while paused");
        bytes32[4] memory roles =
            [escrow.DEFAULT_ADMIN_ROLE(), escrow.OPERATOR_ROLE(), escrow.ARBITER_ROLE(), escrow.GUARDIAN_ROLE()];
        address[4] memory holders = [handler.admin(), handler.operator(), handler.arbiter(), handler.guardian()];
        address[] memory accounts = handler.accounts();
        for (uint256 r; r < roles.length; ++r) {
            assertTrue(escrow.hasRole(roles[r], holders[r]), "each role still with its holder");
            assertFalse(escrow.hasRole(roles[r], handler.stranger()), "the stranger holds no role");
            assertFalse(escrow.hasRole(roles[r], address(handler)), "the handler holds no role");
            for (uint256 i; i < accounts.length; ++i) {
                assertFalse(escrow.hasRole(roles[r], accounts[i]), "tenants, providers, treasuries hold no role");
            }
        }
    }

    function _checkViolations() internal view {
        assertEq(handler.vWrongError(), 0, "every refusal for the expected reason");
        assertEq(handler.vUnexpectedFailure(), 0, "every valid call succeeded");
        assertEq(handler.vOverdraw(), 0, "no overdraft");
        assertEq(handler.vPayout(), 0, "withdrawals pay what they debit");
        assertEq(handler.vEarlyUnbond(), 0, "no early unbonding");
        assertEq(handler.vUnexpectedSuccess(), 0, "no call that must fail succeeded");
        assertEq(handler.violations(), 0, "no violation at all");
    }

    function _logCounters() internal view {
        console.log("counter calls", handler.nCalls());
        console.log("counter opened", handler.nOpen());
        console.log("counter settled", handler.nSettle());
        console.log("counter settledAtDeadline", handler.nSettleAtDeadline());
        console.log("counter released", handler.nRelease());
        console.log("counter reclaimed", handler.nReclaim());
        console.log("counter slashed", handler.nSlash());
        console.log("counter deposits", handler.nDeposit());
        console.log("counter withdrawals", handler.nWithdraw());
        console.log("counter capsSet", handler.nSetCap());
        console.log("counter registered", handler.nRegister());
        console.log("counter stakesAdded", handler.nAddStake());
        console.log("counter unbondingsStarted", handler.nStartUnbonding());
        console.log("counter unbondingsCompleted", handler.nCompleteUnbonding());
        console.log("counter pauses", handler.nPause());
        console.log("counter unpauses", handler.nUnpause());
        console.log("counter treasurySets", handler.nSetTreasury());
        console.log("counter warps", handler.nWarp());
        console.log("counter unauthorizedRefused", handler.nUnauthorizedRefused());
        console.log("counter pausedRefused", handler.nPausedRefused());
        console.log("counter closedLeaseRefused", handler.nClosedRefused());
        console.log("counter lateSettleRefused", handler.nExpiredRefused());
        console.log("counter earlyReclaimRefused", handler.nEarlyReclaimRefused());
        console.log("counter notTenantRefused", handler.nNotTenantRefused());
        console.log("counter overdraftRefused", handler.nOverdrawRefused());
        console.log("counter earlyUnbondRefused", handler.nEarlyUnbondRefused());
        console.log("counter busyUnbondRefused", handler.nBusyUnbondRefused());
        console.log("counter otherRefused", handler.nOtherRefused());
        console.log("counter skipped", handler.nSkipped());
    }
}
