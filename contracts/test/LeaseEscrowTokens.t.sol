// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

import {ILeaseEscrow} from "../src/ILeaseEscrow.sol";
import {LeaseEscrow} from "../src/LeaseEscrow.sol";
import {HookAttacker} from "./mocks/HookAttacker.sol";
import {HookToken} from "./mocks/HookToken.sol";
import {ReentrantToken} from "./mocks/ReentrantToken.sol";
import {DishonestToken, FeeOnTransferToken} from "./mocks/QuirkyTokens.sol";
import {Test} from "./utils/Test.sol";

/// @notice The escrow over tokens that fight back: re-entry from the token itself and from a
/// recipient's hook, a token that takes a fee on transfer, and tokens that lie or refuse.
abstract contract HostileTokenBase is Test {
    uint256 internal constant MIN_STAKE = 1_000;
    bytes4 internal constant REENTRANT = bytes4(keccak256("ReentrancyGuardReentrantCall()"));

    address internal admin = address(0xAD);
    address internal treasury = address(0x7EA);
    address internal tenant = address(0x7E4A47);
    address internal provider = address(0x960);

    function _escrowOver(IERC20 token) internal returns (LeaseEscrow) {
        return new LeaseEscrow(token, admin, treasury, 250, MIN_STAKE, 1 days, 1 hours);
    }

    function _encodedReentrancyError() internal pure returns (bytes memory) {
        return abi.encodeWithSelector(REENTRANT);
    }
}

contract ReentrantTokenTest is HostileTokenBase {
    ReentrantToken internal token;
    LeaseEscrow internal escrow;

    function setUp() public {
        token = new ReentrantToken();
        escrow = _escrowOver(IERC20(address(token)));
        token.setEscrow(escrow);
        token.mint(tenant, 1_000);
        vm.prank(tenant);
        token.approve(address(escrow), type(uint256).max);
    }

    function test_depositReentry_reverts() public {
        token.arm(ReentrantToken.Attack.Deposit, 50, false);
        vm.prank(tenant);
        vm.expectRevert(REENTRANT);
        escrow.deposit(100);
        assertEq(escrow.available(tenant), 0, "nothing credited");
        assertEq(escrow.available(address(token)), 0, "nothing credited to the token");
        assertEq(token.balanceOf(address(escrow)), 0, "nothing moved");
    }

    function test_depositReentry_isRefusedAndCreditsOnce() public {
        token.arm(ReentrantToken.Attack.Deposit, 50, true);
        vm.prank(tenant);
        escrow.deposit(100);
        assertTrue(token.attempted(), "the token did re-enter");
        assertEq(token.lastRevert(), _encodedReentrancyError(), "and the guard refused it");
        assertEq(escrow.available(tenant), 100, "credited exactly once");
        assertEq(escrow.available(address(token)), 0, "the re-entry credited nothing");
        assertEq(token.balanceOf(address(escrow)), 100, "solvent");
    }

    function test_registerReentry_reverts() public {
        token.mint(provider, MIN_STAKE);
        vm.prank(provider);
        token.approve(address(escrow), type(uint256).max);
        token.arm(ReentrantToken.Attack.Deposit, 50, false);
        vm.prank(provider);
        vm.expectRevert(REENTRANT);
        escrow.registerProvider(MIN_STAKE);
        assertFalse(escrow.getProvider(provider).registered, "not registered");
    }

    function test_withdrawReentry_reverts() public {
        token.depositAsSelf(100);
        vm.prank(tenant);
        escrow.deposit(100); // someone else's money the attacker would like to take
        token.arm(ReentrantToken.Attack.Withdraw, 100, false);
        vm.expectRevert(REENTRANT);
        token.withdrawAsSelf(100);
        assertEq(escrow.available(address(token)), 100, "still owed");
        assertEq(token.balanceOf(address(escrow)), 200, "nothing left the escrow");
    }

    function test_withdrawReentry_isRefusedAndPaysOnce() public {
        token.depositAsSelf(100);
        vm.prank(tenant);
        escrow.deposit(100);
        token.arm(ReentrantToken.Attack.Withdraw, 100, true);
        token.withdrawAsSelf(100);
        assertTrue(token.attempted(), "the token did re-enter");
        assertEq(token.lastRevert(), _encodedReentrancyError(), "and the guard refused it");
        assertEq(escrow.available(address(token)), 0, "debited once");
        assertEq(token.balanceOf(address(token)), 100, "paid once");
        assertEq(token.balanceOf(address(escrow)), 100, "the tenant's deposit is intact");
        assertEq(escrow.available(tenant), 100, "and still the tenant's");
    }
}

