// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {ILeaseEscrow} from "../src/ILeaseEscrow.sol";
import {LeaseEscrow} from "../src/LeaseEscrow.sol";
import {EscrowTestBase} from "./EscrowTestBase.sol";

/// @notice openLease, settleLease, releaseLease, slash: the lease state machine and its money.
contract LeaseEscrowLeasesTest is EscrowTestBase {
    bytes32 internal constant RESULT = keccak256("result");
    bytes32 internal constant EVIDENCE = keccak256("evidence");

    function _ready() internal {
        _register(provider, MIN_STAKE);
        _deposit(tenant, RESERVED);
        _cap(tenant, RESERVED);
    }

    function _open(uint256 leaseId, uint256 rate, uint64 maxDuration) internal {
        vm.prank(operator);
        escrow.openLease(leaseId, leaseId + 100, tenant, provider, rate, maxDuration);
    }

    // ------------------------------------------------------------------ openLease

    function test_open_reservesAndEmits() public {
        _register(provider, MIN_STAKE);
        _deposit(tenant, RESERVED + 5);
        _cap(tenant, RESERVED);
        uint64 deadline = uint64(block.timestamp) + MAX_DURATION + SETTLE_WINDOW;
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.LeaseOpened(1, 101, tenant, provider, RATE, RESERVED, deadline);
        _open(1, RATE, MAX_DURATION);

        ILeaseEscrow.Lease memory lease = escrow.getLease(1);
        assertEq(lease.tenant, tenant, "tenant");
        assertEq(lease.provider, provider, "provider");
        assertEq(uint256(lease.openedAt), block.timestamp, "openedAt");
        assertEq(uint256(lease.deadline), deadline, "deadline = now + maxDuration + settleWindow");
        assertEq(lease.jobId, 101, "jobId");
        assertEq(lease.ratePerHour, RATE, "rate");
        assertEq(lease.reserved, RESERVED, "reserved = quote(rate, maxDuration)");
        assertTrue(lease.state == ILeaseEscrow.LeaseState.Open, "Open");
        assertEq(escrow.available(tenant), 5, "reservation taken from available");
        assertEq(escrow.reservedOf(tenant), RESERVED, "reservedOf");
        assertEq(uint256(escrow.getProvider(provider).openLeases), 1, "provider's open leases");
        _assertSolvent();
    }

    function test_open_reservesExactlyTheCapAndTheBalance() public {
        _ready();
        _open(1, RATE, MAX_DURATION); // reserved == cap == balance
        assertEq(escrow.available(tenant), 0, "all of it");
    }

    function test_open_capIsPerLeaseNotTotal() public {
        _ready();
        _deposit(tenant, RESERVED);
        _open(1, RATE, MAX_DURATION);
        _open(2, RATE, MAX_DURATION);
        assertEq(escrow.reservedOf(tenant), 2 * RESERVED, "two leases, each within the cap");
    }

    function test_open_revertsWhenTheLeaseIdIsTaken() public {
        _ready();
        _deposit(tenant, RESERVED);
        _open(1, RATE, MAX_DURATION);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.LeaseExists.selector, 1));
        escrow.openLease(1, 999, tenant, provider, RATE, MAX_DURATION);

        vm.prank(operator);
        escrow.releaseLease(1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.LeaseExists.selector, 1));
        escrow.openLease(1, 999, tenant, provider, RATE, MAX_DURATION); // a closed id is never reused
    }

    function test_open_revertsOnInvalidTerms() public {
        _ready();
        vm.startPrank(operator);
        vm.expectRevert(ILeaseEscrow.InvalidLeaseTerms.selector);
        escrow.openLease(1, 1, tenant, provider, 0, MAX_DURATION);
        vm.expectRevert(ILeaseEscrow.InvalidLeaseTerms.selector);
        escrow.openLease(1, 1, tenant, provider, RATE, 0);
        vm.expectRevert(ILeaseEscrow.InvalidLeaseTerms.selector);
        escrow.openLease(1, 1, address(0), provider, RATE, MAX_DURATION);
        vm.stopPrank();
    }

    function test_open_revertsForUnregisteredProvider() public {
        _ready();
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.ProviderNotEligible.selector, provider2));
        escrow.openLease(1, 1, tenant, provider2, RATE, MAX_DURATION);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.ProviderNotEligible.selector, address(0)));
        escrow.openLease(1, 1, tenant, address(0), RATE, MAX_DURATION);
    }

    function test_open_revertsForUnbondingProvider() public {
        _ready();
        vm.prank(provider);
        escrow.startUnbonding();
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.ProviderNotEligible.selector, provider));
        escrow.openLease(1, 1, tenant, provider, RATE, MAX_DURATION);
    }

    function test_open_revertsForProviderSlashedBelowMinStakeUntilItTopsUp() public {
        _ready();
        _deposit(tenant, RESERVED);
        _open(1, RATE, MAX_DURATION);
        vm.prank(arbiter);
        escrow.slash(1, 1, EVIDENCE);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.ProviderNotEligible.selector, provider));
        escrow.openLease(2, 2, tenant, provider, RATE, MAX_DURATION);

        _mintApprove(provider, 1);
        vm.prank(provider);
        escrow.addStake(1);
        _open(2, RATE, MAX_DURATION);
        assertTrue(_state(2) == ILeaseEscrow.LeaseState.Open, "eligible again at minStake");
    }

    function test_open_revertsAboveTheCap() public {
        _register(provider, MIN_STAKE);
        _deposit(tenant, RESERVED * 2);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.LeaseCapExceeded.selector, 0, RESERVED));
        escrow.openLease(1, 1, tenant, provider, RATE, MAX_DURATION); // nobody set a cap: nothing opens

        _cap(tenant, RESERVED - 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.LeaseCapExceeded.selector, RESERVED - 1, RESERVED));
        escrow.openLease(1, 1, tenant, provider, RATE, MAX_DURATION);
    }

    function test_open_revertsAboveTheBalance() public {
        _register(provider, MIN_STAKE);
        _deposit(tenant, RESERVED - 1);
        _cap(tenant, type(uint256).max);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.InsufficientBalance.selector, RESERVED - 1, RESERVED));
        escrow.openLease(1, 1, tenant, provider, RATE, MAX_DURATION);
    }

    function test_open_revertsWhenTheDeadlineOverflows() public {
        _ready();
        _deposit(tenant, escrow.quote(1, type(uint64).max));
        _cap(tenant, type(uint256).max);
        vm.prank(operator);
        vm.expectRevert(_panic(0x11));
        escrow.openLease(1, 1, tenant, provider, 1, type(uint64).max);
    }

    function test_open_revertsWhenTheQuoteOverflows() public {
        _ready();
        vm.prank(operator);
        vm.expectRevert(_panic(0x11));
        escrow.openLease(1, 1, tenant, provider, type(uint256).max, 3_601);
    }

    // ------------------------------------------------------------------ settleLease

    function test_settle_splitsAndEmits() public {
        _ready();
        _open(1, RATE, MAX_DURATION);
        vm.warp(block.timestamp + 30 minutes);
        uint256 payment = 18e6; // half an hour at 36e6 an hour
        uint256 fee = payment * FEE_BPS / 10_000; // 450_000
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.LeaseSettled(1, 101, provider, 30 minutes, payment, fee, RESERVED - payment, RESULT);
        vm.prank(operator);
        escrow.settleLease(1, 30 minutes, RESULT);

        assertTrue(_state(1) == ILeaseEscrow.LeaseState.Settled, "Settled");
        assertEq(escrow.available(provider), payment - fee, "provider: payment less fee");
        assertEq(escrow.available(treasury), fee, "treasury: fee");
        assertEq(escrow.available(tenant), RESERVED - payment, "tenant: the rest");
        assertEq(escrow.reservedOf(tenant), 0, "reservation gone");
        assertEq(uint256(escrow.getProvider(provider).openLeases), 0, "lease closed");
        assertEq(escrow.getProvider(provider).stake, MIN_STAKE, "stake untouched");
        _assertSolvent();

        vm.prank(provider);
        escrow.withdraw(payment - fee);
        vm.prank(treasury);
        escrow.withdraw(fee);
        vm.prank(tenant);
        escrow.withdraw(RESERVED - payment);
        assertEq(token.balanceOf(address(escrow)), MIN_STAKE, "only the stake remains");
    }

    function test_settle_usedSecondsRoundUpToTheWei() public {
        _ready();
        _open(1, 3_601, MAX_DURATION); // 1.0003 wei a second
        vm.prank(operator);
        escrow.settleLease(1, 1, RESULT);
        // payment = ceil(3601 / 3600) = 2, fee = floor(2 * 250 / 10000) = 0
        assertEq(escrow.available(provider), 2, "rounded up to 2 wei");
        assertEq(escrow.available(treasury), 0, "no fee on 2 wei");
    }

    function test_settle_exactlyAtTheDeadlineWorks() public {
        _ready();
        _open(1, RATE, MAX_DURATION);
        uint64 deadline = escrow.getLease(1).deadline;
        vm.warp(deadline);
        vm.prank(operator);
        escrow.settleLease(1, MAX_DURATION, RESULT);
        assertTrue(_state(1) == ILeaseEscrow.LeaseState.Settled, "settled at the deadline");
    }

    function test_settle_oneSecondAfterTheDeadlineReverts() public {
        _ready();
        _open(1, RATE, MAX_DURATION);
        uint64 deadline = escrow.getLease(1).deadline;
        vm.warp(uint256(deadline) + 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.LeaseExpired.selector, 1, deadline));
        escrow.settleLease(1, MAX_DURATION, RESULT);
        // what is left: the tenant reclaims (or the operator releases)
        vm.prank(tenant);
        escrow.reclaimLease(1);
    }

    function test_settle_capsPaymentAtTheReservation() public {
        _ready();
        _open(1, RATE, MAX_DURATION);
        vm.prank(operator);
        escrow.settleLease(1, type(uint64).max, RESULT); // far more time than reserved
        uint256 fee = RESERVED * FEE_BPS / 10_000;
        assertEq(escrow.available(provider), RESERVED - fee, "paid the whole reservation");
        assertEq(escrow.available(treasury), fee, "fee on the reservation");
        assertEq(escrow.available(tenant), 0, "nothing back");
        _assertSolvent();
    }

    function test_settle_zeroSecondsRefundsEverything() public {
        _ready();
        _open(1, RATE, MAX_DURATION);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.LeaseSettled(1, 101, provider, 0, 0, 0, RESERVED, RESULT);
        vm.prank(operator);
        escrow.settleLease(1, 0, RESULT);
        assertEq(escrow.available(tenant), RESERVED, "all back");
        assertEq(escrow.available(provider), 0, "nothing earned");
        assertEq(escrow.available(treasury), 0, "no fee");
    }

    function test_settle_oneWeiPaymentHasNoFee() public {
        _ready();
        _open(1, 1, MAX_DURATION); // 1 wei an hour: reserved = ceil(7200/3600) = 2
        vm.prank(operator);
        escrow.settleLease(1, 1, RESULT); // payment = ceil(1/3600) = 1
        assertEq(escrow.available(provider), 1, "1 wei to the provider");
        assertEq(escrow.available(treasury), 0, "floor(1 x 250 / 10000) = 0");
        assertEq(escrow.available(tenant), RESERVED - 1, "the other wei back, with the unreserved deposit");
        assertEq(escrow.reservedOf(tenant), 0, "nothing reserved");
    }

    function test_settle_feeRoundsDown() public {
        _ready();
        // payment 399 wei: 399 x 250 / 10000 = 9.975 -> fee 9
        _open(1, 399 * 3_600, MAX_DURATION);
        vm.prank(operator);
        escrow.settleLease(1, 1, RESULT);
        assertEq(escrow.available(treasury), 9, "fee floored");
        assertEq(escrow.available(provider), 390, "provider keeps the rounding");
    }

    function test_settle_zeroFeeDeployment() public {
        escrow = _deploy(0);
        _ready();
        _open(1, RATE, MAX_DURATION);
        vm.prank(operator);
        escrow.settleLease(1, MAX_DURATION, RESULT);
        assertEq(escrow.available(provider), RESERVED, "all of it to the provider");
        assertEq(escrow.available(treasury), 0, "no fee");
    }

    function test_settle_maxFeeDeployment() public {
        escrow = _deploy(3_000);
        _ready();
        _open(1, RATE, MAX_DURATION);
        vm.prank(operator);
        escrow.settleLease(1, 1 hours + 1, RESULT);
        uint256 payment = 36e6 + 10_000; // ceil(36e6 x 3601 / 3600)
        uint256 fee = payment * 3_000 / 10_000;
        assertEq(escrow.available(treasury), fee, "30 %");
        assertEq(escrow.available(provider), payment - fee, "70 %");
        assertEq(escrow.available(tenant), RESERVED - payment, "rest");
    }

    function test_settle_maxFeeFloorsOddWei() public {
        escrow = _deploy(3_000);
        _ready();
        _open(1, 3 * 3_600, MAX_DURATION); // payment 3 wei for 1 s: fee floor(0.9) = 0
        vm.prank(operator);
        escrow.settleLease(1, 1, RESULT);
        assertEq(escrow.available(treasury), 0, "floor(3 x 3000 / 10000)");
        assertEq(escrow.available(provider), 3, "provider");
    }

    /// @dev The reservation may be huge (a token with a huge supply): settling for more time than
    /// was reserved must cap the payment, not overflow in quote.
    function test_settle_nearUint256MaxRateCapsInsteadOfOverflowing() public {
        uint256 max = type(uint256).max;
        _register(provider, MIN_STAKE);
        _deposit(tenant, max - MIN_STAKE); // the token's whole supply
        _cap(tenant, max);
        _open(1, max - MIN_STAKE, 3_600); // reserved = the rate: one hour
        assertEq(escrow.getLease(1).reserved, max - MIN_STAKE, "an hour at the rate");
        vm.prank(operator);
        escrow.settleLease(1, 2 hours, RESULT); // quote(rate, 7200) does not fit in 256 bits
        uint256 fee = Math512.mulDivFloor(max - MIN_STAKE, FEE_BPS, 10_000);
        assertEq(escrow.available(treasury), fee, "fee on the whole reservation");
        assertEq(escrow.available(provider), max - MIN_STAKE - fee, "provider paid the reservation");
        assertEq(escrow.available(tenant), 0, "nothing back");
        _assertSolvent();
    }

    function test_settle_nearUint256MaxRatePartialUse() public {
        uint256 max = type(uint256).max;
        _register(provider, MIN_STAKE);
        _deposit(tenant, max - MIN_STAKE);
        _cap(tenant, max);
        uint256 rate = (max - MIN_STAKE) / 2;
        _open(1, rate, 7_200);
        vm.prank(operator);
        escrow.settleLease(1, 3_599, RESULT); // rate x 3599 / 3600 needs the 512-bit product
        uint256 payment = escrow.quote(rate, 3_599);
        assertEq(payment, rate - rate / 3_600, "rate - rate/3600, rounded up");
        uint256 fee = Math512.mulDivFloor(payment, FEE_BPS, 10_000);
        assertEq(escrow.available(treasury), fee, "fee");
        assertEq(escrow.available(provider), payment - fee, "provider");
        assertEq(escrow.available(tenant), max - MIN_STAKE - payment, "the rest, and the odd wei never reserved");
        _assertSolvent();
    }

    function test_settle_revertsOnUnknownAndClosedLeases() public {
        vm.prank(operator);
        vm.expectRevert(_notOpen(1, ILeaseEscrow.LeaseState.None));
        escrow.settleLease(1, 1, RESULT);

        _ready();
        _open(1, RATE, MAX_DURATION);
        vm.startPrank(operator);
        escrow.settleLease(1, 1, RESULT);
        vm.expectRevert(_notOpen(1, ILeaseEscrow.LeaseState.Settled));
        escrow.settleLease(1, 1, RESULT); // a lease settles once
        vm.expectRevert(_notOpen(1, ILeaseEscrow.LeaseState.Settled));
        escrow.releaseLease(1);
        vm.stopPrank();
        vm.prank(arbiter);
        vm.expectRevert(_notOpen(1, ILeaseEscrow.LeaseState.Settled));
        escrow.slash(1, 1, EVIDENCE);
    }

    function test_settle_feesFollowTheTreasury() public {
        _ready();
        _deposit(tenant, RESERVED);
        _open(1, RATE, MAX_DURATION);
        _open(2, RATE, MAX_DURATION);
        vm.prank(operator);
        escrow.settleLease(1, MAX_DURATION, RESULT);
        address newTreasury = makeAddr("newTreasury");
        vm.prank(admin);
        escrow.setTreasury(newTreasury);
        vm.prank(operator);
        escrow.settleLease(2, MAX_DURATION, RESULT);
        uint256 fee = RESERVED * FEE_BPS / 10_000;
        assertEq(escrow.available(treasury), fee, "old treasury keeps what it earned");
        assertEq(escrow.available(newTreasury), fee, "new fees go to the new treasury");
        vm.prank(treasury);
        escrow.withdraw(fee);
    }

    // ------------------------------------------------------------------ releaseLease

    function test_release_refundsAndEmits() public {
        _ready();
        _open(1, RATE, MAX_DURATION);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.LeaseReleased(1, 101, RESERVED);
        vm.prank(operator);
        escrow.releaseLease(1);
        assertTrue(_state(1) == ILeaseEscrow.LeaseState.Released, "Released");
        assertEq(escrow.available(tenant), RESERVED, "whole reservation back");
        assertEq(escrow.reservedOf(tenant), 0, "nothing reserved");
        assertEq(uint256(escrow.getProvider(provider).openLeases), 0, "closed");
        _assertSolvent();
    }

    function test_release_worksAfterTheDeadline() public {
        _ready();
        _open(1, RATE, MAX_DURATION);
        vm.warp(block.timestamp + 365 days);
        vm.prank(operator);
        escrow.releaseLease(1);
        assertTrue(_state(1) == ILeaseEscrow.LeaseState.Released, "any time");
    }

    function test_release_revertsOnUnknownAndClosedLeases() public {
        vm.prank(operator);
        vm.expectRevert(_notOpen(3, ILeaseEscrow.LeaseState.None));
        escrow.releaseLease(3);
        _ready();
        _open(3, RATE, MAX_DURATION);
        vm.startPrank(operator);
        escrow.releaseLease(3);
        vm.expectRevert(_notOpen(3, ILeaseEscrow.LeaseState.Released));
        escrow.releaseLease(3);
        vm.expectRevert(_notOpen(3, ILeaseEscrow.LeaseState.Released));
        escrow.settleLease(3, 0, RESULT);
        vm.stopPrank();
        vm.warp(block.timestamp + 1 days);
        vm.prank(tenant);
        vm.expectRevert(_notOpen(3, ILeaseEscrow.LeaseState.Released));
        escrow.reclaimLease(3);
    }

    // ------------------------------------------------------------------ slash

    function test_slash_compensatesTheTenantAndEmits() public {
        _ready();
        _open(1, RATE, MAX_DURATION);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.ProviderSlashed(1, 101, provider, 300e6, RESERVED, EVIDENCE);
        vm.prank(arbiter);
        escrow.slash(1, 300e6, EVIDENCE);
        assertTrue(_state(1) == ILeaseEscrow.LeaseState.Slashed, "Slashed");
        assertEq(escrow.available(tenant), RESERVED + 300e6, "refund plus compensation");
        assertEq(escrow.getProvider(provider).stake, MIN_STAKE - 300e6, "stake cut");
        assertEq(uint256(escrow.getProvider(provider).openLeases), 0, "closed");
        assertEq(escrow.reservedOf(tenant), 0, "nothing reserved");
        _assertSolvent();
    }

    function test_slash_isCappedAtTheStake() public {
        _ready();
        _open(1, RATE, MAX_DURATION);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit ILeaseEscrow.ProviderSlashed(1, 101, provider, MIN_STAKE, RESERVED, EVIDENCE);
        vm.prank(arbiter);
        escrow.slash(1, type(uint256).max, EVIDENCE);
        assertEq(escrow.getProvider(provider).stake, 0, "all of it");
        assertTrue(escrow.getProvider(provider).registered, "still registered (it can top up or unbond)");
        assertEq(escrow.available(tenant), RESERVED + MIN_STAKE, "the whole stake");
        _assertSolvent();
    }

    function test_slash_zeroOnlyRefunds() public {
        _ready();
        _open(1, RATE, MAX_DURATION);
        vm.prank(arbiter);
        escrow.slash(1, 0, EVIDENCE);
        assertEq(escrow.available(tenant), RESERVED, "refund only");
        assertEq(escrow.getProvider(provider).stake, MIN_STAKE, "stake intact");
    }

    function test_slash_worksAfterTheDeadlineAndWhileUnbonding() public {
        _ready();
        _open(1, RATE, MAX_DURATION);
        vm.prank(provider);
        escrow.startUnbonding();
        vm.warp(block.timestamp + UNBONDING_DELAY); // past the lease deadline and the unbonding delay
        vm.prank(arbiter);
        escrow.slash(1, 1e6, EVIDENCE);
        assertEq(escrow.getProvider(provider).stake, MIN_STAKE - 1e6, "an unbonding stake is still slashable");
        vm.prank(provider);
        escrow.completeUnbonding();
        assertEq(escrow.available(provider), MIN_STAKE - 1e6, "what is left comes out");
        _assertSolvent();
    }

    function test_slash_revertsOnUnknownAndClosedLeases() public {
        vm.prank(arbiter);
        vm.expectRevert(_notOpen(9, ILeaseEscrow.LeaseState.None));
        escrow.slash(9, 1, EVIDENCE);
        _ready();
        _open(9, RATE, MAX_DURATION);
        vm.startPrank(arbiter);
        escrow.slash(9, 1, EVIDENCE);
        vm.expectRevert(_notOpen(9, ILeaseEscrow.LeaseState.Slashed));
        escrow.slash(9, 1, EVIDENCE); // a lease is slashed once
        vm.stopPrank();
        vm.prank(operator);
        vm.expectRevert(_notOpen(9, ILeaseEscrow.LeaseState.Slashed));
        escrow.settleLease(9, 1, RESULT);
    }

    function test_leaseIdsAreIndependent() public {
        _register(provider, MIN_STAKE);
        _register(provider2, MIN_STAKE);
        _deposit(tenant, RESERVED);
        _deposit(tenant2, RESERVED);
        _cap(tenant, RESERVED);
        _cap(tenant2, RESERVED);
        _open(1, RATE, MAX_DURATION);
        vm.prank(operator);
        escrow.openLease(2, 7, tenant2, provider2, RATE, MAX_DURATION);
        vm.prank(operator);
        escrow.settleLease(2, 1 hours, RESULT);
        assertTrue(_state(1) == ILeaseEscrow.LeaseState.Open, "lease 1 untouched");
        assertEq(escrow.reservedOf(tenant), RESERVED, "tenant 1 still reserved");
        assertEq(escrow.available(tenant2), RESERVED / 2, "tenant 2 got half back");
        assertEq(uint256(escrow.getProvider(provider).openLeases), 1, "provider 1 still busy");
        assertEq(uint256(escrow.getProvider(provider2).openLeases), 0, "provider 2 free");
        _assertSolvent();
    }
}

/// @dev floor(a x b / d) with a 512-bit product, written independently of OpenZeppelin's Math
/// (schoolbook on 128-bit halves), so the tests do not check the contract against itself.
library Math512 {
    function mulDivFloor(uint256 a, uint256 b, uint256 d) internal pure returns (uint256) {
        // b and d are small here (fees): split a into 128-bit halves so nothing overflows.
        require(b < 2 ** 64 && d < 2 ** 64 && d != 0, "Math512: small b and d only");
        uint256 hi = a >> 128;
        uint256 lo = a & type(uint128).max;
        uint256 hiProduct = hi * b; // < 2^192
        uint256 q1 = hiProduct / d;
        uint256 r1 = hiProduct % d;
        uint256 loPart = (r1 << 128) + lo * b; // < 2^193
        return (q1 << 128) + loPart / d;
    }
}
