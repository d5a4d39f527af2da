// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {ILeaseEscrow} from "../src/ILeaseEscrow.sol";
import {EscrowTestBase} from "./EscrowTestBase.sol";

/// @notice Who may call what (every role allowed and refused), and what works while paused.
contract LeaseEscrowAccessTest is EscrowTestBase {
    bytes32 internal constant RESULT = keccak256("result");

    /// @dev Everyone but the holder of `role` (and the admin holds only DEFAULT_ADMIN_ROLE).
    function _outsiders(bytes32 role) internal view returns (address[] memory out) {
        address[6] memory all = [admin, operator, arbiter, guardian, tenant, stranger];
        address holder = role == OPERATOR ? operator : role == ARBITER ? arbiter : role == GUARDIAN ? guardian : admin;
        out = new address[](5);
        uint256 n;
        for (uint256 i; i < all.length; ++i) {
            if (all[i] != holder) out[n++] = all[i];
        }
    }

    // ------------------------------------------------------------------ OPERATOR_ROLE

    function test_operatorFunctions_refuseEveryoneElse() public {
        _openDefault(1);
        address[] memory others = _outsiders(OPERATOR);
        for (uint256 i; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(_unauthorized(others[i], OPERATOR));
            escrow.openLease(2, 2, tenant, provider, RATE, MAX_DURATION);
            vm.prank(others[i]);
            vm.expectRevert(_unauthorized(others[i], OPERATOR));
            escrow.settleLease(1, 1, RESULT);
            vm.prank(others[i]);
            vm.expectRevert(_unauthorized(others[i], OPERATOR));
            escrow.releaseLease(1);
        }
        assertTrue(_state(1) == ILeaseEscrow.LeaseState.Open, "untouched");
    }

    function test_operatorFunctions_allowTheOperator() public {
        _openDefault(1); // opened by the operator
        _openDefault(2);
        vm.startPrank(operator);
        escrow.settleLease(1, 1, RESULT);
        escrow.releaseLease(2);
        vm.stopPrank();
        assertTrue(_state(1) == ILeaseEscrow.LeaseState.Settled, "settled");
        assertTrue(_state(2) == ILeaseEscrow.LeaseState.Released, "released");
    }

    function test_operatorRole_canBeGrantedAndRevoked() public {
        _openDefault(1);
        address second = makeAddr("secondOperator");
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IAccessControl.RoleGranted(OPERATOR, second, admin);
        vm.prank(admin);
        escrow.grantRole(OPERATOR, second);
        vm.prank(second);
        escrow.releaseLease(1);

        _openDefault(2);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IAccessControl.RoleRevoked(OPERATOR, second, admin);
        vm.prank(admin);
        escrow.revokeRole(OPERATOR, second);
        vm.prank(second);
        vm.expectRevert(_unauthorized(second, OPERATOR));
        escrow.releaseLease(2);
    }

    function test_operatorRole_canBeRenouncedOnlyByItsHolder() public {
        vm.prank(operator);
        vm.expectRevert(IAccessControl.AccessControlBadConfirmation.selector);
        escrow.renounceRole(OPERATOR, stranger);
        vm.prank(operator);
        escrow.renounceRole(OPERATOR, operator);
        assertFalse(escrow.hasRole(OPERATOR, operator), "renounced");
    }

    // ------------------------------------------------------------------ ARBITER_ROLE

    function test_slash_refusesEveryoneButTheArbiter() public {
        _openDefault(1);
        address[] memory others = _outsiders(ARBITER);
        for (uint256 i; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(_unauthorized(others[i], ARBITER));
            escrow.slash(1, 1, RESULT);
        }
        vm.prank(arbiter);
        escrow.slash(1, 1, RESULT);
        assertTrue(_state(1) == ILeaseEscrow.LeaseState.Slashed, "the arbiter slashes");
    }

    // ------------------------------------------------------------------ GUARDIAN_ROLE

    function test_pauseAndUnpause_refuseEveryoneButTheGuardian() public {
        address[] memory others = _outsiders(GUARDIAN);
        for (uint256 i; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(_unauthorized(others[i], GUARDIAN));
            escrow.pause();
        }
        _pause();
        for (uint256 i; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(_unauthorized(others[i], GUARDIAN));
            escrow.unpause();
        }
        assertTrue(escrow.paused(), "still paused");
    }

    function test_pauseAndUnpause_emitAndRefuseRepeats() public {
        vm.expectEmit(true, true, true, true, address(escrow));
        emit Pausable.Paused(guardian);
        _pause();
        assertTrue(escrow.paused(), "paused");
        vm.prank(guardian);
        vm.expectRevert(_enforcedPause());
        escrow.pause();

        vm.expectEmit(true, true, true, true, address(escrow));
        emit Pausable.Unpaused(guardian);
        vm.prank(guardian);
        escrow.unpause();
        assertFalse(escrow.paused(), "unpaused");
        vm.prank(guardian);
        vm.expectRevert(Pausable.ExpectedPause.selector);
        escrow.unpause();
    }

    // ------------------------------------------------------------------ DEFAULT_ADMIN_ROLE

    function test_setTreasury_onlyTheAdmin() public {
        address[] memory others = _outsiders(ADMIN);
        for (uint256 i; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(_unauthorized(others[i], ADMIN));
            escrow.setTreasury(stranger);
        }
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.TreasurySet(tenant2);
        vm.prank(admin);
        escrow.setTreasury(tenant2);
        assertEq(escrow.treasury(), tenant2, "set");
    }

    function test_setTreasury_revertsOnZero() public {
        vm.prank(admin);
        vm.expectRevert(ILeaseEscrow.ZeroAddress.selector);
        escrow.setTreasury(address(0));
    }

    function test_grantAndRevoke_onlyTheAdmin() public {
        bytes32[4] memory roles = [OPERATOR, ARBITER, GUARDIAN, ADMIN];
        address[] memory others = _outsiders(ADMIN);
        for (uint256 r; r < roles.length; ++r) {
            for (uint256 i; i < others.length; ++i) {
                vm.prank(others[i]);
                vm.expectRevert(_unauthorized(others[i], ADMIN));
                escrow.grantRole(roles[r], others[i]);
                vm.prank(others[i]);
                vm.expectRevert(_unauthorized(others[i], ADMIN));
                escrow.revokeRole(roles[r], operator);
            }
        }
        assertFalse(escrow.hasRole(ADMIN, stranger), "no self-promotion");
        assertTrue(escrow.hasRole(OPERATOR, operator), "no demotion by outsiders");
    }

    function test_adminCanHandOver() public {
        vm.startPrank(admin);
        escrow.grantRole(ADMIN, tenant2);
        escrow.renounceRole(ADMIN, admin);
        vm.stopPrank();
        vm.prank(admin);
        vm.expectRevert(_unauthorized(admin, ADMIN));
        escrow.setTreasury(admin);
        vm.prank(tenant2);
        escrow.setTreasury(tenant2);
        assertEq(escrow.treasury(), tenant2, "the new admin sets it");
    }

    function test_rolesAreDistinct() public view {
        assertFalse(escrow.hasRole(OPERATOR, admin), "the admin is not an operator");
        assertFalse(escrow.hasRole(ARBITER, operator), "the operator is not an arbiter");
        assertFalse(escrow.hasRole(GUARDIAN, arbiter), "the arbiter is not a guardian");
        assertFalse(escrow.hasRole(ADMIN, guardian), "the guardian is not an admin");
        assertTrue(escrow.supportsInterface(type(IAccessControl).interfaceId), "IAccessControl");
    }
}