contract HookTokenTest is HostileTokenBase {
    HookToken internal token;
    LeaseEscrow internal escrow;
    HookAttacker internal attacker;

    function setUp() public {
        token = new HookToken();
        escrow = _escrowOver(IERC20(address(token)));
        attacker = new HookAttacker(escrow, token);
        token.mint(address(attacker), 10_000);
        token.mint(tenant, 1_000);
        vm.prank(tenant);
        token.approve(address(escrow), type(uint256).max);
        vm.prank(tenant);
        escrow.deposit(500); // the honest tenant's money
    }

    function _withdrawCall(uint256 amount) internal pure returns (bytes memory) {
        return abi.encodeCall(LeaseEscrow.withdraw, (amount));
    }

    function _depositCall(uint256 amount) internal pure returns (bytes memory) {
        return abi.encodeCall(LeaseEscrow.deposit, (amount));
    }

    function test_receiverReenteringWithdraw_reverts() public {
        attacker.act(_depositCall(100));
        attacker.armOnReceive(_withdrawCall(100), false);
        vm.expectRevert(REENTRANT);
        attacker.act(_withdrawCall(100));
        assertEq(escrow.available(address(attacker)), 100, "still owed, nothing paid");
        assertEq(token.balanceOf(address(escrow)), 600, "nothing left");
    }

    function test_receiverReenteringWithdraw_isRefusedAndPaidOnce() public {
        attacker.act(_depositCall(100));
        uint256 before = token.balanceOf(address(attacker));
        attacker.armOnReceive(_withdrawCall(100), true);
        attacker.act(_withdrawCall(100));
        assertEq(attacker.reentries(), 1, "the receiver did re-enter");
        assertEq(attacker.lastRevert(), _encodedReentrancyError(), "and the guard refused it");
        assertEq(token.balanceOf(address(attacker)) - before, 100, "paid once");
        assertEq(escrow.available(address(attacker)), 0, "debited once");
        assertEq(token.balanceOf(address(escrow)), 500, "the tenant's 500 are intact");
    }

    function test_receiverReenteringDeposit_duringWithdraw_reverts() public {
        attacker.act(_depositCall(100));
        attacker.armOnReceive(_depositCall(100), false);
        vm.expectRevert(REENTRANT);
        attacker.act(_withdrawCall(100));
    }

    function test_senderReenteringDeposit_reverts() public {
        attacker.armOnSend(_depositCall(10), false);
        vm.expectRevert(REENTRANT);
        attacker.act(_depositCall(100));
        assertEq(escrow.available(address(attacker)), 0, "nothing credited");
    }

    function test_senderReenteringDeposit_isRefusedAndCreditsOnce() public {
        attacker.armOnSend(_depositCall(10), true);
        attacker.act(_depositCall(100));
        assertEq(attacker.lastRevert(), _encodedReentrancyError(), "refused");
        assertEq(escrow.available(address(attacker)), 100, "credited once");
        assertEq(token.balanceOf(address(escrow)), 600, "solvent");
    }

    /// @dev A provider whose token hands it control mid-`addStake` must not be able to finish its
    /// unbonding in between: the stake record would be deleted, then written back unregistered,
    /// stranding the added tokens outside the ledger.
    function test_senderReenteringCompleteUnbonding_duringAddStake_reverts() public {
        attacker.act(abi.encodeCall(LeaseEscrow.registerProvider, (MIN_STAKE)));
        attacker.act(abi.encodeCall(LeaseEscrow.startUnbonding, ()));
        vm.warp(block.timestamp + 1 days);
        attacker.armOnSend(abi.encodeCall(LeaseEscrow.completeUnbonding, ()), false);
        vm.expectRevert(REENTRANT);
        attacker.act(abi.encodeCall(LeaseEscrow.addStake, (500)));

        attacker.armOnSend(abi.encodeCall(LeaseEscrow.completeUnbonding, ()), true);
        attacker.act(abi.encodeCall(LeaseEscrow.addStake, (500)));
        ILeaseEscrow.Provider memory p = escrow.getProvider(address(attacker));
        assertTrue(p.registered, "still registered");
        assertEq(p.stake, MIN_STAKE + 500, "stake recorded");
        assertEq(
            token.balanceOf(address(escrow)),
            p.stake + escrow.available(tenant) + escrow.available(address(attacker)),
            "every token is on the ledger"
        );
        attacker.act(abi.encodeCall(LeaseEscrow.completeUnbonding, ()));
        attacker.act(_withdrawCall(MIN_STAKE + 500));
        assertEq(token.balanceOf(address(escrow)), 500, "the stake came out whole");
    }
}

