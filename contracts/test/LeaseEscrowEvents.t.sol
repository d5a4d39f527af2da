// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ILeaseEscrow} from "../src/ILeaseEscrow.sol";
import {EscrowTestBase} from "./EscrowTestBase.sol";
import {Vm} from "./utils/Vm.sol";

/// @notice "Every state change emits exactly one of the events": the marketplace rebuilds its ledger
/// from the escrow's events alone, so each call must log exactly one event of the escrow's own
/// (token Transfer events come from the token and are not counted).
contract LeaseEscrowEventsTest is EscrowTestBase {
    function _start() internal {
        vm.recordLogs();
    }

    function _expectOne(bytes32 selector) internal {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 mine;
        bytes32 topic;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(escrow)) {
                mine++;
                topic = logs[i].topics[0];
            }
        }
        assertEq(mine, 1, "exactly one escrow event");
        assertEq(topic, selector, "the documented event");
    }

    function test_eachStateChangeLogsExactlyOneEvent() public {
        _mintApprove(tenant, 10 * RESERVED);
        _mintApprove(provider, 2 * MIN_STAKE);

        _start();
        vm.prank(tenant);
        escrow.deposit(4 * RESERVED);
        _expectOne(ILeaseEscrow.Deposited.selector);

        _start();
        _cap(tenant, RESERVED);
        _expectOne(ILeaseEscrow.LeaseCapSet.selector);

        _start();
        vm.prank(provider);
        escrow.registerProvider(MIN_STAKE);
        _expectOne(ILeaseEscrow.ProviderRegistered.selector);

        _start();
        vm.prank(provider);
        escrow.addStake(1);
        _expectOne(ILeaseEscrow.StakeAdded.selector);

        for (uint256 id = 1; id <= 4; ++id) {
            _start();
            vm.prank(operator);
            escrow.openLease(id, id, tenant, provider, RATE, MAX_DURATION);
            _expectOne(ILeaseEscrow.LeaseOpened.selector);
        }

        _start();
        vm.prank(operator);
        escrow.settleLease(1, 1 hours, bytes32("r"));
        _expectOne(ILeaseEscrow.LeaseSettled.selector);

        _start();
        vm.prank(operator);
        escrow.releaseLease(2);
        _expectOne(ILeaseEscrow.LeaseReleased.selector);

        _start();
        vm.prank(arbiter);
        escrow.slash(3, 5, bytes32("e"));
        _expectOne(ILeaseEscrow.ProviderSlashed.selector);

        vm.warp(block.timestamp + MAX_DURATION + SETTLE_WINDOW + 1);
        _start();
        vm.prank(tenant);
        escrow.reclaimLease(4);
        _expectOne(ILeaseEscrow.LeaseReclaimed.selector);

        _start();
        vm.prank(tenant);
        escrow.withdraw(1);
        _expectOne(ILeaseEscrow.Withdrawn.selector);

        _start();
        vm.prank(provider);
        escrow.startUnbonding();
        _expectOne(ILeaseEscrow.UnbondingStarted.selector);

        vm.warp(block.timestamp + UNBONDING_DELAY);
        _start();
        vm.prank(provider);
        escrow.completeUnbonding();
        _expectOne(ILeaseEscrow.StakeUnbonded.selector);

        _start();
        vm.prank(admin);
        escrow.setTreasury(stranger);
        _expectOne(ILeaseEscrow.TreasurySet.selector);
        _assertSolvent();
    }
}
