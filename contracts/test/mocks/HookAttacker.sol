// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {LeaseEscrow} from "../../src/LeaseEscrow.sol";
import {HookToken, ITokenHooks} from "./HookToken.sol";

/// @notice An escrow account that is a contract: when the hook token calls it during an escrow
/// transfer, it re-enters the escrow with the armed call. `swallow` keeps the outer call alive.
contract HookAttacker is ITokenHooks {
    LeaseEscrow public immutable escrow;
    IERC20 public immutable token;

    bytes public onReceive; // the call made from tokensReceived (once)
    bytes public onSend; // the call made from tokensToSend (once)
    bool public swallow;
    uint256 public reentries;
    bytes public lastRevert;

    constructor(LeaseEscrow escrow_, HookToken token_) {
        escrow = escrow_;
        token = IERC20(address(token_));
        token_.approve(address(escrow_), type(uint256).max);
        token_.setHooked(true);
    }

    function armOnReceive(bytes calldata call, bool swallow_) external {
        onReceive = call;
        swallow = swallow_;
    }

    function armOnSend(bytes calldata call, bool swallow_) external {
        onSend = call;
        swallow = swallow_;
    }

    /// @notice Call the escrow as this account (deposit, withdraw, registerProvider, ...).
    function act(bytes calldata call) external {
        (bool ok, bytes memory data) = address(escrow).call(call);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(data, 32), mload(data))
            }
        }
    }

    function tokensToSend(address, address, uint256) external {
        if (msg.sender != address(token) || onSend.length == 0) return;
        bytes memory call = onSend;
        delete onSend;
        _reenter(call);
    }

    function tokensReceived(address, address, uint256) external {
        if (msg.sender != address(token) || onReceive.length == 0) return;
        bytes memory call = onReceive;
        delete onReceive;
        _reenter(call);
    }

    function _reenter(bytes memory call) private {
        reentries += 1;
        (bool ok, bytes memory data) = address(escrow).call(call);
        if (ok) return;
        if (!swallow) {
            assembly ("memory-safe") {
                revert(add(data, 32), mload(data))
            }
        }
        lastRevert = data;
    }
}