contract FeeOnTransferTokenTest is HostileTokenBase {
    FeeOnTransferToken internal token;
    LeaseEscrow internal escrow;

    function setUp() public {
        token = new FeeOnTransferToken(100); // 1 %
        escrow = _escrowOver(IERC20(address(token)));
        token.mint(tenant, 1_000_000);
        token.mint(provider, 1_000_000);
        vm.prank(tenant);
        token.approve(address(escrow), type(uint256).max);
        vm.prank(provider);
        token.approve(address(escrow), type(uint256).max);
    }

    function test_deposit_creditsOnlyWhatArrived() public {
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.Deposited(tenant, 9_900);
        vm.prank(tenant);
        escrow.deposit(10_000);
        assertEq(escrow.available(tenant), 9_900, "what arrived");
        assertEq(token.balanceOf(address(escrow)), 9_900, "solvent");
    }

    function test_deposit_smallAmountsBelowTheTokenFee() public {
        vm.prank(tenant);
        escrow.deposit(99); // the token's fee rounds to 0
        assertEq(escrow.available(tenant), 99, "all arrived");
    }

    function test_register_checksWhatArrivedAgainstMinStake() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.StakeTooLow.selector, 990, MIN_STAKE));
        escrow.registerProvider(MIN_STAKE);

        vm.prank(provider);
        escrow.registerProvider(1_011); // 1_001 arrives
        assertEq(escrow.getProvider(provider).stake, 1_001, "stake = what arrived");
        vm.prank(provider);
        escrow.addStake(1_000);
        assertEq(escrow.getProvider(provider).stake, 1_991, "addStake credits what arrived");
        assertEq(token.balanceOf(address(escrow)), 1_991, "solvent");
    }

    function test_withdraw_debitsTheAmountSent() public {
        vm.prank(tenant);
        escrow.deposit(10_000);
        uint256 before = token.balanceOf(tenant);
        vm.prank(tenant);
        escrow.withdraw(9_900);
        assertEq(escrow.available(tenant), 0, "all of it");
        assertEq(token.balanceOf(address(escrow)), 0, "solvent: the token's fee is the tenant's cost");
        assertEq(token.balanceOf(tenant) - before, 9_801, "the token took its cut again");
    }

    function test_deposit_revertsWhenNothingArrives() public {
        FeeOnTransferToken greedy = new FeeOnTransferToken(10_000); // takes everything
        LeaseEscrow other = _escrowOver(IERC20(address(greedy)));
        greedy.mint(tenant, 100);
        vm.startPrank(tenant);
        greedy.approve(address(other), 100);
        vm.expectRevert(ILeaseEscrow.DepositNotReceived.selector);
        other.deposit(100);
        vm.stopPrank();
    }
}

contract DishonestTokenTest is HostileTokenBase {
    DishonestToken internal token;
    LeaseEscrow internal escrow;

    function setUp() public {
        token = new DishonestToken();
        escrow = _escrowOver(IERC20(address(token)));
        token.mint(tenant, 10_000);
        token.mint(provider, 10_000);
        vm.prank(tenant);
        token.approve(address(escrow), type(uint256).max);
        vm.prank(provider);
        token.approve(address(escrow), type(uint256).max);
    }

    function test_lyingToken_isNotCredited() public {
        token.setBehaviour(true, false);
        vm.prank(tenant);
        vm.expectRevert(ILeaseEscrow.DepositNotReceived.selector);
        escrow.deposit(100);
        vm.prank(provider);
        vm.expectRevert(ILeaseEscrow.DepositNotReceived.selector);
        escrow.registerProvider(MIN_STAKE);
    }

    function test_lyingToken_addStake() public {
        vm.prank(provider);
        escrow.registerProvider(MIN_STAKE);
        token.setBehaviour(true, false);
        vm.prank(provider);
        vm.expectRevert(ILeaseEscrow.DepositNotReceived.selector);
        escrow.addStake(100);
        assertEq(escrow.getProvider(provider).stake, MIN_STAKE, "unchanged");
    }

    function test_refusingToken_revertsDepositAndWithdraw() public {
        vm.prank(tenant);
        escrow.deposit(100);
        token.setBehaviour(false, true);
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(SafeERC20.SafeERC20FailedOperation.selector, address(token)));
        escrow.deposit(100);
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(SafeERC20.SafeERC20FailedOperation.selector, address(token)));
        escrow.withdraw(100);
        assertEq(escrow.available(tenant), 100, "the failed withdrawal debited nothing");
    }
}
