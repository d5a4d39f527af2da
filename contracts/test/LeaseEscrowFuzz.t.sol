// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ILeaseEscrow} from "../src/ILeaseEscrow.sol";
import {EscrowTestBase} from "./EscrowTestBase.sol";
import {Math512} from "./LeaseEscrowLeases.t.sol";
import {Vm} from "./utils/Vm.sol";

/// @notice Property tests: how a settlement splits the reservation, quote's rounding, and the
/// deposit/withdraw and slash arithmetic, over the whole input range.
contract LeaseEscrowFuzzTest is EscrowTestBase {
    bytes32 internal constant SETTLED_TOPIC = keccak256("LeaseSettled(uint256,uint256,address,uint64,uint256,uint256,uint256,bytes32)");

    struct Split {
        uint256 payment;
        uint256 fee;
        uint256 refund;
    }

    /// @dev Opens lease 1 for `rate` over `maxDuration` (funding the tenant with exactly the
    /// reservation), warps `elapsed` into it, settles `used` seconds and returns the split as the
    /// event reported it, after checking it against the balances.
    function _settle(uint256 rate, uint64 maxDuration, uint64 used, uint256 elapsed)
        internal
        returns (Split memory split, uint256 reserved)
    {
        reserved = escrow.quote(rate, maxDuration);
        _register(provider, MIN_STAKE);
        if (reserved > 0) _deposit(tenant, reserved);
        _cap(tenant, type(uint256).max);
        vm.prank(operator);
        escrow.openLease(1, 1, tenant, provider, rate, maxDuration);
        vm.warp(block.timestamp + bound(elapsed, 0, uint256(maxDuration) + SETTLE_WINDOW));

        vm.recordLogs();
        vm.prank(operator);
        escrow.settleLease(1, used, bytes32(uint256(used)));
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 1, "one event");
        assertEq(logs[0].topics[0], SETTLED_TOPIC, "LeaseSettled");
        (uint64 usedSeconds, uint256 payment, uint256 fee, uint256 refund, bytes32 resultHash) =
            abi.decode(logs[0].data, (uint64, uint256, uint256, uint256, bytes32));
        assertEq(uint256(usedSeconds), uint256(used), "usedSeconds reported");
        assertEq(resultHash, bytes32(uint256(used)), "resultHash reported");
        split = Split(payment, fee, refund);

        assertEq(escrow.available(provider), payment - fee, "provider credited payment - fee");
        assertEq(escrow.available(treasury), fee, "treasury credited the fee");
        assertEq(escrow.available(tenant), refund, "tenant credited the refund");
        assertEq(escrow.reservedOf(tenant), 0, "reservation released");
        _assertSolvent();
    }

    function _checkSplit(Split memory s, uint256 reserved, uint256 feeBps) internal pure {
        assertEq(s.payment + s.refund, reserved, "payment + refund == reserved");
        assertLe(s.fee, s.payment, "fee <= payment");
        assertLe(s.payment, reserved, "payment <= reserved");
        assertEq(s.fee, Math512.mulDivFloor(s.payment, feeBps, 10_000), "fee == floor(payment x feeBps / 1e4)");
        // the three credits add up to the reservation: (payment - fee) + fee + refund
        assertEq((s.payment - s.fee) + s.fee + s.refund, reserved, "provider + treasury + tenant == reserved");
    }

    /// @dev Realistic prices: up to 1e30 wei an hour, up to a year.
    function testFuzz_settleSplit(uint256 rate, uint64 maxDuration, uint64 used, uint256 elapsed) public {
        rate = bound(rate, 1, 1e30);
        maxDuration = uint64(bound(maxDuration, 1, 365 days));
        (Split memory s, uint256 reserved) = _settle(rate, maxDuration, used, elapsed);
        _checkSplit(s, reserved, FEE_BPS);
        uint256 expected = used >= maxDuration ? reserved : (rate * used + 3_599) / 3_600;
        assertEq(s.payment, expected, "payment = min(ceil(rate x used / 3600), reserved)");
    }

    /// @dev The whole uint256 range of rates: reservations up to the token's largest supply.
    function testFuzz_settleSplitHugeRates(uint256 rate, uint64 maxDuration, uint64 used) public {
        maxDuration = uint64(bound(maxDuration, 1, 3_600));
        rate = bound(rate, 1, type(uint256).max - MIN_STAKE); // quote <= rate for an hour or less
        (Split memory s, uint256 reserved) = _settle(rate, maxDuration, used, 0);
        _checkSplit(s, reserved, FEE_BPS);
        if (used >= maxDuration) assertEq(s.payment, reserved, "the whole reservation");
        else assertEq(s.payment, escrow.quote(rate, used), "the quote for the time used");
    }

    function testFuzz_settleSplitAnyFee(uint256 feeBps, uint256 rate, uint64 maxDuration, uint64 used) public {
        feeBps = bound(feeBps, 0, 3_000);
        escrow = _deploy(feeBps);
        rate = bound(rate, 1, 1e40);
        maxDuration = uint64(bound(maxDuration, 1, 30 days));
        (Split memory s, uint256 reserved) = _settle(rate, maxDuration, used, 0);
        _checkSplit(s, reserved, feeBps);
    }

    /// @dev The edge between "pay what was used" and "pay the reservation".
    function testFuzz_settleAroundMaxDuration(uint256 rate, uint64 maxDuration, bool atOrPast) public {
        rate = bound(rate, 1, 1e30);
        maxDuration = uint64(bound(maxDuration, 2, 30 days));
        uint64 used = atOrPast ? maxDuration : maxDuration - 1;
        (Split memory s, uint256 reserved) = _settle(rate, maxDuration, used, 0);
        _checkSplit(s, reserved, FEE_BPS);
        assertEq(s.payment, escrow.quote(rate, used), "quote for used <= maxDuration");
    }

    function testFuzz_settleDeadline(uint256 after_) public {
        _openDefault(1);
        uint64 deadline = escrow.getLease(1).deadline;
        uint256 at = bound(after_, block.timestamp, uint256(deadline) + 30 days);
        vm.warp(at);
        if (at > deadline) {
            vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.LeaseExpired.selector, 1, deadline));
        }
        vm.prank(operator);
        escrow.settleLease(1, 1, bytes32(0));
        if (at > deadline) {
            vm.prank(tenant);
            escrow.reclaimLease(1); // past the deadline the tenant always can
        } else {
            assertTrue(_state(1) == ILeaseEscrow.LeaseState.Settled, "settled on time");
        }
    }

    function testFuzz_quoteRoundsUp(uint256 rate, uint64 seconds_) public view {
        rate = bound(rate, 0, type(uint192).max); // the naive product cannot overflow
        uint256 product = rate * seconds_;
        uint256 expected = product / 3_600 + (product % 3_600 == 0 ? 0 : 1);
        assertEq(escrow.quote(rate, seconds_), expected, "ceil(rate x seconds / 3600)");
    }

    function testFuzz_quoteMonotonic(uint256 rate, uint64 a, uint64 b) public view {
        rate = bound(rate, 0, type(uint192).max);
        if (a > b) (a, b) = (b, a);
        assertLe(escrow.quote(rate, a), escrow.quote(rate, b), "more time never costs less");
    }

    function testFuzz_depositWithdraw(uint256 amount, uint256 out) public {
        amount = bound(amount, 1, type(uint256).max);
        out = bound(out, 1, amount);
        _deposit(tenant, amount);
        vm.prank(tenant);
        escrow.withdraw(out);
        assertEq(escrow.available(tenant), amount - out, "left");
        assertEq(token.balanceOf(tenant), out, "paid");
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.InsufficientBalance.selector, amount - out, amount - out + 1));
        escrow.withdraw(amount - out + 1);
        _assertSolvent();
    }

    function testFuzz_slash(uint256 stake, uint256 amount) public {
        stake = bound(stake, MIN_STAKE, 1e36);
        _register(provider, stake);
        _deposit(tenant, RESERVED);
        _cap(tenant, RESERVED);
        vm.prank(operator);
        escrow.openLease(1, 1, tenant, provider, RATE, MAX_DURATION);
        vm.prank(arbiter);
        escrow.slash(1, amount, bytes32(0));
        uint256 slashed = amount < stake ? amount : stake;
        assertEq(escrow.getProvider(provider).stake, stake - slashed, "stake less min(amount, stake)");
        assertEq(escrow.available(tenant), RESERVED + slashed, "tenant: reservation plus what was slashed");
        _assertSolvent();
    }

    function testFuzz_openReservesTheQuote(uint256 rate, uint64 maxDuration, uint256 extra) public {
        rate = bound(rate, 1, 1e30);
        maxDuration = uint64(bound(maxDuration, 1, 365 days));
        extra = bound(extra, 0, 1e30);
        uint256 reserved = escrow.quote(rate, maxDuration);
        _register(provider, MIN_STAKE);
        _deposit(tenant, reserved + extra);
        _cap(tenant, reserved);
        vm.prank(operator);
        escrow.openLease(1, 1, tenant, provider, rate, maxDuration);
        assertEq(escrow.getLease(1).reserved, reserved, "reserved = quote");
        assertEq(escrow.available(tenant), extra, "rest available");
        assertEq(escrow.reservedOf(tenant), reserved, "reservedOf");
        _assertSolvent();
    }
}
