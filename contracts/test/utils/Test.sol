// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Vm} from "./Vm.sol";

/// @notice The few helpers of forge-std's Test our suites need: the cheatcode handle, named
/// addresses, `bound`, and assertions that go through forge's assertion cheatcodes.
abstract contract Test {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 private constant UINT256_MAX = type(uint256).max;

    function makeAddr(string memory name) internal returns (address account) {
        account = vm.addr(uint256(keccak256(bytes(name))));
        vm.label(account, name);
    }

    /// @dev forge-std's bound: `x` wrapped into [min, max], keeping small and huge inputs at the edges.
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256 result) {
        require(min <= max, "bound: max is less than min");
        if (x >= min && x <= max) return x;
        uint256 size = max - min + 1;
        if (x <= 3 && size > x) return min + x;
        if (x >= UINT256_MAX - 3 && size > UINT256_MAX - x) return max - (UINT256_MAX - x);
        if (x > max) {
            uint256 rem = (x - max) % size;
            if (rem == 0) return max;
            result = min + rem - 1;
        } else {
            uint256 rem = (min - x) % size;
            if (rem == 0) return min;
            result = max - rem + 1;
        }
    }

    function assertTrue(bool condition, string memory error) internal pure {
        vm.assertTrue(condition, error);
    }

    function assertFalse(bool condition, string memory error) internal pure {
        vm.assertFalse(condition, error);
    }

    function assertEq(uint256 left, uint256 right, string memory error) internal pure {
        vm.assertEq(left, right, error);
    }

    function assertEq(address left, address right, string memory error) internal pure {
        vm.assertEq(left, right, error);
    }

    function assertEq(bytes32 left, bytes32 right, string memory error) internal pure {
        vm.assertEq(left, right, error);
    }

    function assertEq(bool left, bool right, string memory error) internal pure {
        vm.assertEq(left, right, error);
    }

    function assertEq(bytes memory left, bytes memory right, string memory error) internal pure {
        vm.assertEq(left, right, error);
    }

    function assertLe(uint256 left, uint256 right, string memory error) internal pure {
        vm.assertLe(left, right, error);
    }

    function assertLt(uint256 left, uint256 right, string memory error) internal pure {
        vm.assertLt(left, right, error);
    }

    function assertGe(uint256 left, uint256 right, string memory error) internal pure {
        vm.assertGe(left, right, error);
    }

    function assertGt(uint256 left, uint256 right, string memory error) internal pure {
        vm.assertGt(left, right, error);
    }
}
