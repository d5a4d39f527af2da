// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title MarketToken: the local test stand-in for the stablecoin a production deployment uses
/// @notice 18 decimals, so amounts read like the marketplace's prices in wei; only the owner (the
/// deployer) mints, to fund demo and test accounts.
contract MarketToken is ERC20, Ownable {
    constructor(address owner_) ERC20("Marketplace Test Dollar", "mUSD") Ownable(owner_) {}

    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
