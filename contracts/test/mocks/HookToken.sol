// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice ERC-777 style hooks, the way ERC-1363 and ERC-777 tokens hand control to a contract:
/// `tokensToSend` on the sender before tokens leave it, `tokensReceived` on the recipient after.
interface ITokenHooks {
    function tokensToSend(address from, address to, uint256 amount) external;
    function tokensReceived(address from, address to, uint256 amount) external;
}

/// @notice A token that calls the holders that asked for it (as ERC-777 holders register in
/// ERC-1820) on every transfer.
contract HookToken is ERC20 {
    mapping(address account => bool) public hooked;

    constructor() ERC20("Hooked", "HOOK") {}

    function setHooked(bool on) external {
        hooked[msg.sender] = on;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (hooked[from]) ITokenHooks(from).tokensToSend(from, to, value);
        super._update(from, to, value);
        if (hooked[to]) ITokenHooks(to).tokensReceived(from, to, value);
    }
}