contract LeaseEscrowPausedTest is EscrowTestBase {
    bytes32 internal constant RESULT = keccak256("result");

    uint64 internal deadline;

    function setUp() public override {
        super.setUp();
        _register(provider2, MIN_STAKE);
        vm.prank(provider2);
        escrow.startUnbonding();
        vm.warp(block.timestamp + UNBONDING_DELAY); // provider2 could complete its unbonding
        deadline = _openDefault(1); // two open leases
        _openDefault(2);
        _deposit(tenant2, 100);
        _mintApprove(tenant, 1_000);
        _mintApprove(provider, 1_000);
        _mintApprove(stranger, MIN_STAKE);
        _pause();
    }

    function test_paused_refusesDepositsStakesAndLeases() public {
        vm.prank(tenant);
        vm.expectRevert(_enforcedPause());
        escrow.deposit(1);
        vm.prank(stranger);
        vm.expectRevert(_enforcedPause());
        escrow.registerProvider(MIN_STAKE);
        vm.prank(provider);
        vm.expectRevert(_enforcedPause());
        escrow.addStake(1);
        vm.prank(provider2);
        vm.expectRevert(_enforcedPause());
        escrow.completeUnbonding();
        vm.startPrank(operator);
        vm.expectRevert(_enforcedPause());
        escrow.openLease(3, 3, tenant, provider, RATE, MAX_DURATION);
        vm.expectRevert(_enforcedPause());
        escrow.settleLease(1, 1, RESULT);
        vm.expectRevert(_enforcedPause());
        escrow.releaseLease(1);
        vm.stopPrank();
        vm.prank(arbiter);
        vm.expectRevert(_enforcedPause());
        escrow.slash(1, 1, RESULT);
    }

    function test_paused_keepsEveryExitOpen() public {
        vm.prank(tenant2);
        escrow.withdraw(100);
        assertEq(token.balanceOf(tenant2), 100, "withdraw works");

        _cap(tenant, 1);
        assertEq(escrow.leaseCap(tenant), 1, "setLeaseCap works");

        vm.warp(uint256(deadline) + 1);
        vm.prank(tenant);
        escrow.reclaimLease(1);
        assertTrue(_state(1) == ILeaseEscrow.LeaseState.Reclaimed, "reclaimLease works");

        vm.prank(provider);
        escrow.startUnbonding();
        assertGt(uint256(escrow.getProvider(provider).unbondingAt), 0, "startUnbonding works");

        vm.prank(admin);
        escrow.setTreasury(stranger);
        assertEq(escrow.treasury(), stranger, "the admin can still move the treasury");
        assertEq(escrow.quote(RATE, 1 hours), RATE, "views work");
        _assertSolvent();
    }

    function test_unpause_restoresEverything() public {
        vm.prank(guardian);
        escrow.unpause();
        vm.prank(operator);
        escrow.settleLease(1, 1 hours, RESULT);
        vm.prank(arbiter);
        escrow.slash(2, 1, RESULT);
        vm.prank(tenant);
        escrow.deposit(1_000);
        vm.prank(provider2);
        escrow.completeUnbonding();
        assertEq(escrow.available(provider2), MIN_STAKE, "unbonded");
        _assertSolvent();
    }
}
