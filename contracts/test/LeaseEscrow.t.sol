// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

import {ILeaseEscrow} from "../src/ILeaseEscrow.sol";
import {LeaseEscrow} from "../src/LeaseEscrow.sol";
import {EscrowTestBase} from "./EscrowTestBase.sol";

/// @notice Deployment, the tenant's functions, the provider's functions and quote.
/// Leases: LeaseEscrowLeases.t.sol; roles and pause: LeaseEscrowAccess.t.sol; hostile tokens:
/// LeaseEscrowTokens.t.sol; fuzzing: LeaseEscrowFuzz.t.sol; invariants: invariant/.
contract LeaseEscrowDeployTest is EscrowTestBase {
    function test_constructor_setsEverything() public view {
        assertEq(address(escrow.token()), address(token), "token");
        assertEq(escrow.feeBps(), FEE_BPS, "feeBps");
        assertEq(escrow.minStake(), MIN_STAKE, "minStake");
        assertEq(uint256(escrow.unbondingDelay()), UNBONDING_DELAY, "unbondingDelay");
        assertEq(uint256(escrow.settleWindow()), SETTLE_WINDOW, "settleWindow");
        assertEq(escrow.treasury(), treasury, "treasury");
        assertEq(escrow.MAX_FEE_BPS(), 3_000, "MAX_FEE_BPS");
        assertTrue(escrow.hasRole(ADMIN, admin), "admin holds DEFAULT_ADMIN_ROLE");
        assertFalse(escrow.hasRole(ADMIN, address(this)), "the deployer holds nothing");
        assertEq(escrow.OPERATOR_ROLE(), keccak256("OPERATOR_ROLE"), "OPERATOR_ROLE");
        assertEq(escrow.ARBITER_ROLE(), keccak256("ARBITER_ROLE"), "ARBITER_ROLE");
        assertEq(escrow.GUARDIAN_ROLE(), keccak256("GUARDIAN_ROLE"), "GUARDIAN_ROLE");
        assertEq(escrow.getRoleAdmin(OPERATOR), ADMIN, "admin administers the operator role");
        assertFalse(escrow.paused(), "starts unpaused");
    }

    function test_constructor_emitsTreasurySetAndRoleGranted() public {
        vm.expectEmit(true, true, true, true);
        emit IAccessControl.RoleGranted(ADMIN, admin, address(this));
        vm.expectEmit(true, true, true, true);
        emit ILeaseEscrow.TreasurySet(treasury);
        new LeaseEscrow(IERC20(address(token)), admin, treasury, FEE_BPS, MIN_STAKE, UNBONDING_DELAY, SETTLE_WINDOW);
    }

    function test_constructor_revertsOnZeroToken() public {
        vm.expectRevert(ILeaseEscrow.ZeroAddress.selector);
        new LeaseEscrow(IERC20(address(0)), admin, treasury, FEE_BPS, MIN_STAKE, UNBONDING_DELAY, SETTLE_WINDOW);
    }

    function test_constructor_revertsOnZeroAdmin() public {
        vm.expectRevert(ILeaseEscrow.ZeroAddress.selector);
        new LeaseEscrow(IERC20(address(token)), address(0), treasury, FEE_BPS, MIN_STAKE, UNBONDING_DELAY, SETTLE_WINDOW);
    }

    function test_constructor_revertsOnZeroTreasury() public {
        vm.expectRevert(ILeaseEscrow.ZeroAddress.selector);
        new LeaseEscrow(IERC20(address(token)), admin, address(0), FEE_BPS, MIN_STAKE, UNBONDING_DELAY, SETTLE_WINDOW);
    }

    function test_constructor_revertsOnFeeAboveMax() public {
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.FeeTooHigh.selector, 3_001, 3_000));
        new LeaseEscrow(IERC20(address(token)), admin, treasury, 3_001, MIN_STAKE, UNBONDING_DELAY, SETTLE_WINDOW);
    }

    function test_constructor_acceptsMaxFeeAndZeroFee() public {
        LeaseEscrow atMax =
            new LeaseEscrow(IERC20(address(token)), admin, treasury, 3_000, MIN_STAKE, UNBONDING_DELAY, SETTLE_WINDOW);
        assertEq(atMax.feeBps(), 3_000, "MAX_FEE_BPS is allowed");
        LeaseEscrow free = new LeaseEscrow(IERC20(address(token)), admin, treasury, 0, MIN_STAKE, 0, 0);
        assertEq(free.feeBps(), 0, "no fee is allowed");
    }

    function test_constructor_revertsOnZeroMinStake() public {
        vm.expectRevert(ILeaseEscrow.ZeroAmount.selector);
        new LeaseEscrow(IERC20(address(token)), admin, treasury, FEE_BPS, 0, UNBONDING_DELAY, SETTLE_WINDOW);
    }

    // ------------------------------------------------------------------ quote

    function test_quote_roundsUpToTheWei() public view {
        assertEq(escrow.quote(RATE, MAX_DURATION), RESERVED, "2 hours at RATE");
        assertEq(escrow.quote(3_600, 1), 1, "exact");
        assertEq(escrow.quote(3_601, 1), 2, "a fraction of a wei rounds up");
        assertEq(escrow.quote(1, 1), 1, "1/3600 wei rounds up to 1");
        assertEq(escrow.quote(1, 3_600), 1, "1 wei an hour for an hour");
        assertEq(escrow.quote(RATE, 0), 0, "no time costs nothing");
        assertEq(escrow.quote(0, 1 days), 0, "no rate costs nothing");
    }

    function test_quote_nearUint256Max() public view {
        uint256 max = type(uint256).max;
        assertEq(escrow.quote(max, 3_600), max, "an hour at the largest rate");
        assertEq(escrow.quote(max, 1), max / 3_600 + 1, "a second at the largest rate, rounded up");
        assertEq(escrow.quote(max / 2, 7_200), max - 1, "mulDiv keeps the 512-bit product exact");
        assertEq(escrow.quote(max, 15), max / 240 + 1, "15 s at the largest rate, rounded up (max is odd)");
    }

    function test_quote_revertsWhenTheCostOverflows() public {
        vm.expectRevert(_panic(0x11));
        escrow.quote(type(uint256).max, 3_601);
    }
}

contract LeaseEscrowTenantTest is EscrowTestBase {
    // ------------------------------------------------------------------ deposit

    function test_deposit_creditsAndEmits() public {
        _mintApprove(tenant, 500e6);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.Deposited(tenant, 200e6);
        vm.prank(tenant);
        escrow.deposit(200e6);
        assertEq(escrow.available(tenant), 200e6, "credited");
        assertEq(token.balanceOf(address(escrow)), 200e6, "escrow holds it");
        assertEq(token.balanceOf(tenant), 300e6, "wallet debited");
        vm.prank(tenant);
        escrow.deposit(1);
        assertEq(escrow.available(tenant), 200e6 + 1, "deposits add up");
        _assertSolvent();
    }

    function test_deposit_revertsOnZero() public {
        _mintApprove(tenant, 1);
        vm.prank(tenant);
        vm.expectRevert(ILeaseEscrow.ZeroAmount.selector);
        escrow.deposit(0);
    }

    function test_deposit_revertsWithoutAllowance() public {
        token.mint(tenant, 10);
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(escrow), 0, 10)
        );
        escrow.deposit(10);
    }

    function test_deposit_revertsWithoutFunds() public {
        _mintApprove(tenant, 5);
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientBalance.selector, tenant, 5, 6));
        escrow.deposit(6);
    }

    // ------------------------------------------------------------------ withdraw

    function test_withdraw_paysOutAndEmits() public {
        _deposit(tenant, 100e6);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.Withdrawn(tenant, 40e6);
        vm.prank(tenant);
        escrow.withdraw(40e6);
        assertEq(escrow.available(tenant), 60e6, "debited");
        assertEq(token.balanceOf(tenant), 40e6, "paid to the caller");
        vm.prank(tenant);
        escrow.withdraw(60e6);
        assertEq(escrow.available(tenant), 0, "everything can come out");
        assertEq(token.balanceOf(address(escrow)), 0, "nothing left behind");
    }

    function test_withdraw_revertsOnZero() public {
        _deposit(tenant, 1);
        vm.prank(tenant);
        vm.expectRevert(ILeaseEscrow.ZeroAmount.selector);
        escrow.withdraw(0);
    }

    function test_withdraw_revertsAboveAvailable() public {
        _deposit(tenant, 100);
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.InsufficientBalance.selector, 100, 101));
        escrow.withdraw(101);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.InsufficientBalance.selector, 0, 1));
        escrow.withdraw(1);
    }

    function test_withdraw_cannotTouchTheReservation() public {
        _openDefault(1);
        assertEq(escrow.available(tenant), 0, "all of it is reserved");
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.InsufficientBalance.selector, 0, 1));
        escrow.withdraw(1);
    }

    // ------------------------------------------------------------------ setLeaseCap

    function test_setLeaseCap_setsAndEmits() public {
        assertEq(escrow.leaseCap(tenant), 0, "zero until set");
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.LeaseCapSet(tenant, 5e6);
        _cap(tenant, 5e6);
        assertEq(escrow.leaseCap(tenant), 5e6, "set");
        _cap(tenant, type(uint256).max);
        assertEq(escrow.leaseCap(tenant), type(uint256).max, "unlimited");
        _cap(tenant, 0);
        assertEq(escrow.leaseCap(tenant), 0, "back to nothing");
        assertEq(escrow.leaseCap(tenant2), 0, "per tenant");
    }

    // ------------------------------------------------------------------ reclaimLease

    function test_reclaim_revertsAtTheDeadlineAndWorksOneSecondAfter() public {
        uint64 deadline = _openDefault(1);
        vm.warp(deadline);
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.DeadlineNotReached.selector, 1, deadline));
        escrow.reclaimLease(1);

        vm.warp(uint256(deadline) + 1);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.LeaseReclaimed(1, 101, RESERVED);
        vm.prank(tenant);
        escrow.reclaimLease(1);
        assertTrue(_state(1) == ILeaseEscrow.LeaseState.Reclaimed, "Reclaimed");
        assertEq(escrow.available(tenant), RESERVED, "the whole reservation back");
        assertEq(escrow.reservedOf(tenant), 0, "nothing reserved");
        assertEq(uint256(escrow.getProvider(provider).openLeases), 0, "provider's lease closed");
        _assertSolvent();
    }

    function test_reclaim_revertsRightAfterOpening() public {
        uint64 deadline = _openDefault(1);
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.DeadlineNotReached.selector, 1, deadline));
        escrow.reclaimLease(1);
    }

    function test_reclaim_revertsForAnyoneButTheTenant() public {
        uint64 deadline = _openDefault(1);
        vm.warp(uint256(deadline) + 1);
        address[4] memory others = [provider, operator, admin, stranger];
        for (uint256 i; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotTenant.selector, 1, others[i]));
            escrow.reclaimLease(1);
        }
    }

    function test_reclaim_revertsOnUnknownAndClosedLeases() public {
        vm.prank(tenant);
        vm.expectRevert(_notOpen(7, ILeaseEscrow.LeaseState.None));
        escrow.reclaimLease(7);

        uint64 deadline = _openDefault(1);
        vm.warp(uint256(deadline) + 1);
        vm.prank(tenant);
        escrow.reclaimLease(1);
        vm.prank(tenant);
        vm.expectRevert(_notOpen(1, ILeaseEscrow.LeaseState.Reclaimed));
        escrow.reclaimLease(1);
    }
}

contract LeaseEscrowProviderTest is EscrowTestBase {
    // ------------------------------------------------------------------ registerProvider

    function test_register_recordsStakeAndEmits() public {
        _mintApprove(provider, MIN_STAKE + 5);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.ProviderRegistered(provider, MIN_STAKE + 5);
        vm.prank(provider);
        escrow.registerProvider(MIN_STAKE + 5);
        ILeaseEscrow.Provider memory p = escrow.getProvider(provider);
        assertTrue(p.registered, "registered");
        assertEq(p.stake, MIN_STAKE + 5, "stake");
        assertEq(uint256(p.unbondingAt), 0, "bonded");
        assertEq(uint256(p.openLeases), 0, "no lease");
        assertEq(escrow.available(provider), 0, "stake is not available");
        _assertSolvent();
    }

    function test_register_acceptsExactlyMinStake() public {
        _register(provider, MIN_STAKE);
        assertEq(escrow.getProvider(provider).stake, MIN_STAKE, "minStake is enough");
    }

    function test_register_revertsBelowMinStake() public {
        _mintApprove(provider, MIN_STAKE);
        vm.startPrank(provider);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.StakeTooLow.selector, MIN_STAKE - 1, MIN_STAKE));
        escrow.registerProvider(MIN_STAKE - 1);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.StakeTooLow.selector, 0, MIN_STAKE));
        escrow.registerProvider(0);
        vm.stopPrank();
    }

    function test_register_revertsWhenAlreadyRegistered() public {
        _register(provider, MIN_STAKE);
        _mintApprove(provider, MIN_STAKE);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.AlreadyRegistered.selector, provider));
        escrow.registerProvider(MIN_STAKE);
    }

    // ------------------------------------------------------------------ addStake

    function test_addStake_addsAndEmits() public {
        _register(provider, MIN_STAKE);
        _mintApprove(provider, 7);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.StakeAdded(provider, 7);
        vm.prank(provider);
        escrow.addStake(7);
        assertEq(escrow.getProvider(provider).stake, MIN_STAKE + 7, "added");
        _assertSolvent();
    }

    function test_addStake_revertsWhenNotRegistered() public {
        _mintApprove(stranger, 7);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotRegistered.selector, stranger));
        escrow.addStake(7);
    }

    function test_addStake_revertsOnZero() public {
        _register(provider, MIN_STAKE);
        vm.prank(provider);
        vm.expectRevert(ILeaseEscrow.ZeroAmount.selector);
        escrow.addStake(0);
    }

    // ------------------------------------------------------------------ unbonding

    function test_startUnbonding_setsTheTimeAndEmits() public {
        _register(provider, MIN_STAKE);
        uint64 at = uint64(block.timestamp) + UNBONDING_DELAY;
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.UnbondingStarted(provider, at);
        vm.prank(provider);
        escrow.startUnbonding();
        assertEq(uint256(escrow.getProvider(provider).unbondingAt), at, "unbondingAt");
    }

    function test_startUnbonding_revertsWhenNotRegistered() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotRegistered.selector, stranger));
        escrow.startUnbonding();
    }

    function test_startUnbonding_revertsWhenAlreadyUnbonding() public {
        _register(provider, MIN_STAKE);
        vm.prank(provider);
        escrow.startUnbonding();
        uint64 at = uint64(block.timestamp) + UNBONDING_DELAY;
        vm.warp(block.timestamp + 1 days);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.AlreadyUnbonding.selector, provider, at));
        escrow.startUnbonding();
    }

    function test_completeUnbonding_boundaries() public {
        _register(provider, MIN_STAKE + 1);
        vm.prank(provider);
        escrow.startUnbonding();
        uint64 at = uint64(block.timestamp) + UNBONDING_DELAY;

        vm.warp(uint256(at) - 1);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.UnbondingNotDone.selector, provider, at));
        escrow.completeUnbonding();

        vm.warp(at); // exactly at unbondingAt: done
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.StakeUnbonded(provider, MIN_STAKE + 1);
        vm.prank(provider);
        escrow.completeUnbonding();

        ILeaseEscrow.Provider memory p = escrow.getProvider(provider);
        assertFalse(p.registered, "deregistered");
        assertEq(p.stake, 0, "stake moved");
        assertEq(uint256(p.unbondingAt), 0, "record cleared");
        assertEq(escrow.available(provider), MIN_STAKE + 1, "stake is now available");
        vm.prank(provider);
        escrow.withdraw(MIN_STAKE + 1);
        assertEq(token.balanceOf(provider), MIN_STAKE + 1, "and comes out");
        _assertSolvent();
    }

    function test_completeUnbonding_zeroDelayIsDoneAtOnce() public {
        escrow = new LeaseEscrow(IERC20(address(token)), admin, treasury, FEE_BPS, MIN_STAKE, 0, SETTLE_WINDOW);
        _register(provider, MIN_STAKE);
        vm.startPrank(provider);
        escrow.startUnbonding();
        escrow.completeUnbonding();
        vm.stopPrank();
        assertEq(escrow.available(provider), MIN_STAKE, "unbonded in the same block");
    }

    function test_completeUnbonding_revertsWhenNotRegistered() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotRegistered.selector, stranger));
        escrow.completeUnbonding();
    }

    function test_completeUnbonding_revertsWhenNotUnbonding() public {
        _register(provider, MIN_STAKE);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotUnbonding.selector, provider));
        escrow.completeUnbonding();
    }

    function test_completeUnbonding_revertsWithOpenLeasesUntilTheyClose() public {
        _openDefault(1);
        _deposit(tenant, RESERVED);
        vm.prank(operator);
        escrow.openLease(2, 102, tenant, provider, RATE, MAX_DURATION);
        vm.prank(provider);
        escrow.startUnbonding(); // allowed with open leases: it only stops new ones
        vm.warp(block.timestamp + UNBONDING_DELAY);

        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.OpenLeases.selector, provider, uint32(2)));
        escrow.completeUnbonding();

        vm.startPrank(operator);
        escrow.releaseLease(1);
        vm.stopPrank();
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.OpenLeases.selector, provider, uint32(1)));
        escrow.completeUnbonding();

        vm.prank(arbiter);
        escrow.slash(2, 10, bytes32("bad"));
        vm.prank(provider);
        escrow.completeUnbonding();
        assertEq(escrow.available(provider), MIN_STAKE - 10, "what the slash left");
        _assertSolvent();
    }

    function test_provider_canRegisterAgainAfterUnbonding() public {
        _register(provider, MIN_STAKE);
        vm.prank(provider);
        escrow.startUnbonding();
        vm.warp(block.timestamp + UNBONDING_DELAY);
        vm.prank(provider);
        escrow.completeUnbonding();
        _register(provider, MIN_STAKE * 2);
        ILeaseEscrow.Provider memory p = escrow.getProvider(provider);
        assertTrue(p.registered && p.unbondingAt == 0, "bonded again");
        assertEq(p.stake, MIN_STAKE * 2, "new stake");
        assertEq(escrow.available(provider), MIN_STAKE, "old stake still withdrawable");
        _assertSolvent();
    }
}
